"""Probe: a points-mall redemption of a member whom staff are merging into one who redeemed it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import Customer
from backend.platform.db import db
from tests.threads import attempt, held_merge

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def test_redeem_racing_a_merge_keeps_the_survivors_per_member_limit(app: Any) -> None:
    from backend.points import service as points
    from backend.points.mall import redeem
    from backend.points.models import ItemKind, MallItem, MallOrder

    with app.app_context():
        s = db.session()
        a, b = Customer(name="甲"), Customer(name="乙")
        item = MallItem(name="保养券", kind=ItemKind.SERVICE_VOUCHER, points_price=10, stock=5, per_member_limit=1)
        s.add_all([a, b, item])
        s.flush()
        points.earn(s, b.id, 100, key="mall-probe-b", reason_code="manual", operator="system:test")
        redeem(s, b.id, item.id)
        s.commit()
        sid, tid, item_id = a.id, b.id, item.id
        db.session.remove()
    with held_merge(app, sid, tid):
        outcome = attempt(app, lambda s: redeem(s, sid, item_id))  # the member resolved before the merge committed
    with app.app_context():
        s = db.session()
        holders = s.scalars(select(MallOrder.customer_id)).all()
        drift = points.check_drift(s)
        db.session.remove()
    assert drift == []
    assert (outcome, holders) == ("mall.limit_reached", [tid])
