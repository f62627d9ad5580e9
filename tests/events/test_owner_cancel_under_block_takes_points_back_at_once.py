"""POINTS_REVERSAL_POLICY=block promises the owner's own cancellation is refused at once when the
points its payment earned are spent. The check used to be a plain read at the cancellation and the
take-back came only with the refund (a job after the commit, no longer refusable): a mall
redemption between the two — or at the same moment as the cancellation — spent the points, and the
refund left the owner in debt. The cancellation now takes the points back in its own transaction
under the points account's lock (the lock a spend takes), so a spend either comes first and the
cancellation is refused, or comes after and finds the points gone; the refund job then takes
nothing twice and refunds once (real threads, MariaDB)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from backend.events import service as events
from backend.events.models import EventRegistration
from backend.payments.models import PaymentRefund
from backend.platform.db import db, utcnow
from backend.points import service as points
from backend.points.mall import redeem
from backend.points.models import ItemKind, LedgerKind, MallItem, MallOrder, PointsLedger
from integrations.sandbox.wechatpay_ledger import notify_paid, notify_refund
from tests.events.conftest import APP, create_event, sign_up
from tests.threads import attempt, held_write, lock_wait_seen
from tests.wecom.helpers import run_due_jobs

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]

REFUNDS = "/v3/refund/domestic/refunds"


@pytest.fixture
def block(app: Any, monkeypatch: Any) -> None:
    monkeypatch.setitem(app.config, "POINTS_REVERSAL_POLICY", "block")


def _read(app: Any, fn: Any) -> Any:
    with app.app_context():
        try:
            return fn(db.session())
        finally:
            db.session.remove()


def _paid_sign_up_with_active_points(
    app: Any, place: Any, owner: Any, sandbox: Any, available: int = 200
) -> tuple[int, int, int]:
    """A 200-yuan sign-up, paid, its 200 points active (past the return window) and none spent;
    a 150-point voucher in the mall. Returns (registration id, order id, item id)."""
    client = app.test_client()
    event = create_event(client, place.h(), capacity=5, max_party_size=1, fee_kind="cash", fee_fen=200_00)
    reg = sign_up(client, owner, event["id"]).get_json()
    body = {"business_type": "event_fee", "business_id": str(reg["id"])}
    made = client.post(f"{APP}/payments/orders", json=body, headers=owner.headers)
    assert made.status_code == 201, made.get_json()
    order = made.get_json()["order"]
    assert notify_paid(sandbox.state, order["out_trade_no"])[1] == [204]
    run_due_jobs(app)  # the points earned on the payment

    def setup(s: Any) -> int:
        points.activate_due(s, now=utcnow() + timedelta(days=8))
        item = MallItem(name="保养券", kind=ItemKind.SERVICE_VOUCHER, points_price=150, stock=5)
        s.add(item)
        s.flush()
        s.commit()
        assert points.account(s, owner.id).available == available
        return item.id

    return reg["id"], order["id"], _read(app, setup)


def _books(app: Any, owner_id: int, reg_id: int) -> dict[str, Any]:
    def read(s: Any) -> dict[str, Any]:
        return {
            "available": points.account(s, owner_id).available,
            "drift": points.check_drift(s, [owner_id]),
            "refunds": [
                (r.amount_fen, r.state) for r in s.scalars(select(PaymentRefund).order_by(PaymentRefund.id)).all()
            ],
            "redeemed": len(s.scalars(select(MallOrder).where(MallOrder.customer_id == owner_id)).all()),
            "reversed": sorted(
                s.scalars(
                    select(PointsLedger.delta).where(
                        PointsLedger.customer_id == owner_id, PointsLedger.kind == LedgerKind.REVERSE
                    )
                ).all()
            ),
            "state": s.get(EventRegistration, reg_id).state.value,
        }

    return _read(app, read)


def _cancel(owner_id: int, reg_id: int) -> Any:
    return lambda s: events.cancel(s, owner_id, reg_id)


def _settle_refund(app: Any, sandbox: Any, reg_id: int) -> None:
    """The refund job, then WeChat Pay's success notification (twice) and its listeners."""
    run_due_jobs(app)
    assert notify_refund(sandbox.state, f"EVT{reg_id}", copies=2)[1] == [204, 204]
    run_due_jobs(app)


def test_a_redemption_after_the_cancellation_but_before_the_refund_job_finds_the_points_gone(
    app: Any, place: Any, make_owner: Any, sandbox_reset: Any, deliver_to_app: Any, block: None
) -> None:
    owner = make_owner(place.unit)
    reg_id, order_id, item_id = _paid_sign_up_with_active_points(app, place, owner, sandbox_reset)

    assert attempt(app, _cancel(owner.id, reg_id)) == "done"  # committed; the refund job not run yet
    assert sandbox_reset.hits(REFUNDS) == 0
    assert attempt(app, lambda s: redeem(s, owner.id, item_id)) == "points.insufficient"

    _settle_refund(app, sandbox_reset, reg_id)
    # The job again (a retry): nothing more is asked of WeChat Pay, nothing taken back twice.
    assert attempt(app, lambda s: events.refund_fee(s, reg_id)) == "done"
    run_due_jobs(app)
    assert sandbox_reset.hits(REFUNDS) == 1
    assert _books(app, owner.id, reg_id) == {
        "available": 0,
        "drift": [],
        "refunds": [(200_00, "succeeded")],
        "redeemed": 0,
        "reversed": [-200],
        "state": "cancelled",
    }


def test_a_redemption_holding_the_points_when_the_owner_cancels_makes_the_cancellation_refused(
    app: Any, place: Any, make_owner: Any, sandbox_reset: Any, deliver_to_app: Any, block: None
) -> None:
    """The redemption has taken the points account's lock (not committed) when the cancellation
    starts: the cancellation waits for it and then finds the points spent."""
    owner = make_owner(place.unit)
    reg_id, order_id, item_id = _paid_sign_up_with_active_points(app, place, owner, sandbox_reset)

    outcome: list[str] = []
    done = threading.Event()

    def cancel_now() -> None:
        outcome.append(attempt(app, _cancel(owner.id, reg_id)))
        done.set()

    with held_write(app, lambda s: redeem(s, owner.id, item_id), release_after=30) as release:
        cancelling = threading.Thread(target=cancel_now)
        cancelling.start()
        # The redemption commits only once the cancellation has finished (it did not wait for
        # the redemption's locks) or is seen waiting on a lock: the interleaving under test.
        lock_wait_seen(20, until=done)
        release.set()
    cancelling.join(30)
    run_due_jobs(app)

    assert outcome == ["points.reversal_blocked"]
    assert sandbox_reset.hits(REFUNDS) == 0
    assert _books(app, owner.id, reg_id) == {
        "available": 50,
        "drift": [],
        "refunds": [],
        "redeemed": 1,
        "reversed": [],
        "state": "confirmed",
    }


def test_a_cancellation_holding_the_points_when_the_owner_redeems_makes_the_redemption_refused(
    app: Any, place: Any, make_owner: Any, sandbox_reset: Any, deliver_to_app: Any, block: None
) -> None:
    """The cancellation has taken its locks (not committed) when the redemption starts: the
    redemption waits for the points account and finds the points taken back."""
    owner = make_owner(place.unit)
    reg_id, order_id, item_id = _paid_sign_up_with_active_points(app, place, owner, sandbox_reset)

    with held_write(app, _cancel(owner.id, reg_id), release_after=1.0):
        redeemed = attempt(app, lambda s: redeem(s, owner.id, item_id))
    assert redeemed == "points.insufficient"

    _settle_refund(app, sandbox_reset, reg_id)
    assert sandbox_reset.hits(REFUNDS) == 1
    assert _books(app, owner.id, reg_id) == {
        "available": 0,
        "drift": [],
        "refunds": [(200_00, "succeeded")],
        "redeemed": 0,
        "reversed": [-200],
        "state": "cancelled",
    }


def test_the_campaign_points_the_payment_earned_count_too_and_the_cancellation_is_refused(
    app: Any, place: Any, make_owner: Any, sandbox_reset: Any, deliver_to_app: Any, block: None
) -> None:
    """A spend multiplier doubles the payment's 200 points (a campaign grant of 200 more); 100
    are spent. The full refund takes back 400 but 300 are left: the owner's cancellation is
    refused (the check used to count the 200 per-yuan points only, let the cancellation through,
    and the refund left a debt of 100)."""
    from tests.campaigns.conftest import make_rule

    client = app.test_client()
    make_rule(
        client, place.h(place.marketing), name="消费翻倍", kind="multiplier", trigger="spend", points=None,
        multiplier_pct=200,
    )  # fmt: skip
    owner = make_owner(place.unit)
    reg_id, order_id, item_id = _paid_sign_up_with_active_points(app, place, owner, sandbox_reset, available=400)
    spent = attempt(
        app, lambda s: points.spend(s, owner.id, 100, key="mall-spend", reason_code="t", operator="member:x")
    )
    assert spent == "done"

    assert attempt(app, _cancel(owner.id, reg_id)) == "points.reversal_blocked"
    run_due_jobs(app)
    assert sandbox_reset.hits(REFUNDS) == 0
    assert _books(app, owner.id, reg_id) == {
        "available": 300,
        "drift": [],
        "refunds": [],
        "redeemed": 0,
        "reversed": [],
        "state": "confirmed",
    }
