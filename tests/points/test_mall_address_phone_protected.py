"""The shipping address of a points-mall order holds the recipient's phone number: encrypted at
rest like every phone, masked in lists and in the owner's answers (and so in the idempotency
record that replays them), and given in full only through an audited reveal to the staff who
may call the customer (advisors, store managers, group admins), within their scope. (That no
table keeps it in clear: tests/test_phone_requests_leave_no_number_in_clear.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.platform.audit import AuditLog
from backend.points import service
from backend.points.models import ItemKind, MallItem

pytestmark = [pytest.mark.usefixtures("app_ctx")]

WB = "/api/workbench/v1"
PHONE = "13912345678"
ADDRESS = {"name": "张三", "phone": PHONE, "region": "上海市浦东新区", "detail": "世纪大道1号"}


@pytest.fixture
def order(client: Any, tree: Any, make_customer: Any, member_headers: Any, db_session: Any) -> dict[str, Any]:
    c = make_customer(tree.stores[0])
    service.earn(db_session, c.id, 1000, key=f"seed:{c.id}", reason_code="t", operator="system:t")
    item = MallItem(name="车载香薰", kind=ItemKind.PHYSICAL, points_price=100, stock=5, store_id=tree.stores[0].id)
    db_session.add(item)
    db_session.commit()
    resp = client.post(
        "/api/app/v1/mall/redemptions",
        json={"item_id": item.id, "address": ADDRESS},
        headers={**member_headers(c), "Idempotency-Key": "redeem-address-1"},
    )
    assert resp.status_code == 201, resp.get_json()
    return {"body": resp.get_json(), "headers": member_headers(c)}


def test_owner_sees_the_address_with_the_phone_masked(client: Any, order: Any) -> None:
    assert order["body"]["address"] == {**ADDRESS, "phone": "139****5678"}
    shown = client.get(f"/api/app/v1/mall/redemptions/{order['body']['id']}", headers=order["headers"]).get_json()
    assert shown["address"]["phone"] == "139****5678"


def test_lists_mask_the_phone_for_every_role(
    client: Any, tree: Any, order: Any, make_staff: Any, staff_headers: Any
) -> None:
    for staff in (make_staff(tree.stores[0], "store_manager"), make_staff(tree.regions[0], "region_manager")):
        items = client.get(f"{WB}/points/mall/redemptions", headers=staff_headers(staff)).get_json()["items"]
        assert [o["address"]["phone"] for o in items] == ["139****5678"]


def test_full_address_is_an_audited_reveal_for_who_may_call(
    client: Any, tree: Any, order: Any, make_staff: Any, staff_headers: Any, db_session: Any
) -> None:
    url = f"{WB}/points/mall/redemptions/{order['body']['id']}/address"
    manager = make_staff(tree.stores[0], "store_manager")
    resp = client.get(url, headers=staff_headers(manager))
    assert resp.status_code == 200 and resp.get_json() == ADDRESS
    audit = db_session.scalars(select(AuditLog).where(AuditLog.action == "mall.address_revealed")).all()
    assert [(a.actor_type, a.actor_id, a.object_id) for a in audit] == [
        ("staff", str(manager.id), str(order["body"]["id"]))
    ]
    region = client.get(url, headers=staff_headers(make_staff(tree.regions[0], "region_manager")))
    assert region.status_code == 403 and region.get_json()["code"] == "customer.phone_forbidden"
    other = client.get(url, headers=staff_headers(make_staff(tree.stores[1], "store_manager")))
    assert other.status_code == 404 and other.get_json()["code"] == "mall.order_not_found"
