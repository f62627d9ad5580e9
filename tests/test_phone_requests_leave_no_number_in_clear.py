"""Requests that carry a phone number — staff phone searches (found, refused for a region
manager, malformed), a name search typed as a number, a points-mall redemption whose shipping
address holds it (also typed into the street line) and its 422 — then every table and every log
record is scanned for the number in clear (the mall address was kept in clear in mall_order and
in the idempotency record before it was sealed); then the number typed into free text, a
consultation message, a lead's note and a redemption's cancellation reason (stored as typed
before they were masked and sealed; the reason is read back in full through the audited reveal)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from backend.points import service as points
from backend.points.models import ItemKind, MallItem
from tests.pii_helpers import clear_copies

pytestmark = [pytest.mark.usefixtures("app_ctx")]
PHONE = "13712345678"


def test_phone_requests_leave_no_number_in_clear(
    client: Any, tree: Any, make_staff: Any, make_customer: Any, staff_headers: Any, member_headers: Any,
    db_session: Any, caplog: Any,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    c = make_customer(tree.stores[0], phone=PHONE)
    adv = make_staff(tree.stores[0], "sales_advisor")
    mgr = make_staff(tree.regions[0], "region_manager")
    points.earn(db_session, c.id, 1000, key=f"seed:{c.id}", reason_code="t", operator="system:t")
    item = MallItem(name="香薰", kind=ItemKind.PHYSICAL, points_price=100, stock=5, store_id=tree.stores[0].id)
    db_session.add(item)
    db_session.commit()
    wb = "/api/workbench/v1"
    for h in (staff_headers(adv), staff_headers(mgr)):
        client.post(f"{wb}/customers/search-by-phone", json={"phone": PHONE}, headers=h)
        client.post(f"{wb}/customers/search-by-phone", json={"phone": PHONE + "9"}, headers=h)
        client.get(f"{wb}/customers", query_string={"q": PHONE}, headers=h)
    mh = {**member_headers(c), "Idempotency-Key": "k-1"}
    addr = {"name": "张三", "phone": PHONE, "region": "上海", "detail": f"世纪大道1号 备用{PHONE}"}
    client.post("/api/app/v1/mall/redemptions", json={"item_id": item.id, "address": addr}, headers=mh)
    client.post(
        "/api/app/v1/mall/redemptions", json={"item_id": item.id, "address": {**addr, "phone": "1"}}, headers=mh
    )
    typed = f"我的电话{PHONE}，请回电"
    opened = client.post(
        "/api/app/v1/consult/conversations",
        json={"topic": "service", "message": {"kind": "text", "text": typed}},
        headers=member_headers(c),
    )
    assert opened.status_code == 201, opened.get_json()
    lead = client.post(
        "/api/app/v1/leads", json={"type": "new_car", "series": "ID.4", "note": typed}, headers=member_headers(c)
    )
    assert lead.status_code == 201, lead.get_json()
    redeemed = client.post(
        "/api/app/v1/mall/redemptions",
        json={"item_id": item.id, "address": {**addr, "detail": "世纪大道1号"}},
        headers={**member_headers(c), "Idempotency-Key": "k-2"},
    )
    assert redeemed.status_code == 201, redeemed.get_json()
    cancelled = client.post(
        f"/api/app/v1/mall/redemptions/{redeemed.get_json()['id']}/cancel",
        json={"reason": f"地址写错了，请打{PHONE}"},
        headers=member_headers(c),
    )
    assert cancelled.status_code == 200, cancelled.get_json()
    found = clear_copies(db_session, caplog, PHONE)
    assert found == {}, found
    mgr_store = make_staff(tree.stores[0], "store_manager")
    reason = client.get(
        f"{wb}/points/mall/redemptions/{redeemed.get_json()['id']}/cancel-reason", headers=staff_headers(mgr_store)
    )
    assert reason.get_json() == {"text": f"地址写错了，请打{PHONE}"}
