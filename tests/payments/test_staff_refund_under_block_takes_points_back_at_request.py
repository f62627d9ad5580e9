"""POINTS_REVERSAL_POLICY=block: a workbench staff refund ran its points guard at the request but
took the points back only when WeChat Pay's success notification arrived; the owner could spend
them in between and the refund then left a debt. The request now takes them back at once (under
the order's lock, then the points account's: the lock a spend takes), and a refund WeChat Pay
closes gives them back, once (notification, duplicate notification, or the refund poll).
ABNORMAL is not a failure (WeChat Pay may still finish it): the points stay taken meanwhile.
MariaDB, the sandbox WeChat Pay, signed notifications delivered to the app."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from backend.payments import service as payments
from backend.payments.models import PaymentRefund
from backend.platform.actors import SystemActor
from backend.platform.db import db, utcnow
from backend.points import service as points
from backend.points.mall import redeem
from backend.points.models import ItemKind, LedgerKind, MallItem, PointsLedger
from integrations.sandbox.wechatpay_ledger import finish_refund, notify_paid, notify_refund
from tests.payments.conftest import create_order
from tests.threads import attempt, held_write, lock_wait_seen
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
    # The growth the reversal took comes back with the points (the refund never happened).
    assert _read(app, lambda s: points.account(s, owner.id).lifetime_earned) == 200
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


def _request(order_id: int, amount_fen: int, out_refund_no: str) -> Any:
    """The workbench's staff refund, as its view calls it (an owner's request: refusable)."""

    def write(s: Any) -> None:
        payments.request_refund(
            s, payments.gateway(), SystemActor("test-staff"), order_id, reason="客户取消服务",
            amount_fen=amount_fen, out_refund_no=out_refund_no,
        )  # fmt: skip

    return write


def test_a_redemption_racing_the_staff_refund_request_waits_for_it_and_finds_the_points_gone(
    app: Any, owner: Any, pay_effects: Any, sandbox_reset: Any, deliver_to_app: Any, block: None
) -> None:
    """The refund request has taken the order's and the points account's locks (not committed)
    when the owner redeems: the redemption waits for the account and is refused."""
    order_id, item_id = _paid_200(app, owner, pay_effects, sandbox_reset, "sr-4", active=True)
    with held_write(app, _request(order_id, 200_00, "RF-sr-4"), release_after=1.0):
        redeemed = attempt(app, lambda s: redeem(s, owner.id, item_id))
    assert redeemed == "points.insufficient"
    assert notify_refund(sandbox_reset.state, "RF-sr-4", copies=2)[1] == [204, 204]
    run_due_jobs(app)
    assert _books(app, owner.id) == {
        "available": 0,
        "pending": 0,
        "drift": [],
        "refunds": [("RF-sr-4", 200_00, "succeeded")],
        "reversed": [-200],
    }


def test_a_staff_refund_racing_a_redemption_that_holds_the_points_is_refused(
    app: Any, owner: Any, pay_effects: Any, sandbox_reset: Any, deliver_to_app: Any, block: None
) -> None:
    """The redemption holds the points account (not committed) when the staff refund is
    requested: the request waits for it under the order's lock, then finds 50 points where the
    refund takes 200, and is refused before WeChat Pay is asked."""
    order_id, item_id = _paid_200(app, owner, pay_effects, sandbox_reset, "sr-5", active=True)
    outcome: list[str] = []
    done = threading.Event()

    def request_now() -> None:
        outcome.append(attempt(app, _request(order_id, 200_00, "RF-sr-5")))
        done.set()

    with held_write(app, lambda s: redeem(s, owner.id, item_id), release_after=30) as release:
        requesting = threading.Thread(target=request_now)
        requesting.start()
        lock_wait_seen(20, until=done)
        release.set()
    requesting.join(30)
    assert outcome == ["points.reversal_blocked"]
    assert sandbox_reset.hits(REFUNDS) == 0
    assert _books(app, owner.id) == {"available": 50, "pending": 0, "drift": [], "refunds": [], "reversed": []}


def test_points_activated_while_the_refund_was_open_come_back_active_when_it_closes(
    app: Any, owner: Any, pay_effects: Any, manager: Any, sandbox_reset: Any, deliver_to_app: Any, block: None
) -> None:
    """100 of 200 pending points cancelled by the request; the return window ends (the other 100
    activate); WeChat Pay closes the refund: the 100 come back as available points (the pending
    credit they came from is active now), once."""
    order_id, _item = _paid_200(app, owner, pay_effects, sandbox_reset, "sr-6", active=False)
    assert _refund(app, manager, order_id, 100_00, "RF-sr-6").status_code == 201
    assert attempt(app, lambda s: points.activate_due(s, now=utcnow() + timedelta(days=8))) == "done"
    assert (_books(app, owner.id)["pending"], _books(app, owner.id)["available"]) == (0, 100)

    assert notify_refund(sandbox_reset.state, "RF-sr-6", "CLOSED", copies=2)[1] == [204, 204]
    run_due_jobs(app)
    assert _books(app, owner.id) == {
        "available": 200,
        "pending": 0,
        "drift": [],
        "refunds": [("RF-sr-6", 100_00, "closed")],
        "reversed": [],
    }


def test_the_campaign_grant_of_the_payment_is_taken_at_the_request_and_given_back_on_close(
    app: Any, tree: Any, make_staff: Any, staff_headers: Any, owner: Any, pay_effects: Any, manager: Any,
    sandbox_reset: Any, deliver_to_app: Any, block: None,
) -> None:  # fmt: skip
    """A spend multiplier doubles the 200 points (a campaign grant of 200 more): half the order back
    takes 100 + 100 at the request; the refund closes and both come back."""
    from tests.campaigns.conftest import make_rule

    marketing = staff_headers(make_staff(tree.group, "marketing", userid="sr.marketing"))
    make_rule(
        app.test_client(), marketing, name="消费翻倍", kind="multiplier", trigger="spend", points=None,
        multiplier_pct=200,
    )  # fmt: skip
    order_id, _item = _paid_200(app, owner, pay_effects, sandbox_reset, "sr-7", active=True)
    assert _books(app, owner.id)["available"] == 400
    assert _refund(app, manager, order_id, 100_00, "RF-sr-7").status_code == 201
    assert _books(app, owner.id)["available"] == 200
    assert notify_refund(sandbox_reset.state, "RF-sr-7", "CLOSED", copies=2)[1] == [204, 204]
    run_due_jobs(app)
    assert _books(app, owner.id) == {
        "available": 400,
        "pending": 0,
        "drift": [],
        "refunds": [("RF-sr-7", 100_00, "closed")],
        "reversed": [-100, -100],
    }


def test_a_refund_request_that_got_no_answer_and_is_then_refused_on_resend_gives_the_points_back(
    app: Any, owner: Any, pay_effects: Any, manager: Any, sandbox_reset: Any, deliver_to_app: Any, block: None
) -> None:
    """WeChat Pay is down at the request (503: the refund row and its take-back are kept, the
    refund may have reached WeChat Pay); the poll sends it again and WeChat Pay refuses it: the
    refund is closed and its 200 points come back, once (the poll again sends nothing)."""
    order_id, _item = _paid_200(app, owner, pay_effects, sandbox_reset, "sr-8", active=True)
    sandbox_reset.state.set_fault("down", service="wechatpay", path="/v3/refund", count=1)
    assert _refund(app, manager, order_id, 200_00, "RF-sr-8").status_code == 503
    assert _books(app, owner.id)["available"] == 0

    sandbox_reset.state.set_fault(
        "errcode", service="wechatpay", path="/v3/refund", count=1, errcode=1, http_status=400, code="NOT_ENOUGH"
    )

    def poll(s: Any) -> None:
        payments.sync_pending(s, payments.gateway(), now=utcnow() + timedelta(minutes=2))

    assert attempt(app, poll) == "done"
    assert attempt(app, poll) == "done"
    assert _books(app, owner.id) == {
        "available": 200,
        "pending": 0,
        "drift": [],
        "refunds": [("RF-sr-8", 200_00, "closed")],
        "reversed": [-200],
    }
