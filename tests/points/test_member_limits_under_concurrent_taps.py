"""One member tapping "redeem" from ten threads at once gets no more than the item's per-member
limit (loyalty-booking-payments.md §3.2.2 b: the counter is a conditional increment inside the
redemption's transaction, not a count checked before it); stock + sold stays the initial stock."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.customers.models import Customer
from backend.platform.db import db
from backend.points import service
from backend.points.models import ItemKind, LimitPeriod, MallItem, MallMemberCounter, MallOrder
from tests.threads import run_threads

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]

ADDRESS = {"name": "张三", "phone": "13800138000", "region": "上海", "detail": "世纪大道1号"}


def test_ten_taps_at_once_get_the_per_member_and_per_day_limits(app: Any, member_headers: Any) -> None:
    with app.app_context():
        s = db.session()
        c = Customer(name="连点")
        s.add(c)
        s.flush()
        service.earn(s, c.id, 10_000, key="seed", reason_code="t", operator="system:t", expiry="never")
        overall = MallItem(name="保温杯", kind=ItemKind.PHYSICAL, points_price=100, stock=50, per_member_limit=2)
        daily = MallItem(
            name="洗车券",
            kind=ItemKind.PHYSICAL,
            points_price=100,
            stock=50,
            limit_period=LimitPeriod.DAY,
            per_period_limit=3,
        )
        s.add_all([overall, daily])
        s.commit()
        cid, ids = c.id, (overall.id, daily.id)
        db.session.remove()
    h = member_headers(type("M", (), {"id": cid})())
    client = app.test_client()
    results = run_threads(
        10,
        lambda i: client.post(
            "/api/app/v1/mall/redemptions", json={"item_id": ids[i % 2], "address": ADDRESS}, headers=h
        ),
    )
    statuses = [getattr(r, "status_code", repr(r)) for r in results]
    assert statuses.count(201) == 5, statuses
    assert {r.get_json()["code"] for r in results if r.status_code != 201} == {"mall.limit_reached"}
    with app.app_context():
        s = db.session()
        for item_id, limit in zip(ids, (2, 3), strict=True):
            item = s.get(MallItem, item_id)
            orders = s.scalar(select(func.count()).select_from(MallOrder).where(MallOrder.item_id == item_id))
            counted = s.scalar(select(func.max(MallMemberCounter.quantity)).where(MallMemberCounter.item_id == item_id))
            assert (orders, counted, item.sold, item.stock + item.sold) == (limit, limit, limit, 50)
        assert service.account(s, cid).available == 10_000 - 5 * 100
        assert service.check_drift(s, [cid]) == []
        db.session.remove()
