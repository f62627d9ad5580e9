"""Probe: a member paying for a package they bought while staff merge them into another customer."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import Customer, CustomerIdentity, IdentityKind
from backend.platform.db import db
from tests.threads import attempt, held_merge

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def test_payment_order_racing_a_merge_belongs_to_the_survivor(app: Any) -> None:
    from backend.packages import service as packages
    from backend.packages.models import ServicePackage
    from backend.payments.models import PaymentOrder
    from backend.payments.service import create_order_for

    with app.app_context():
        s = db.session()
        a, b = Customer(name="甲"), Customer(name="乙")
        package = ServicePackage(name="基础保养3次卡", service_type="basic_maintenance", uses=3, price_fen=30000)
        s.add_all([a, b, package])
        s.flush()
        s.add(CustomerIdentity(customer_id=a.id, kind=IdentityKind.OPENID, value="o-pay-merge-a"))
        purchase = packages.buy(s, a, package.id)
        s.commit()
        sid, tid, purchase_id = a.id, b.id, purchase.id
        db.session.remove()
    with held_merge(app, sid, tid):
        # the member's request resolved them before the merge committed
        outcome = attempt(app, lambda s: create_order_for(s, sid, packages.BUSINESS_TYPE, str(purchase_id)))
    with app.app_context():
        s = db.session()
        payers = s.scalars(select(PaymentOrder.customer_id)).all()
        db.session.remove()
    # The purchase and the openid moved to the survivor with the merge: so must the order, or the
    # survivor's app can neither see nor poll it (GET /payments/orders/{id} is scoped to them).
    assert (outcome, payers) == ("done", [tid])
