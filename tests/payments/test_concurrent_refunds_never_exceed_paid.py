"""Concurrent refunds of one order never add up to more than was paid (loyalty-booking-payments.md
§6.2.6: the sum of refunds in flight and done is checked under the payment order's row lock)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.payments.models import PaymentOrder, PaymentRefund
from backend.platform.db import db
from integrations.sandbox.wechatpay_ledger import ledger, notify_paid
from tests.payments.conftest import create_order
from tests.threads import run_threads

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def test_five_managers_refunding_forty_percent_each_at_once_refund_two(
    app: Any,
    client: Any,
    owner: Any,
    pay_effects: Any,
    sandbox_reset: Any,
    deliver_to_app: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
) -> None:
    headers = [staff_headers(make_staff(tree.stores[0], "store_manager")) for _ in range(5)]
    order = create_order(client, owner, pay_effects, "cr-1", 100_00).get_json()["order"]
    notify_paid(sandbox_reset.state, order["out_trade_no"])
    url = f"/api/workbench/v1/payments/orders/{order['id']}/refunds"
    results = run_threads(
        5,
        lambda i: app.test_client().post(
            url, json={"reason": "重复退款测试", "amount_fen": 40_00, "out_refund_no": f"RF-cr-{i}"}, headers=headers[i]
        ),
    )
    statuses = sorted(getattr(r, "status_code", repr(r)) for r in results)
    assert statuses == [201, 201, 422, 422, 422], statuses
    assert {r.get_json()["code"] for r in results if r.status_code == 422} == {"payment.refund_exceeds_paid"}
    with app.app_context():
        s = db.session()
        stored = s.get(PaymentOrder, order["id"])
        rows = s.scalar(select(func.coalesce(func.sum(PaymentRefund.amount_fen), 0)))
        db.session.remove()
    assert stored.refund_reserved_fen == 80_00 == rows and stored.refund_count == 2
    book = ledger(sandbox_reset.state)
    assert sum(r.amount for r in book.refunds.values()) == 80_00  # WeChat was asked for 80 yuan, no more
