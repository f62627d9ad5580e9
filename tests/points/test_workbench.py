"""Staff: adjustments with a second approver, bulk grants as a job, items, shipment, vouchers."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.points import service
from backend.points.models import MallItem, PointsLedger

# The services send notices through the outbox, which needs the app.
pytestmark = [pytest.mark.usefixtures("app_ctx")]

WB = "/api/workbench/v1"
ADDRESS = {"name": "张三", "phone": "13800138000", "region": "上海", "detail": "世纪大道1号"}


def test_adjustment_above_threshold_needs_another_approver(
    client: Any, tree: Any, make_staff: Any, make_customer: Any, staff_headers: Any, db_session: Any
) -> None:
    manager = make_staff(tree.stores[0], "store_manager")
    other = make_staff(tree.stores[0], "store_manager")
    advisor = make_staff(tree.stores[0], "sales_advisor")
    c = make_customer(tree.stores[0])
    h = staff_headers(manager)
    small = client.post(
        f"{WB}/customers/{c.id}/points/adjustments", json={"delta": 200, "reason": "补录积分"}, headers=h
    )
    assert small.status_code == 201 and small.get_json()["state"] == "applied"
    big = client.post(
        f"{WB}/customers/{c.id}/points/adjustments", json={"delta": 5000, "reason": "大额补偿"}, headers=h
    )
    assert big.status_code == 201 and big.get_json()["state"] == "pending"
    adj_id = big.get_json()["id"]
    assert (
        client.post(f"{WB}/points/adjustments/{adj_id}/decision", json={"approve": True}, headers=h).status_code == 403
    )
    assert (
        client.post(
            f"{WB}/points/adjustments/{adj_id}/decision", json={"approve": True}, headers=staff_headers(advisor)
        ).status_code
        == 404  # not the advisor's customer: out of scope before any role check
    )
    ok = client.post(f"{WB}/points/adjustments/{adj_id}/decision", json={"approve": True}, headers=staff_headers(other))
    assert ok.status_code == 200 and ok.get_json()["state"] == "applied"
    assert (
        client.post(
            f"{WB}/points/adjustments/{adj_id}/decision", json={"approve": True}, headers=staff_headers(other)
        ).status_code
        == 409
    )
    page = client.get(f"{WB}/customers/{c.id}/points", headers=h).get_json()
    assert page["account"]["available"] == 5200
    assert {row["operator"] for row in page["items"]} == {f"staff:{manager.id}", f"staff:{other.id}"}
    too_much = client.post(
        f"{WB}/customers/{c.id}/points/adjustments", json={"delta": -9000, "reason": "扣减"}, headers=h
    )
    assert too_much.status_code == 201  # pending, above threshold
    r = client.post(
        f"{WB}/points/adjustments/{too_much.get_json()['id']}/decision",
        json={"approve": True},
        headers=staff_headers(other),
    )
    assert r.status_code == 409 and r.get_json()["code"] == "points.insufficient"
    bad = client.post(f"{WB}/customers/{c.id}/points/adjustments", json={"delta": 0, "reason": "原因"}, headers=h)
    assert bad.status_code == 422 and "delta" in bad.get_json()["errors"]["json"]
    bad = client.post(f"{WB}/customers/{c.id}/points/adjustments", json={"delta": 5}, headers=h)
    assert bad.status_code == 422 and "reason" in bad.get_json()["errors"]["json"]


def test_bulk_grant_runs_as_a_job_once_per_member(
    client: Any, tree: Any, make_staff: Any, make_customer: Any, staff_headers: Any, db_session: Any
) -> None:
    manager = make_staff(tree.stores[0], "store_manager")
    members = [make_customer(tree.stores[0]) for _ in range(3)]
    outsider = make_customer(tree.stores[3])
    h = staff_headers(manager)
    body = {"batch_key": "spring-2026", "customer_ids": [m.id for m in members], "points": 50, "reason": "春季活动"}
    r = client.post(f"{WB}/points/bulk-grants", json=body, headers=h)
    assert r.status_code == 202 and r.get_json()["queued"] is True
    again = client.post(f"{WB}/points/bulk-grants", json=body, headers=h)
    assert again.get_json()["queued"] is False
    for m in members:
        assert service.account(db_session, m.id).available == 50
    batch = service.grant_batch(manager.id, "spring-2026")
    assert service.bulk_grant(db_session, batch, [m.id for m in members], 50, "re-run", manager.id) == 0
    r = client.post(
        f"{WB}/points/bulk-grants", json={**body, "batch_key": "x-1234", "customer_ids": [outsider.id]}, headers=h
    )
    assert r.status_code == 422 and "customer_ids" in r.get_json()["errors"]["json"]


def test_a_bulk_grant_key_is_each_managers_own_and_not_reused_for_another_grant(
    client: Any, tree: Any, make_staff: Any, make_customer: Any, staff_headers: Any, db_session: Any
) -> None:
    """Two stores both call their campaign "spring-2026": each store's members get their points
    (the second grant was silently dropped: queued false, nothing granted). One manager reusing
    the key for other members is told so (it was silently dropped too)."""
    first, second = make_staff(tree.stores[0], "store_manager"), make_staff(tree.stores[1], "store_manager")
    ours, theirs = make_customer(tree.stores[0]), make_customer(tree.stores[1])
    body = {"batch_key": "spring-2026", "points": 30, "reason": "春季活动"}
    for manager, member in ((first, ours), (second, theirs)):
        r = client.post(
            f"{WB}/points/bulk-grants", json={**body, "customer_ids": [member.id]}, headers=staff_headers(manager)
        )
        assert r.status_code == 202 and r.get_json()["queued"] is True, r.get_json()
    assert (service.account(db_session, ours.id).available, service.account(db_session, theirs.id).available) == (
        30,
        30,
    )
    other = make_customer(tree.stores[0])
    reused = client.post(
        f"{WB}/points/bulk-grants", json={**body, "customer_ids": [other.id]}, headers=staff_headers(first)
    )
    assert reused.status_code == 422 and reused.get_json()["code"] == "points.batch_key_reused"
    assert service.account(db_session, other.id).available == 0


def test_items_codes_shipment_and_vouchers(
    client: Any,
    tree: Any,
    make_staff: Any,
    make_customer: Any,
    staff_headers: Any,
    member_headers: Any,
    db_session: Any,
) -> None:
    manager = make_staff(tree.stores[0], "store_manager")
    h = staff_headers(manager)
    c = make_customer(tree.stores[0])
    store0, customer_id = tree.stores[0].id, c.id
    service.earn(db_session, c.id, 1000, key="seed", reason_code="t", operator="system:t")
    db_session.commit()
    mh = member_headers(c)
    bad = client.post(f"{WB}/points/mall/items", json={"name": "x", "kind": "physical", "points_price": 0}, headers=h)
    assert bad.status_code == 422 and "points_price" in bad.get_json()["errors"]["json"]
    group_wide = client.post(
        f"{WB}/points/mall/items", json={"name": "x", "kind": "physical", "points_price": 1}, headers=h
    )
    assert group_wide.status_code == 422 and "store_id" in group_wide.get_json()["errors"]["json"]
    item = client.post(
        f"{WB}/points/mall/items",
        json={"name": "车载香薰", "kind": "physical", "points_price": 100, "stock": 2, "store_id": store0},
        headers=h,
    ).get_json()
    r = client.patch(f"{WB}/points/mall/items/{item['id']}", json={"stock_delta": -5}, headers=h)
    assert r.status_code == 422
    assert (
        client.patch(f"{WB}/points/mall/items/{item['id']}", json={"stock_delta": 3}, headers=h).get_json()["stock"]
        == 5
    )
    order = client.post(
        "/api/app/v1/mall/redemptions", json={"item_id": item["id"], "address": ADDRESS}, headers=mh
    ).get_json()
    r = client.post(
        f"{WB}/points/mall/redemptions/{order['id']}/ship", json={"carrier": "SF", "tracking_no": "SF123456"}, headers=h
    )
    assert r.status_code == 200 and r.get_json()["state"] == "shipped"
    assert client.post(f"/api/app/v1/mall/redemptions/{order['id']}/cancel", json={}, headers=mh).status_code == 409
    voucher_item = client.post(
        f"{WB}/points/mall/items",
        json={"name": "免费洗车", "kind": "service_voucher", "points_price": 50, "stock": 10, "store_id": store0},
        headers=h,
    ).get_json()
    v = client.post("/api/app/v1/mall/redemptions", json={"item_id": voucher_item["id"]}, headers=mh).get_json()
    assert len(v["voucher_code"]) == 12
    r = client.post(f"{WB}/points/mall/vouchers/redeem", json={"voucher_code": v["voucher_code"]}, headers=h)
    assert r.status_code == 200 and r.get_json()["state"] == "completed"
    assert (
        client.post(
            f"{WB}/points/mall/vouchers/redeem", json={"voucher_code": v["voucher_code"]}, headers=h
        ).status_code
        == 409
    )
    codes_item = client.post(
        f"{WB}/points/mall/items",
        json={"name": "视频会员", "kind": "virtual_code", "points_price": 10, "stock": 10, "store_id": store0},
        headers=h,
    ).get_json()
    r = client.post(f"{WB}/points/mall/items/{codes_item['id']}/codes", json={"codes": ["A1", "A2"]}, headers=h)
    assert r.status_code == 201 and r.get_json() == {"added": 2, "available": 2}
    dup = client.post(f"{WB}/points/mall/items/{codes_item['id']}/codes", json={"codes": ["A1"]}, headers=h)
    assert dup.status_code == 422
    listing = client.get(f"{WB}/points/mall/redemptions", headers=h).get_json()
    assert {o["id"] for o in listing["items"]} == {order["id"], v["id"]}
    assert service.check_drift(db_session, [customer_id]) == []
    assert db_session.scalar(select(MallItem.sold).where(MallItem.id == item["id"])) == 1
    assert db_session.scalars(select(PointsLedger.reason_code).where(PointsLedger.customer_id == customer_id)).all()
