"""The points mall through the owner API and the workbench."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from backend.platform.db import utcnow
from backend.points import mall, service
from backend.points.models import (
    ItemKind,
    LimitPeriod,
    MallCode,
    MallItem,
    MallMemberCounter,
    MallOrder,
    PointsAllocation,
    PointsLedger,
)

# The services send notices through the outbox, which needs the app.
pytestmark = [pytest.mark.usefixtures("app_ctx")]

ADDRESS = {"name": "张三", "phone": "13800138000", "region": "上海市浦东新区", "detail": "世纪大道1号"}


@pytest.fixture
def member(make_customer: Any, tree: Any, db_session: Any) -> Any:
    c = make_customer(tree.stores[0])
    service.earn(db_session, c.id, 1000, key=f"seed:{c.id}", reason_code="test", operator="system:test", expiry="never")
    db_session.commit()
    return c


def _item(db_session: Any, **kw: Any) -> Any:
    values = {"name": "洗车券", "kind": ItemKind.PHYSICAL, "points_price": 100, "stock": 5, "per_order_limit": 3}
    values.update(kw)
    item = MallItem(**values)
    db_session.add(item)
    db_session.commit()
    return SimpleNamespace(id=item.id)  # requests end their session: keep the id, not the row


def _redeem(client: Any, headers: Any, item_id: int, **body: Any) -> Any:
    return client.post("/api/app/v1/mall/redemptions", json={"item_id": item_id, **body}, headers=headers)


def test_redeem_physical_then_cancel_restores_everything(
    client: Any, member: Any, member_headers: Any, db_session: Any
) -> None:
    item = _item(db_session, per_member_limit=5)
    h = member_headers(member)
    resp = _redeem(client, h, item.id, quantity=2, address=ADDRESS)
    assert resp.status_code == 201, resp.get_json()
    order = resp.get_json()
    assert order["state"] == "placed" and order["points_total"] == 200
    assert client.get("/api/app/v1/points/account", headers=h).get_json()["available"] == 800
    debit = db_session.get(MallOrder, order["id"]).points_ledger_id
    buckets = {
        a.credit_id for a in db_session.scalars(select(PointsAllocation).where(PointsAllocation.debit_id == debit))
    }
    resp = client.post(f"/api/app/v1/mall/redemptions/{order['id']}/cancel", json={}, headers=h)
    assert resp.status_code == 200 and resp.get_json()["state"] == "cancelled"
    db_session.expire_all()
    assert db_session.get(MallItem, item.id).stock == 5
    counter = db_session.scalars(select(MallMemberCounter).where(MallMemberCounter.item_id == item.id)).one()
    assert counter.quantity == 0
    assert client.get("/api/app/v1/points/account", headers=h).get_json()["available"] == 1000
    assert service.check_drift(db_session, [member.id]) == []
    for bucket_id in buckets:  # the very same buckets got their points back
        assert db_session.get(PointsLedger, bucket_id).remaining > 0
    # a second cancel is refused
    assert client.post(f"/api/app/v1/mall/redemptions/{order['id']}/cancel", json={}, headers=h).status_code == 409


def test_bad_input_is_422_with_the_field(client: Any, member: Any, member_headers: Any, db_session: Any) -> None:
    item = _item(db_session)
    h = member_headers(member)
    resp = _redeem(client, h, item.id)  # physical without address
    assert resp.status_code == 422 and "address" in resp.get_json()["errors"]["json"]
    resp = _redeem(client, h, item.id, quantity=4, address=ADDRESS)  # above per-order limit
    assert resp.status_code == 422 and "quantity" in resp.get_json()["errors"]["json"]
    resp = _redeem(client, h, item.id, address={**ADDRESS, "phone": "12"})
    assert resp.status_code == 422 and "address" in resp.get_json()["errors"]["json"]
    resp = _redeem(client, h, item.id, quantity=1, color="red", address=ADDRESS)
    assert resp.status_code == 422 and "color" in resp.get_json()["errors"]["json"]
    db_session.expire_all()
    assert db_session.get(MallItem, item.id).stock == 5  # nothing half-written


def test_limits_tier_window_stock_and_coupon_errors(
    client: Any, member: Any, member_headers: Any, db_session: Any
) -> None:
    h = member_headers(member)
    limited = _item(
        db_session,
        kind=ItemKind.SERVICE_VOUCHER,
        per_member_limit=3,
        limit_period=LimitPeriod.MONTH,
        per_period_limit=2,
    )
    assert _redeem(client, h, limited.id, quantity=2).status_code == 201
    resp = _redeem(client, h, limited.id)
    assert resp.status_code == 409 and resp.get_json()["code"] == "mall.limit_reached"
    assert "上限" in resp.get_json()["message"]
    gold = _item(db_session, min_tier="gold")
    assert _redeem(client, h, gold.id, address=ADDRESS).get_json()["code"] == "mall.tier_required"
    later = _item(db_session, sale_starts_at=utcnow() + timedelta(days=1))
    assert _redeem(client, h, later.id, address=ADDRESS).get_json()["code"] == "mall.not_on_sale"
    coupon = _item(db_session, kind=ItemKind.COUPON)
    resp = _redeem(client, h, coupon.id)
    assert resp.status_code == 409 and resp.get_json()["code"] == "mall.coupon_unavailable"
    one = _item(db_session, stock=1)
    assert _redeem(client, h, one.id, address=ADDRESS).status_code == 201
    assert _redeem(client, h, one.id, address=ADDRESS).get_json()["code"] == "mall.sold_out"
    pricey = _item(db_session, points_price=5000)
    resp = _redeem(client, h, pricey.id, address=ADDRESS)
    assert resp.get_json()["code"] == "points.insufficient"
    db_session.expire_all()
    assert db_session.get(MallItem, pricey.id).stock == 5  # stock taken back with the failed debit
    assert service.check_drift(db_session, [member.id]) == []


def test_virtual_codes_come_from_the_pool(client: Any, member: Any, member_headers: Any, db_session: Any) -> None:
    item = _item(db_session, kind=ItemKind.VIRTUAL_CODE, per_order_limit=2)
    db_session.add_all([MallCode(item_id=item.id, code="CODE-A"), MallCode(item_id=item.id, code="CODE-B")])
    db_session.commit()
    h = member_headers(member)
    order = _redeem(client, h, item.id).get_json()
    assert order["state"] == "completed" and order["codes"] == ["CODE-A"]
    assert _redeem(client, h, item.id).get_json()["codes"] == ["CODE-B"]
    resp = _redeem(client, h, item.id)
    assert resp.get_json()["code"] == "mall.codes_exhausted"
    db_session.expire_all()
    assert db_session.get(MallItem, item.id).stock == 3
    assert client.post(f"/api/app/v1/mall/redemptions/{order['id']}/cancel", json={}, headers=h).status_code == 409


def test_idempotent_redemption(client: Any, member: Any, member_headers: Any, db_session: Any) -> None:
    item = _item(db_session)
    h = {**member_headers(member), "Idempotency-Key": "redeem-1"}
    a = _redeem(client, h, item.id, address=ADDRESS)
    b = _redeem(client, h, item.id, address=ADDRESS)
    assert a.status_code == b.status_code == 201 and a.get_json()["id"] == b.get_json()["id"]
    assert db_session.scalar(select(MallItem.stock).where(MallItem.id == item.id)) == 4


def test_owner_cannot_see_another_stores_item_or_anothers_order(
    client: Any, member: Any, member_headers: Any, make_customer: Any, tree: Any, db_session: Any
) -> None:
    other_store_item = _item(db_session, store_id=tree.stores[3].id)
    h = member_headers(member)
    assert client.get(f"/api/app/v1/mall/items/{other_store_item.id}", headers=h).status_code == 404
    assert other_store_item.id not in [
        i["id"] for i in client.get("/api/app/v1/mall/items", headers=h).get_json()["items"]
    ]
    assert _redeem(client, h, other_store_item.id, address=ADDRESS).status_code == 404


def test_points_plus_cash_freezes_then_pays_or_closes(member: Any, db_session: Any, app_ctx: Any) -> None:
    from backend.payments.models import PaymentOrder

    item = _item(db_session, cash_fen=990)
    order = mall.redeem(db_session, member.id, item.id, 1, ADDRESS)
    assert order.state.value == "awaiting_payment"
    acc = service.account(db_session, member.id)
    assert (acc.available, acc.frozen) == (900, 100)
    quote = mall.quote(db_session, member.id, str(order.id))
    assert quote.amount_fen == 990

    def pay_order(mall_order: MallOrder) -> PaymentOrder:
        po = PaymentOrder(
            out_trade_no=f"DLTEST{mall_order.id:020d}",
            customer_id=member.id,
            business_type="mall_order",
            business_id=str(mall_order.id),
            description="x",
            amount_fen=990,
            openid="o",
            expires_at=utcnow(),
        )
        db_session.add(po)
        db_session.flush()
        return po

    po = pay_order(order)
    mall.on_paid(db_session, po.id)
    mall.on_paid(db_session, po.id)  # re-run: once
    acc = service.account(db_session, member.id)
    assert (acc.available, acc.frozen) == (900, 0)
    assert db_session.get(MallOrder, order.id).state.value == "placed"

    second = mall.redeem(db_session, member.id, item.id, 1, ADDRESS)
    po2 = pay_order(second)
    mall.on_closed(db_session, po2.id)
    acc = service.account(db_session, member.id)
    assert (acc.available, acc.frozen) == (900, 0)
    assert db_session.get(MallOrder, second.id).state.value == "closed"
    # refund in full of the paid one before shipment cancels it and restores the points
    po.state, po.refunded_fen = "refunded", 990
    db_session.flush()
    mall.on_refunded(db_session, po.id, 1)
    assert service.account(db_session, member.id).available == 1000
    assert db_session.get(MallItem, item.id).stock == 5
    assert service.check_drift(db_session, [member.id]) == []
