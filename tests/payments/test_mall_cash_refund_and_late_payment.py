"""Probes: points+cash mall orders through WeChat Pay (loyalty-booking-payments.md §3.2.2,
§3.2.4, §6.2.2): a partial refund of the cash part does not cancel the redemption (only a full
refund does); a payment notification for an order we closed is credited and flagged, and gives
neither stock nor points twice."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.payments import service as payments
from backend.payments.models import PaymentIssue, PaymentOrder
from backend.points import service as points
from backend.points.models import LedgerKind, MallItem, MallOrder, PointsLedger
from integrations.sandbox.wechatpay_ledger import deliver_notification, notify_paid, notify_refund
from tests.wecom.helpers import run_due_jobs

ADDRESS = {"name": "张三", "phone": "13800138000", "region": "上海市浦东新区", "detail": "世纪大道1号"}


@pytest.fixture
def manager(tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, str]:
    return staff_headers(make_staff(tree.stores[0], "store_manager"))


@pytest.fixture
def cash_item(db_session: Any, owner: Any, app_ctx: Any) -> int:
    points.earn(db_session, owner.id, 1000, key="seed", reason_code="t", operator="system:t", expiry="never")
    item = MallItem(name="车载香薰", kind="physical", points_price=100, cash_fen=50_00, stock=5, per_order_limit=1)
    db_session.add(item)
    db_session.commit()
    return item.id


def _redeem_and_order(client: Any, owner: Any, item_id: int) -> tuple[int, dict[str, Any]]:
    red = client.post(
        "/api/app/v1/mall/redemptions", json={"item_id": item_id, "address": ADDRESS}, headers=owner.headers
    )
    assert red.status_code == 201, red.get_json()
    mall_id = red.get_json()["id"]
    resp = client.post(
        "/api/app/v1/payments/orders",
        json={"business_type": "mall_order", "business_id": str(mall_id)},
        headers=owner.headers,
    )
    assert resp.status_code == 201, resp.get_json()
    return mall_id, resp.get_json()["order"]


def _state(db_session: Any, owner: Any, item_id: int, mall_id: int) -> tuple[Any, ...]:
    db_session.expire_all()
    item = db_session.get(MallItem, item_id)
    acc = points.account(db_session, owner.id)
    return db_session.get(MallOrder, mall_id).state.value, item.stock, item.sold, acc.available, acc.frozen


def test_a_partial_refund_of_the_cash_part_does_not_cancel_the_redemption(
    client: Any,
    db_session: Any,
    owner: Any,
    cash_item: int,
    sandbox_reset: Any,
    deliver_to_app: Any,
    manager: Any,
) -> None:
    mall_id, order = _redeem_and_order(client, owner, cash_item)
    notify_paid(sandbox_reset.state, order["out_trade_no"])
    assert _state(db_session, owner, cash_item, mall_id) == ("placed", 4, 1, 900, 0)

    url = f"/api/workbench/v1/payments/orders/{order['id']}/refunds"
    part = client.post(
        url, json={"reason": "少发赠品补偿", "amount_fen": 10_00, "out_refund_no": "RF-m-1"}, headers=manager
    )
    assert part.status_code == 201, part.get_json()
    assert notify_refund(sandbox_reset.state, "RF-m-1")[1] == [204]
    # 10 of 50 yuan back: the member keeps the item (and paid its points), nothing is restored.
    assert _state(db_session, owner, cash_item, mall_id) == ("placed", 4, 1, 900, 0)

    rest = client.post(url, json={"reason": "取消兑换", "out_refund_no": "RF-m-2"}, headers=manager)
    assert rest.status_code == 201 and rest.get_json()["amount_fen"] == 40_00
    assert notify_refund(sandbox_reset.state, "RF-m-2")[1] == [204]
    # Refunded in full: the redemption is cancelled, stock and points come back once.
    assert _state(db_session, owner, cash_item, mall_id) == ("cancelled", 5, 0, 1000, 0)
    assert points.check_drift(db_session, [owner.id]) == []


def test_a_payment_notified_after_we_closed_the_order_is_flagged_and_gives_nothing_twice(
    app: Any,
    client: Any,
    db_session: Any,
    owner: Any,
    cash_item: int,
    sandbox_reset: Any,
    deliver_to_app: Any,
    app_ctx: Any,
) -> None:
    mall_id, order = _redeem_and_order(client, owner, cash_item)
    state = sandbox_reset.state
    plaintext = state.mark_paid(order["out_trade_no"])  # paid at WeChat; the notify is delayed
    with state.lock:
        state.orders[order["out_trade_no"]].trade_state = "NOTPAY"  # ... and the close gets through
    payments.close_one(db_session, payments.gateway(), order["id"], reason="expired")
    db_session.commit()
    run_due_jobs(app)  # on_closed: the redemption is closed, its stock and points given back
    assert _state(db_session, owner, cash_item, mall_id) == ("closed", 5, 0, 1000, 0)

    headers, body = state.build_pay_notification(plaintext, "TRANSACTION.SUCCESS")
    statuses = deliver_notification(
        state, "https://x/notify", headers, body, event_type="TRANSACTION.SUCCESS", copies=2
    )
    assert statuses == [204, 204]
    db_session.expire_all()
    paid = db_session.get(PaymentOrder, order["id"])
    assert paid.state == "paid" and paid.flagged
    [issue] = db_session.scalars(select(PaymentIssue)).all()
    assert issue.kind == "paid_after_close"
    # The redemption stays closed: no stock taken again, the released points not consumed.
    assert _state(db_session, owner, cash_item, mall_id) == ("closed", 5, 0, 1000, 0)
    consumed = db_session.scalar(
        select(func.count()).select_from(PointsLedger).where(PointsLedger.kind == LedgerKind.CONSUME)
    )
    assert consumed == 0
    assert points.check_drift(db_session, [owner.id]) == []
