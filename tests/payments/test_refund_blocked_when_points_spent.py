"""The "block" reversal policy (loyalty-booking-payments.md §1.2.5 b): a refund whose earned points
the member has already spent is refused before WeChat Pay is asked."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from backend.payments.models import PaymentOrder, PaymentRefund
from backend.platform.db import utcnow
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


def test_block_policy_refuses_a_refund_whose_points_are_spent(
    app: Any,
    client: Any,
    db_session: Any,
    owner: Any,
    pay_effects: Any,
    sandbox_reset: Any,
    deliver_to_app: Any,
    manager: Any,
    monkeypatch: Any,
    app_ctx: Any,
) -> None:
    monkeypatch.setitem(app.config, "POINTS_REVERSAL_POLICY", "block")
    order = _paid(client, owner, pay_effects, sandbox_reset.state, "blk-1", 200_00)  # 200 points pending
    points.activate_due(db_session, now=utcnow() + timedelta(days=8))
    points.spend(db_session, owner.id, 150, key="blk-spend", reason_code="t", operator=f"member:{owner.id}")
    db_session.commit()
    assert points.account(db_session, owner.id).available == 50

    # Half of the order back would take 100 points; the member has 50: refused up front.
    resp = _refund(client, manager, order["id"], amount_fen=100_00, out_refund_no="RF-blk-1")
    assert resp.status_code == 409, resp.get_json()
    assert resp.get_json()["code"] == "points.reversal_blocked"
    assert sandbox_reset.hits("/v3/refund/domestic/refunds") == 0
    db_session.expire_all()
    assert db_session.get(PaymentOrder, order["id"]).refund_reserved_fen == 0
    assert db_session.scalars(select(PaymentRefund)).all() == []
    # A quarter (50 points) is covered: allowed, and no debt afterwards.
    ok = _refund(client, manager, order["id"], amount_fen=50_00, out_refund_no="RF-blk-2")
    assert ok.status_code == 201, ok.get_json()
    assert notify_refund(sandbox_reset.state, "RF-blk-2")[1] == [204]
    # A second 1-yuan refund: its one point is not there once the 50 are taken back.
    more = _refund(client, manager, order["id"], amount_fen=1_00, out_refund_no="RF-blk-3")
    assert more.status_code == 409 and more.get_json()["code"] == "points.reversal_blocked"
    db_session.expire_all()
    acc = points.account(db_session, owner.id)
    assert acc.available == 0
    assert points.check_drift(db_session, [owner.id]) == []


def test_a_refund_the_store_owes_goes_through_under_block_and_leaves_a_debt(
    app: Any,
    client: Any,
    db_session: Any,
    owner: Any,
    pay_effects: Any,
    sandbox_reset: Any,
    deliver_to_app: Any,
    manager: Any,
    monkeypatch: Any,
    app_ctx: Any,
) -> None:
    """The store cannot deliver what was paid for (a package it no longer offers, say): staff say
    so with `store_at_fault`, the refund is not refused, the spent points become a debt; the
    audit says the refund was not refusable. Without the flag the same refund is refused."""
    from backend.platform.audit import AuditLog

    monkeypatch.setitem(app.config, "POINTS_REVERSAL_POLICY", "block")
    order = _paid(client, owner, pay_effects, sandbox_reset.state, "blk-store", 200_00)
    points.activate_due(db_session, now=utcnow() + timedelta(days=8))
    points.spend(db_session, owner.id, 150, key="blk-store-spend", reason_code="t", operator=f"member:{owner.id}")
    db_session.commit()

    refused = _refund(client, manager, order["id"], out_refund_no="RF-store-0", reason="客户要求退款")
    assert refused.status_code == 409 and refused.get_json()["code"] == "points.reversal_blocked"
    owed = {"out_refund_no": "RF-store-1", "reason": "门店无法提供该服务", "store_at_fault": True}
    first = _refund(client, manager, order["id"], **owed)
    again = _refund(client, manager, order["id"], **owed)  # a retry: the same refund
    assert (first.status_code, again.status_code) == (201, 201), first.get_json()
    assert first.get_json()["id"] == again.get_json()["id"]
    assert sandbox_reset.hits("/v3/refund/domestic/refunds") == 1
    assert notify_refund(sandbox_reset.state, "RF-store-1", copies=2)[1] == [204, 204]
    db_session.expire_all()
    assert points.account(db_session, owner.id).available == -150
    assert points.check_drift(db_session, [owner.id]) == []
    audit = db_session.scalars(select(AuditLog).where(AuditLog.action == "payment.refund_requested")).one()
    assert audit.detail["refusable"] is False
