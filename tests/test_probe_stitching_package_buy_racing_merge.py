"""Probe: a member buying a service package while staff merge them into another customer."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import Customer
from backend.platform.db import db
from tests.threads import attempt, held_merge

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def test_package_bought_racing_a_merge_belongs_to_the_survivor(app: Any) -> None:
    from backend.packages import service as packages
    from backend.packages.models import PackagePurchase, ServicePackage

    with app.app_context():
        s = db.session()
        a, b = Customer(name="甲"), Customer(name="乙")
        package = ServicePackage(name="基础保养3次卡", service_type="basic_maintenance", uses=3, price_fen=30000)
        s.add_all([a, b, package])
        s.commit()
        sid, tid, package_id = a.id, b.id, package.id
        db.session.remove()
    with held_merge(app, sid, tid):
        # the member's request resolved (and loaded) them before the merge committed
        outcome = attempt(app, lambda s: packages.buy(s, s.get(Customer, sid), package_id))
    with app.app_context():
        s = db.session()
        buyers = s.scalars(select(PackagePurchase.customer_id)).all()
        db.session.remove()
    # On the merged-away row the purchase is hidden from the survivor, who pays for it next
    # (POST /payments/orders quotes it for the survivor: package.purchase_not_found).
    assert (outcome, buyers) == ("done", [tid])
