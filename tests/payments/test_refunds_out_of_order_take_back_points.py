"""Partial refunds that WeChat Pay finishes in any order each take back their share of the points
earned on the order (loyalty-booking-payments.md §1.2.5, §6.2.6)."""

from __future__ import annotations

from typing import Any

import pytest

from backend.payments.models import PaymentOrder
from backend.points import service as points
from integrations.sandbox.wechatpay_ledger import notify_paid, notify_refund
from tests.payments.conftest import create_order


@pytest.fixture
def manager(tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, str]:
    return staff_headers(make_staff(tree.stores[0], "store_manager"))


def _paid(client: Any, owner: Any, pay_effects: Any, state: Any, business_id: str, amount: int) -> dict[str, Any]:
    order = create_order(client, owner, pay_effects, business_id, amount).get_json()["order"]
    notify_paid(state, order["out_trade_no"])
    return order


def _refund(client: Any, headers: dict, order_id: int, **body: Any) -> Any:
    body.setdefault("reason", "客户取消服务")
    return client.post(f"/api/workbench/v1/payments/orders/{order_id}/refunds", json=body, headers=headers)


def test_refunds_finishing_out_of_order_each_take_back_their_share(
    client: Any, db_session: Any, owner: Any, pay_effects: Any, sandbox_reset: Any, deliver_to_app: Any, manager: Any
) -> None:
    order = _paid(client, owner, pay_effects, sandbox_reset.state, "oo-1", 100_00)  # 100 yuan: 100 pending
    assert points.account(db_session, owner.id).pending == 100
    a = _refund(client, manager, order["id"], amount_fen=30_00, out_refund_no="RF-oo-a")
    b = _refund(client, manager, order["id"], amount_fen=50_00, out_refund_no="RF-oo-b")
    assert (a.status_code, b.status_code) == (201, 201), (a.get_json(), b.get_json())
    # The bank finishes the later refund first.
    assert notify_refund(sandbox_reset.state, "RF-oo-b")[1] == [204]
    assert notify_refund(sandbox_reset.state, "RF-oo-a")[1] == [204]
    db_session.expire_all()
    assert db_session.get(PaymentOrder, order["id"]).refunded_fen == 80_00
    acc = points.account(db_session, owner.id)
    assert acc.pending == 20  # 80 of 100 yuan refunded: 80 of the 100 points taken back
    assert points.check_drift(db_session, [owner.id]) == []
