"""POINTS_REVERSAL_POLICY=block: a workbench staff refund ran its points guard at the request but
took the points back only when WeChat Pay's success notification arrived; the owner could spend
them in between and the refund then left a debt. The request now takes them back at once (under
the order's lock, then the points account's: the lock a spend takes), and a refund WeChat Pay
closes gives them back, once (notification, duplicate notification, or the refund poll).
ABNORMAL is not a failure (WeChat Pay may still finish it): the points stay taken meanwhile.
MariaDB, the sandbox WeChat Pay, signed notifications delivered to the app."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from backend.payments import service as payments
from backend.payments.models import PaymentRefund
from backend.platform.db import db, utcnow
from backend.points import service as points
from backend.points.mall import redeem
from backend.points.models import ItemKind, LedgerKind, MallItem, PointsLedger
from integrations.sandbox.wechatpay_ledger import finish_refund, notify_paid, notify_refund
from tests.payments.conftest import create_order
from tests.threads import attempt
from tests.wecom.helpers import run_due_jobs

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]

REFUNDS = "/v3/refund/domestic/refunds"


@pytest.fixture
def block(app: Any, monkeypatch: Any) -> None:
    monkeypatch.setitem(app.config, "POINTS_REVERSAL_POLICY", "block")


@pytest.fixture
def manager(tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, str]:
    return staff_headers(make_staff(tree.stores[0], "store_manager"))


def _read(app: Any, fn: Any) -> Any:
    with app.app_context():
        try:
            return fn(db.session())
        finally:
            db.session.remove()


def _paid_200(
    app: Any, owner: Any, pay_effects: Any, sandbox: Any, business_id: str, *, active: bool
) -> tuple[int, int]:
    """A 200-yuan order paid (200 points pending; active when `active`) and a 150-point voucher
    in the mall. Returns (order id, item id)."""
    order = create_order(app.test_client(), owner, pay_effects, business_id, 200_00).get_json()["order"]
    assert notify_paid(sandbox.state, order["out_trade_no"])[1] == [204]
    run_due_jobs(app)

    def setup(s: Any) -> int:
        if active:
            points.activate_due(s, now=utcnow() + timedelta(days=8))
        item = MallItem(name="保养券", kind=ItemKind.SERVICE_VOUCHER, points_price=150, stock=5)
        s.add(item)
        s.flush()
        s.commit()
        return item.id

    return order["id"], _read(app, setup)


def _refund(app: Any, headers: dict, order_id: int, amount_fen: int, out_refund_no: str) -> Any:
    body = {"reason": "客户取消服务", "amount_fen": amount_fen, "out_refund_no": out_refund_no}
    return app.test_client().post(f"/api/workbench/v1/payments/orders/{order_id}/refunds", json=body, headers=headers)


def _books(app: Any, owner_id: int) -> dict[str, Any]:
    def read(s: Any) -> dict[str, Any]:
        acc = points.account(s, owner_id)
        return {
            "available": acc.available,
            "pending": acc.pending,
            "drift": points.check_drift(s, [owner_id]),
            "refunds": [
                (r.out_refund_no, r.amount_fen, r.state.value)
                for r in s.scalars(select(PaymentRefund).order_by(PaymentRefund.id)).all()
            ],
            "reversed": sorted(
                s.scalars(
                    select(PointsLedger.delta).where(
                        PointsLedger.customer_id == owner_id, PointsLedger.kind == LedgerKind.REVERSE
                    )
                ).all()
            ),
        }

    return _read(app, read)


def test_a_redemption_after_the_staff_refund_request_finds_the_points_gone_and_no_debt_follows(
    app: Any, owner: Any, pay_effects: Any, manager: Any, sandbox_reset: Any, deliver_to_app: Any, block: None
) -> None:
    """150 of the 200 yuan back takes 150 of the 200 points (the proportion of the refund take-back)
    at the request; the 150-point voucher is then refused. Before the fix the redemption went
    through and the success notification left the owner at -100."""
    order_id, item_id = _paid_200(app, owner, pay_effects, sandbox_reset, "sr-1", active=True)

    resp = _refund(app, manager, order_id, 150_00, "RF-sr-1")
    assert resp.status_code == 201, resp.get_json()
    assert _books(app, owner.id)["available"] == 50
    assert attempt(app, lambda s: redeem(s, owner.id, item_id)) == "points.insufficient"

    assert notify_refund(sandbox_reset.state, "RF-sr-1", copies=2)[1] == [204, 204]
    run_due_jobs(app)
    run_due_jobs(app)
    assert sandbox_reset.hits(REFUNDS) == 1
    assert _books(app, owner.id) == {
        "available": 50,
        "pending": 0,
        "drift": [],
        "refunds": [("RF-sr-1", 150_00, "succeeded")],
        "reversed": [-150],
    }


def test_a_closed_refund_gives_the_pending_points_back_once_and_a_new_refund_takes_them_again(
    app: Any, owner: Any, pay_effects: Any, manager: Any, sandbox_reset: Any, deliver_to_app: Any, block: None
) -> None:
    """Points still in the return window: the request cancels 100 pending, WeChat Pay closes the
    refund (notification delivered twice), the 100 are pending again once. A new refund of the
    same amount then takes them again (a per-refund key, not the refunded level, which the closed
    refund had used) and its success takes nothing more."""
    order_id, _item = _paid_200(app, owner, pay_effects, sandbox_reset, "sr-2", active=False)

    assert _refund(app, manager, order_id, 100_00, "RF-sr-2a").status_code == 201
    assert (_books(app, owner.id)["pending"], _books(app, owner.id)["available"]) == (100, 0)

    assert notify_refund(sandbox_reset.state, "RF-sr-2a", "CLOSED", copies=2)[1] == [204, 204]
    run_due_jobs(app)
    assert _books(app, owner.id) == {
        "available": 0,
        "pending": 200,
        "drift": [],
        "refunds": [("RF-sr-2a", 100_00, "closed")],
        "reversed": [],
    }

    assert _refund(app, manager, order_id, 100_00, "RF-sr-2b").status_code == 201
    assert _books(app, owner.id)["pending"] == 100
    assert notify_refund(sandbox_reset.state, "RF-sr-2b", copies=2)[1] == [204, 204]
    run_due_jobs(app)
    assert _books(app, owner.id) == {
        "available": 0,
        "pending": 100,
        "drift": [],
        "refunds": [("RF-sr-2a", 100_00, "closed"), ("RF-sr-2b", 100_00, "succeeded")],
        "reversed": [],
    }


def test_an_abnormal_refund_keeps_the_points_taken_and_its_close_found_by_the_poll_gives_them_back_once(
    app: Any, owner: Any, pay_effects: Any, manager: Any, sandbox_reset: Any, deliver_to_app: Any, block: None
) -> None:
    """Active points, a full refund: 200 reversed at the request. REFUND.ABNORMAL keeps them
    reversed (the refund may still succeed); the refund then closes, the poll finds it and gives
    the 200 back into their bucket; the CLOSED notification arriving afterwards, and the poll
    again, give nothing twice."""
    order_id, item_id = _paid_200(app, owner, pay_effects, sandbox_reset, "sr-3", active=True)

    assert _refund(app, manager, order_id, 200_00, "RF-sr-3").status_code == 201
    assert _books(app, owner.id)["available"] == 0
    assert notify_refund(sandbox_reset.state, "RF-sr-3", "ABNORMAL")[1] == [204]
    run_due_jobs(app)
    assert _books(app, owner.id)["available"] == 0
    assert attempt(app, lambda s: redeem(s, owner.id, item_id)) == "points.insufficient"

    finish_refund(sandbox_reset.state, "RF-sr-3", "CLOSED")

    def poll(s: Any) -> None:
        payments.sync_pending(s, payments.gateway(), now=utcnow() + timedelta(minutes=2))

    assert attempt(app, poll) == "done"
    assert attempt(app, poll) == "done"
    assert _books(app, owner.id)["available"] == 200
    # The CLOSED notification arrives late: a duplicate.
    assert _deliver_closed(sandbox_reset, "RF-sr-3") == [204, 204]
    run_due_jobs(app)
    books = _books(app, owner.id)
    assert books == {
        "available": 200,
        "pending": 0,
        "drift": [],
        "refunds": [("RF-sr-3", 200_00, "closed")],
        "reversed": [-200],
    }
    given_back = _read(
        app,
        lambda s: s.scalars(
            select(PointsLedger.delta).where(
                PointsLedger.customer_id == owner.id, PointsLedger.kind == LedgerKind.RESTORE
            )
        ).all(),
    )
    assert given_back == [200]
    assert attempt(app, lambda s: redeem(s, owner.id, item_id)) == "done"


def _deliver_closed(sandbox: Any, out_refund_no: str) -> list[int]:
    """WeChat Pay's REFUND.CLOSED notification of a refund already closed on its side, delivered twice."""
    from integrations.sandbox.wechatpay_ledger import deliver_notification, ledger, refund_notification_plaintext

    state = sandbox.state
    refund = ledger(state).refunds[out_refund_no]
    plaintext = refund_notification_plaintext(state, refund)
    headers, body = state.build_pay_notification(plaintext, "REFUND.CLOSED", summary="退款状态")
    return deliver_notification(
        state, refund.notify_url, headers, body, event_type="REFUND.CLOSED", copies=2, retries=0
    )
