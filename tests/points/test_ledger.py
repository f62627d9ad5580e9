"""The ledger: buckets, FIFO allocations, expiry, pending points, reversals and the drift check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from backend.notices.models import SubscribeNotice
from backend.platform.errors import AppError
from backend.points import service
from backend.points.models import LedgerKind, PointsAccount, PointsAllocation, PointsLedger
from backend.touchpoints.models import Touchpoint

# The services send notices through the outbox, which needs the app.
pytestmark = [pytest.mark.usefixtures("app_ctx")]

T0 = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


def _earn(s: Any, cid: int, n: int, key: str, expiry: str = "never", now: datetime = T0) -> PointsLedger:
    return service.earn(s, cid, n, key=key, reason_code="test", operator="system:test", expiry=expiry, now=now)


def _acc(s: Any, cid: int) -> PointsAccount:
    return service.account(s, cid)


def test_expiry_policies_use_the_shanghai_calendar() -> None:
    late = datetime(2026, 1, 31, 17, 0, tzinfo=UTC)  # already 1 Feb 01:00 in Shanghai
    assert service.expiry_for("never", late) is None
    assert service.expiry_for("days:30", late) == late + timedelta(days=30)
    assert service.expiry_for("end_of_month", late) == datetime(2026, 2, 28, 16, 0, tzinfo=UTC)  # 1 Mar 00:00 CST
    assert service.expiry_for("end_of_next_year", late) == datetime(2027, 12, 31, 16, 0, tzinfo=UTC)
    with pytest.raises(AppError):
        service.expiry_for("sometimes", late)


def test_earn_is_idempotent_and_updates_account_in_the_same_transaction(db_session: Any, make_customer: Any) -> None:
    c = make_customer()
    first = _earn(db_session, c.id, 100, "k1")
    again = _earn(db_session, c.id, 100, "k1")
    assert again.id == first.id
    acc = _acc(db_session, c.id)
    assert (acc.available, acc.lifetime_earned) == (100, 100)
    assert (
        db_session.scalar(select(func.count()).select_from(PointsLedger).where(PointsLedger.customer_id == c.id)) == 1
    )
    kinds = db_session.scalars(select(Touchpoint.kind).where(Touchpoint.customer_id == c.id)).all()
    assert kinds == ["points_earned"]
    assert service.check_drift(db_session, [c.id]) == []


def test_spend_takes_soonest_expiring_buckets_first_and_restore_returns_them(
    db_session: Any, make_customer: Any
) -> None:
    c = make_customer()
    never = _earn(db_session, c.id, 50, "a", "never")
    late = _earn(db_session, c.id, 30, "b", "days:300")
    soon = _earn(db_session, c.id, 40, "c", "days:10")
    debit = service.spend(db_session, c.id, 60, key="s1", reason_code="test", operator="member:1", now=T0)
    allocs = {
        a.credit_id: a.amount
        for a in db_session.scalars(select(PointsAllocation).where(PointsAllocation.debit_id == debit.id))
    }
    assert allocs == {soon.id: 40, late.id: 20}
    assert (never.remaining, late.remaining, soon.remaining) == (50, 10, 0)
    assert _acc(db_session, c.id).available == 60
    service.restore(db_session, debit, key="r1", reason_code="test", operator="member:1", now=T0)
    service.restore(db_session, debit, key="r1", reason_code="test", operator="member:1", now=T0)  # idempotent
    db_session.refresh(late)
    db_session.refresh(soon)
    assert (late.remaining, soon.remaining) == (30, 40)
    assert _acc(db_session, c.id).available == 120
    assert service.check_drift(db_session, [c.id]) == []


def test_no_negative_balance_from_spending(db_session: Any, make_customer: Any) -> None:
    c = make_customer()
    _earn(db_session, c.id, 10, "a")
    with pytest.raises(AppError) as err:
        service.spend(db_session, c.id, 11, key="s", reason_code="t", operator="member:1")
    assert err.value.code == "points.insufficient"
    assert _acc(db_session, c.id).available == 10
    assert service._existing(db_session, "s") is None  # nothing half-written
    with pytest.raises(AppError):
        service.spend(db_session, c.id, 0, key="z", reason_code="t", operator="member:1")


def test_expiry_job_writes_expire_rows_and_reminders_are_recorded_once(db_session: Any, make_customer: Any) -> None:
    c = make_customer()
    b1 = _earn(db_session, c.id, 25, "a", "days:5")
    _earn(db_session, c.id, 10, "b", "never")
    assert service.record_expiry_reminders(db_session, now=T0, days=7) == 1
    assert service.record_expiry_reminders(db_session, now=T0, days=7) == 0
    notice = db_session.scalars(select(SubscribeNotice).where(SubscribeNotice.customer_id == c.id)).one()
    assert notice.template_setting == "SUBSCRIBE_TEMPLATE_POINTS_EXPIRING"
    assert notice.data["number2"]["value"] == "25"
    assert service.expire_due(db_session, now=T0 + timedelta(days=4)) == 0
    assert service.expire_due(db_session, now=T0 + timedelta(days=6)) == 1
    assert service.expire_due(db_session, now=T0 + timedelta(days=6)) == 0  # re-run does nothing
    row = db_session.scalars(select(PointsLedger).where(PointsLedger.kind == LedgerKind.EXPIRE)).one()
    assert (row.delta, row.related_id) == (-25, b1.id)
    assert _acc(db_session, c.id).available == 10
    assert "points_expired" in db_session.scalars(select(Touchpoint.kind).where(Touchpoint.customer_id == c.id)).all()
    assert service.check_drift(db_session, [c.id]) == []


def test_pending_points_activate_after_the_window_or_are_cancelled(db_session: Any, make_customer: Any) -> None:
    c = make_customer()
    p = service.earn_pending(
        db_session,
        c.id,
        100,
        key="pay:1",
        reason_code="order_paid",
        operator="system:t",
        activates_at=T0 + timedelta(days=7),
    )
    assert (_acc(db_session, c.id).pending, _acc(db_session, c.id).available) == (100, 0)
    service.cancel_pending(db_session, p, 30, key="refund:1:pending", reason_code="order_refunded", operator="system:t")
    assert service.activate_due(db_session, now=T0 + timedelta(days=6)) == 0
    assert service.activate_due(db_session, now=T0 + timedelta(days=8)) == 1
    assert service.activate_due(db_session, now=T0 + timedelta(days=8)) == 0
    acc = _acc(db_session, c.id)
    assert (acc.pending, acc.available, acc.lifetime_earned) == (0, 70, 70)
    assert service.check_drift(db_session, [c.id]) == []


def test_reversal_beyond_the_balance_is_a_debt_repaid_by_later_earnings(db_session: Any, make_customer: Any) -> None:
    c = make_customer()
    _earn(db_session, c.id, 100, "a")
    service.spend(db_session, c.id, 80, key="s", reason_code="t", operator="member:1")
    service.reverse(
        db_session, c.id, 100, key="rev", reason_code="order_refunded", operator="system:t", allow_debt=True
    )
    assert _acc(db_session, c.id).available == -80  # never clamped to zero
    assert service.check_drift(db_session, [c.id]) == []
    later = _earn(db_session, c.id, 50, "b")
    assert later.remaining == 0 and _acc(db_session, c.id).available == -30
    with pytest.raises(AppError):
        service.spend(db_session, c.id, 1, key="s2", reason_code="t", operator="member:1")
    last = _earn(db_session, c.id, 50, "c")
    assert last.remaining == 20 and _acc(db_session, c.id).available == 20
    assert service.check_drift(db_session, [c.id]) == []


def test_block_policy_refuses_a_reversal_it_cannot_cover(db_session: Any, make_customer: Any) -> None:
    c = make_customer()
    _earn(db_session, c.id, 100, "a")
    service.spend(db_session, c.id, 80, key="s", reason_code="t", operator="member:1")
    with pytest.raises(AppError) as err:
        service.reverse(db_session, c.id, 100, key="rev", reason_code="t", operator="system:t", allow_debt=False)
    assert err.value.code == "points.reversal_blocked"
    assert _acc(db_session, c.id).available == 20
    assert service.check_drift(db_session, [c.id]) == []


def test_freeze_consume_and_release(db_session: Any, make_customer: Any) -> None:
    c = make_customer()
    _earn(db_session, c.id, 100, "a")
    f1 = service.spend(db_session, c.id, 40, key="f1", reason_code="t", operator="member:1", freeze=True)
    acc = _acc(db_session, c.id)
    assert (acc.available, acc.frozen) == (60, 40)
    service.consume_frozen(db_session, f1, key="f1:consume", operator="system:t")
    assert (_acc(db_session, c.id).frozen, _acc(db_session, c.id).available) == (0, 60)
    f2 = service.spend(db_session, c.id, 30, key="f2", reason_code="t", operator="member:1", freeze=True)
    rel = service.restore(db_session, f2, key="f2:undo", reason_code="t", operator="system:t")
    assert rel.kind == LedgerKind.RELEASE
    acc = _acc(db_session, c.id)
    assert (acc.available, acc.frozen) == (60, 0)
    assert service.check_drift(db_session, [c.id]) == []


def test_drift_check_reports_a_tampered_account(db_session: Any, make_customer: Any, app: Any) -> None:
    c = make_customer()
    _earn(db_session, c.id, 100, "a")
    db_session.execute(update(PointsAccount).where(PointsAccount.customer_id == c.id).values(available=90))
    drift = service.check_drift(db_session, [c.id])
    assert drift and drift[0]["problems"]["available"] == {"account": 90, "ledger": 100}
    # the CLI command reports it with exit code 1
    db_session.commit()
    from backend.points.cli import points_group

    result = app.test_cli_runner().invoke(points_group, ["check", "--customer", str(c.id)])
    assert result.exit_code == 1 and "available" in result.output
