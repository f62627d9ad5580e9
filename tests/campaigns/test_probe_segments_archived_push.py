"""A coupon push names its segment like an event or a campaign does: an archived segment is
refused at once (409 segments.archived), not queued to issue nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from backend.customers.models import Customer
from backend.offers.models import Coupon, CouponPush
from tests.offers.conftest import WB, template_body


def test_a_push_to_an_archived_segment_is_refused_and_nothing_is_queued(
    client: Any, db_session: Any, tree: Any, make_staff: Any, staff_headers: Any, make_customer: Any
) -> None:
    store_id = tree.stores[0].id
    h = staff_headers(make_staff(tree.stores[0], "store_manager"))
    gold = make_customer(tree.stores[0])
    db_session.get(Customer, gold.id).tier = "gold"
    db_session.commit()
    seg = client.post(f"{WB}/segments", json={"name": "金卡", "filters": {"tiers": ["gold"]}}, headers=h).get_json()
    assert client.delete(f"{WB}/segments/{seg['id']}", headers=h).get_json()["archived"] is True
    template = client.post(f"{WB}/coupon-templates", json=template_body(store_id), headers=h).get_json()

    resp = client.post(f"{WB}/coupon-templates/{template['id']}/pushes", json={"segment_id": seg["id"]}, headers=h)

    assert resp.status_code == 409 and resp.get_json()["code"] == "segments.archived", resp.get_json()
    db_session.expire_all()
    assert db_session.scalar(select(func.count()).select_from(CouponPush)) == 0
    assert db_session.scalar(select(func.count()).select_from(Coupon)) == 0
