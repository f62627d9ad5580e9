"""The points ledger: earn, spend, freeze/consume/release, restore, expire, pending points,
reversals after refunds, staff adjustments, and the drift check.

Rules every function here keeps:
- The account row is locked first (`SELECT … FOR UPDATE`, or the conditional debit
  `… WHERE available >= :n`), then buckets; a bucket's `remaining` only changes under its
  account's lock, so bucket bookkeeping is never a lost update.
- Each operation runs in a SAVEPOINT: an error leaves nothing half-written, whatever the caller.
- The idempotency key is checked under the account lock and is unique in the table: the same
  key never moves points twice (retried jobs, duplicated notifications, double submits).
- Invariants (checked by `check_drift`): available = Σ delta, pending = Σ pending_delta,
  frozen = Σ frozen_delta, lifetime_earned = Σ growth, Σ bucket remaining = max(available, 0).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from backend.org.scope import register_scope
from backend.platform.actors import Actor, StaffActor
from backend.platform.db import utcnow
from backend.platform.errors import AppError, register_messages
from backend.platform.upsert import upsert
from backend.points.models import (
    BUCKET_KINDS,
    AdjustmentState,
    LedgerKind,
    PointsAccount,
    PointsAdjustment,
    PointsAllocation,
    PointsLedger,
)
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import live_customer_id, record

log = logging.getLogger("dealerloop.points")

SHANGHAI = ZoneInfo("Asia/Shanghai")

register_messages(
    {
        "points.amount_invalid": ("积分数量无效", "The points amount is invalid"),
        "points.batch_key_reused": (
            "该批次号已用于另一次批量发放，请换一个批次号",
            "This batch key was used for another bulk grant",
        ),
        "points.insufficient": ("积分不足", "Not enough points"),
        "points.reversal_blocked": (
            "会员积分不足以扣回本单所赠积分，无法退款",
            "The member no longer has the points earned on this order; the refund is blocked",
        ),
        "points.expiry_policy_invalid": ("积分有效期规则无效", "Invalid points expiry policy"),
        "points.adjustment_not_found": ("积分调整单不存在", "Points adjustment not found"),
        "points.adjustment_decided": ("该调整单已处理", "This adjustment was already decided"),
        "points.same_approver": ("审批人不能是申请人本人", "The approver must be another staff member"),
        "points.cursor_invalid": ("分页游标无效", "Invalid cursor"),
    }
)


# ---------------------------------------------------------------------------------------------
# Policy (settings from the app config, with defaults; jobs and CLI read the same)


@dataclass(frozen=True)
class PointsPolicy:
    expiry: str = "end_of_next_year"  # days:N | never | end_of_month | end_of_next_year
    reversal: str = "debt"  # debt | block — what a refund does when the points are already spent
    return_window_days: int = 7  # points from a paid order stay pending this long
    points_per_yuan: int = 1
    adjust_approval_threshold: int = 1000  # |delta| above this needs a second approver
    reminder_days: int = 7  # remind this many days before points expire
    growth_window_days: int = 365  # tiers: growth value earned within this window
    tier_cycle_days: int = 365  # a tier is reviewed (downgrade) after this many days


def policy() -> PointsPolicy:
    from flask import current_app, has_app_context

    cfg: Any = current_app.config if has_app_context() else {}
    d = PointsPolicy()
    return PointsPolicy(
        expiry=cfg.get("POINTS_EXPIRY_POLICY", d.expiry),
        reversal=cfg.get("POINTS_REVERSAL_POLICY", d.reversal),
        return_window_days=int(cfg.get("POINTS_RETURN_WINDOW_DAYS", d.return_window_days)),
        points_per_yuan=int(cfg.get("POINTS_PER_YUAN", d.points_per_yuan)),
        adjust_approval_threshold=int(cfg.get("POINTS_ADJUST_APPROVAL_THRESHOLD", d.adjust_approval_threshold)),
        reminder_days=int(cfg.get("POINTS_REMINDER_DAYS", d.reminder_days)),
        growth_window_days=int(cfg.get("POINTS_GROWTH_WINDOW_DAYS", d.growth_window_days)),
        tier_cycle_days=int(cfg.get("POINTS_TIER_CYCLE_DAYS", d.tier_cycle_days)),
    )


def shanghai_date(now: datetime) -> date:
    return now.astimezone(SHANGHAI).date()


def _shanghai_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=SHANGHAI).astimezone(UTC)


def expiry_for(rule: str, now: datetime) -> datetime | None:
    """When points earned at `now` expire. Calendar rules use the Asia/Shanghai calendar: "end of
    month" is the first instant of the next month there, "end of next year" that of Y+2-01-01."""
    local = now.astimezone(SHANGHAI)
    if rule == "never":
        return None
    if rule == "end_of_month":
        first = date(local.year + (local.month == 12), local.month % 12 + 1, 1)
        return _shanghai_midnight(first)
    if rule == "end_of_next_year":
        return _shanghai_midnight(date(local.year + 2, 1, 1))
    if rule.startswith("days:"):
        try:
            days = int(rule.removeprefix("days:"))
        except ValueError:
            days = 0
        if days > 0:
            return now + timedelta(days=days)
    raise AppError("points.expiry_policy_invalid", 500)


def operator_of(actor: Actor) -> str:
    return f"{actor.kind}:{actor.ident}"


def _channel(operator: str) -> Channel:
    if operator.startswith("member:"):
        return Channel.MINIPROGRAM
    if operator.startswith("staff:"):
        return Channel.STORE
    return Channel.SYSTEM


_TOUCH_KIND = {
    LedgerKind.EARN: Kind.POINTS_EARNED,
    LedgerKind.EARN_PENDING: Kind.POINTS_EARNED,
    LedgerKind.SPEND: Kind.POINTS_SPENT,
    LedgerKind.FREEZE: Kind.POINTS_SPENT,
    LedgerKind.EXPIRE: Kind.POINTS_EXPIRED,
    LedgerKind.REVERSE: Kind.POINTS_REVERSED,
    LedgerKind.PENDING_CANCEL: Kind.POINTS_REVERSED,
    LedgerKind.RESTORE: Kind.POINTS_REVERSED,
    LedgerKind.RELEASE: Kind.POINTS_REVERSED,
    LedgerKind.ADJUST: Kind.POINTS_ADJUSTED,
}


def _touch(session: Session, row: PointsLedger) -> None:
    kind = _TOUCH_KIND.get(row.kind)
    if kind is None:
        return
    record(
        session,
        customer_id=row.customer_id,
        kind=kind,
        channel=_channel(row.operator),
        source="points",
        source_ref=f"points:{row.id}",
        occurred_at=row.created_at,
        payload={
            "ledger_id": row.id,
            "ledger_kind": row.kind.value,
            "points": row.delta or row.pending_delta or row.frozen_delta,
            "reason_code": row.reason_code,
            "ref_type": row.ref_type,
            "ref_id": row.ref_id,
        },
    )


# ---------------------------------------------------------------------------------------------
# Account primitives

_A = PointsAccount.__table__.c


def _lock_account(session: Session, customer_id: int) -> int:
    """Create the account if needed, lock it, return `available`."""
    upsert(
        session,
        PointsAccount,
        {"customer_id": customer_id, "available": 0, "pending": 0, "frozen": 0, "lifetime_earned": 0, "version": 0},
        ["customer_id"],
        lambda new: [("customer_id", _A.customer_id)],
    )
    return session.execute(select(_A.available).where(_A.customer_id == customer_id).with_for_update()).scalar_one()


def _apply(
    session: Session,
    customer_id: int,
    *,
    available: int = 0,
    pending: int = 0,
    frozen: int = 0,
    growth: int = 0,
    require_available: int | None = None,
) -> int | None:
    """Move the cached sums; with `require_available` the debit is conditional (no negative
    balance from spending). Returns the new `available`, or None when the condition failed."""
    stmt = (
        update(PointsAccount.__table__)
        .where(_A.customer_id == customer_id)
        .values(
            available=_A.available + available,
            pending=_A.pending + pending,
            frozen=_A.frozen + frozen,
            lifetime_earned=_A.lifetime_earned + growth,
            version=_A.version + 1,
            updated_at=utcnow(),
        )
    )
    if require_available is not None:
        stmt = stmt.where(_A.available >= require_available)
    if session.execute(stmt).rowcount != 1:
        return None
    return session.execute(select(_A.available).where(_A.customer_id == customer_id)).scalar_one()


def _existing(session: Session, key: str) -> PointsLedger | None:
    return session.scalars(select(PointsLedger).where(PointsLedger.idempotency_key == key)).one_or_none()


def _add(session: Session, row: PointsLedger) -> PointsLedger:
    session.add(row)
    session.flush()
    _touch(session, row)
    return row


def _bucket_order() -> list[Any]:
    # soonest-expiring first; "never" last (portable: MariaDB has no NULLS LAST)
    return [case((PointsLedger.expires_at.is_(None), 1), else_=0), PointsLedger.expires_at, PointsLedger.id]


def _take_from_buckets(
    session: Session, customer_id: int, amount: int, prefer: list[int] | None = None
) -> list[tuple[PointsLedger, int]]:
    """Take up to `amount` from the member's buckets (preferred buckets first, then soonest
    expiring). Caller holds the account lock. Returns (bucket, taken) pairs."""
    taken: list[tuple[PointsLedger, int]] = []
    left = amount
    base = select(PointsLedger).where(
        PointsLedger.customer_id == customer_id,
        PointsLedger.kind.in_(BUCKET_KINDS),
        PointsLedger.remaining > 0,
    )
    stmts = []
    if prefer:
        stmts.append(base.where(PointsLedger.id.in_(prefer)))
    stmts.append(base.order_by(*_bucket_order()))
    for stmt in stmts:
        if left <= 0:
            break
        for bucket in session.scalars(stmt.with_for_update().execution_options(populate_existing=True)):
            if left <= 0:
                break
            n = min(left, bucket.remaining)
            if n <= 0:
                continue
            bucket.remaining -= n
            left -= n
            taken.append((bucket, n))
    session.flush()
    return taken


def _allocate(session: Session, debit: PointsLedger, taken: list[tuple[PointsLedger, int]]) -> None:
    session.add_all(PointsAllocation(debit_id=debit.id, credit_id=b.id, amount=n) for b, n in taken)
    session.flush()


def _fill_bucket_remaining(before: int, amount: int) -> int:
    """A credit first repays a debt (negative available); the rest goes into the bucket."""
    return amount - min(amount, max(0, -before))


def _after_growth(session: Session, customer_id: int, now: datetime) -> None:
    from backend.points.tiers import upgrade_if_due

    upgrade_if_due(session, customer_id, now)


# ---------------------------------------------------------------------------------------------
# Credits


def earn(
    session: Session,
    customer_id: int,
    points: int,
    *,
    key: str,
    reason_code: str,
    operator: str,
    ref_type: str | None = None,
    ref_id: str | None = None,
    expiry: str | None = None,
    note: str | None = None,
    kind: LedgerKind = LedgerKind.EARN,
    counts_for_growth: bool = True,
    now: datetime | None = None,
) -> PointsLedger:
    """Credit a new bucket. The same key credits once (returns the first row)."""
    if type(points) is not int or points <= 0:
        raise AppError("points.amount_invalid", 422, errors={"json": {"points": ["must be a positive integer"]}})
    now = now or utcnow()
    with session.begin_nested():
        customer_id = live_customer_id(session, customer_id)  # a job queued before a merge
        before = _lock_account(session, customer_id)
        if (row := _existing(session, key)) is not None:
            return row
        growth = points if counts_for_growth else 0
        after = _apply(session, customer_id, available=points, growth=growth)
        assert after is not None
        row = _add(
            session,
            PointsLedger(
                customer_id=customer_id,
                kind=kind,
                delta=points,
                growth=growth,
                reason_code=reason_code,
                ref_type=ref_type,
                ref_id=ref_id,
                idempotency_key=key,
                operator=operator,
                note=note,
                remaining=_fill_bucket_remaining(before, points),
                expires_at=expiry_for(expiry or policy().expiry, now),
                balance_after=after,
                created_at=now,
            ),
        )
        if growth:
            _after_growth(session, customer_id, now)
        return row


def earn_pending(
    session: Session,
    customer_id: int,
    points: int,
    *,
    key: str,
    reason_code: str,
    operator: str,
    activates_at: datetime,
    ref_type: str | None = None,
    ref_id: str | None = None,
    now: datetime | None = None,
) -> PointsLedger:
    """Points that become available at `activates_at` unless cancelled (return window)."""
    if type(points) is not int or points <= 0:
        raise AppError("points.amount_invalid", 422)
    now = now or utcnow()
    with session.begin_nested():
        customer_id = live_customer_id(session, customer_id)  # a job queued before a merge
        before = _lock_account(session, customer_id)
        if (row := _existing(session, key)) is not None:
            return row
        _apply(session, customer_id, pending=points)
        return _add(
            session,
            PointsLedger(
                customer_id=customer_id,
                kind=LedgerKind.EARN_PENDING,
                pending_delta=points,
                reason_code=reason_code,
                ref_type=ref_type,
                ref_id=ref_id,
                idempotency_key=key,
                operator=operator,
                remaining=points,
                activates_at=activates_at,
                balance_after=before,
                created_at=now,
            ),
        )


def activate_pending(session: Session, pending_id: int, now: datetime | None = None) -> PointsLedger | None:
    """Move what is left of a pending credit to a new bucket (idempotent: nothing left, nothing done)."""
    now = now or utcnow()
    customer_id = session.scalar(select(PointsLedger.customer_id).where(PointsLedger.id == pending_id))
    if customer_id is None:
        return None
    with session.begin_nested():
        before = _lock_account(session, customer_id)
        pending = session.scalars(
            select(PointsLedger).where(PointsLedger.id == pending_id).execution_options(populate_existing=True)
        ).one()
        if pending.kind != LedgerKind.EARN_PENDING or pending.remaining <= 0:
            return None
        amount = pending.remaining
        pending.remaining = 0
        after = _apply(session, customer_id, available=amount, pending=-amount, growth=amount)
        assert after is not None
        row = _add(
            session,
            PointsLedger(
                customer_id=customer_id,
                kind=LedgerKind.ACTIVATE,
                delta=amount,
                pending_delta=-amount,
                growth=amount,
                reason_code=pending.reason_code,
                ref_type=pending.ref_type,
                ref_id=pending.ref_id,
                idempotency_key=f"activate:{pending.id}",
                operator="system:points.activate",
                remaining=_fill_bucket_remaining(before, amount),
                expires_at=expiry_for(policy().expiry, now),
                related_id=pending.id,
                balance_after=after,
                created_at=now,
            ),
        )
        _after_growth(session, customer_id, now)
        return row


def activate_due(session: Session, now: datetime | None = None, limit: int = 500) -> int:
    now = now or utcnow()
    ids = session.scalars(
        select(PointsLedger.id)
        .where(
            PointsLedger.kind == LedgerKind.EARN_PENDING,
            PointsLedger.remaining > 0,
            PointsLedger.activates_at <= now,
        )
        .order_by(PointsLedger.id)
        .limit(limit)
    ).all()
    return sum(1 for i in ids if activate_pending(session, i, now) is not None)


# ---------------------------------------------------------------------------------------------
# Debits


def spend(
    session: Session,
    customer_id: int,
    points: int,
    *,
    key: str,
    reason_code: str,
    operator: str,
    ref_type: str | None = None,
    ref_id: str | None = None,
    note: str | None = None,
    freeze: bool = False,
    kind: LedgerKind | None = None,
    now: datetime | None = None,
) -> PointsLedger:
    """Debit available points (or move them to frozen), soonest-expiring buckets first.
    Never below zero: the debit is a conditional update, `points.insufficient` otherwise."""
    if type(points) is not int or points <= 0:
        raise AppError("points.amount_invalid", 422, errors={"json": {"points": ["must be a positive integer"]}})
    now = now or utcnow()
    with session.begin_nested():
        customer_id = live_customer_id(session, customer_id)  # a job queued before a merge
        _lock_account(session, customer_id)
        if (row := _existing(session, key)) is not None:
            return row
        _expire_member_due(session, customer_id, now)
        after = _apply(
            session, customer_id, available=-points, frozen=points if freeze else 0, require_available=points
        )
        if after is None:
            raise AppError("points.insufficient", 409)
        taken = _take_from_buckets(session, customer_id, points)
        if sum(n for _, n in taken) != points:
            # The buckets must cover a non-negative balance; if not, the ledger has drifted.
            raise RuntimeError(f"points buckets of customer {customer_id} do not cover the balance")
        row = _add(
            session,
            PointsLedger(
                customer_id=customer_id,
                kind=kind or (LedgerKind.FREEZE if freeze else LedgerKind.SPEND),
                delta=-points,
                frozen_delta=points if freeze else 0,
                reason_code=reason_code,
                ref_type=ref_type,
                ref_id=ref_id,
                idempotency_key=key,
                operator=operator,
                note=note,
                balance_after=after,
                created_at=now,
            ),
        )
        _allocate(session, row, taken)
        return row


def consume_frozen(
    session: Session, freeze_row: PointsLedger, *, key: str, operator: str, now: datetime | None = None
) -> PointsLedger:
    """The frozen points of a points+cash order are taken for good (the cash part was paid)."""
    now = now or utcnow()
    amount = freeze_row.frozen_delta
    with session.begin_nested():
        before = _lock_account(session, freeze_row.customer_id)
        if (row := _existing(session, key)) is not None:
            return row
        _apply(session, freeze_row.customer_id, frozen=-amount)
        return _add(
            session,
            PointsLedger(
                customer_id=freeze_row.customer_id,
                kind=LedgerKind.CONSUME,
                frozen_delta=-amount,
                reason_code=freeze_row.reason_code,
                ref_type=freeze_row.ref_type,
                ref_id=freeze_row.ref_id,
                idempotency_key=key,
                operator=operator,
                related_id=freeze_row.id,
                balance_after=before,
                created_at=now,
            ),
        )


def restore(
    session: Session,
    debit: PointsLedger,
    *,
    key: str,
    reason_code: str,
    operator: str,
    now: datetime | None = None,
) -> PointsLedger:
    """Give back the points of a spend or freeze into exactly the buckets they came from.

    A freeze that was never consumed is released (frozen → available); a spend, or a consumed
    freeze, is restored (→ available). Points restored into a bucket that has meanwhile expired
    keep their original expiry and go on the next expiry run. A reversal (a refund's take-back,
    the refund then closed) also gives back the growth it took."""
    now = now or utcnow()
    with session.begin_nested():
        before = _lock_account(session, debit.customer_id)
        if (row := _existing(session, key)) is not None:
            return row
        allocations = session.scalars(
            select(PointsAllocation).where(PointsAllocation.debit_id == debit.id).order_by(PointsAllocation.id)
        ).all()
        amount = sum(a.amount for a in allocations)
        consumed = debit.kind != LedgerKind.FREEZE or (
            session.scalar(
                select(func.count())
                .select_from(PointsLedger)
                .where(PointsLedger.related_id == debit.id, PointsLedger.kind == LedgerKind.CONSUME)
            )
            > 0
        )
        release = debit.kind == LedgerKind.FREEZE and not consumed
        growth = -debit.growth if debit.kind == LedgerKind.REVERSE else 0
        after = _apply(session, debit.customer_id, available=amount, frozen=-amount if release else 0, growth=growth)
        assert after is not None
        debt = max(0, -before)
        buckets = {
            b.id: b
            for b in session.scalars(
                select(PointsLedger)
                .where(PointsLedger.id.in_([a.credit_id for a in allocations]))
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        }
        for a in allocations:
            repay = min(debt, a.amount)
            debt -= repay
            buckets[a.credit_id].remaining += a.amount - repay
        return _add(
            session,
            PointsLedger(
                customer_id=debit.customer_id,
                kind=LedgerKind.RELEASE if release else LedgerKind.RESTORE,
                delta=amount,
                frozen_delta=-amount if release else 0,
                growth=growth,
                reason_code=reason_code,
                ref_type=debit.ref_type,
                ref_id=debit.ref_id,
                idempotency_key=key,
                operator=operator,
                related_id=debit.id,
                balance_after=after,
                created_at=now,
            ),
        )


def reverse(
    session: Session,
    customer_id: int,
    points: int,
    *,
    key: str,
    reason_code: str,
    operator: str,
    ref_type: str | None = None,
    ref_id: str | None = None,
    prefer_buckets: list[int] | None = None,
    allow_debt: bool | None = None,
    now: datetime | None = None,
) -> PointsLedger:
    """Take earned points back (a refund). What the buckets cannot cover becomes a debt that
    future credits repay — or, with the block policy, the reversal is refused. Never clamped."""
    now = now or utcnow()
    if allow_debt is None:
        allow_debt = policy().reversal == "debt"
    with session.begin_nested():
        customer_id = live_customer_id(session, customer_id)  # a job queued before a merge
        _lock_account(session, customer_id)
        if (row := _existing(session, key)) is not None:
            return row
        taken = _take_from_buckets(session, customer_id, points, prefer=prefer_buckets)
        if sum(n for _, n in taken) < points and not allow_debt:
            raise AppError("points.reversal_blocked", 409)
        after = _apply(session, customer_id, available=-points, growth=-points)
        assert after is not None
        row = _add(
            session,
            PointsLedger(
                customer_id=customer_id,
                kind=LedgerKind.REVERSE,
                delta=-points,
                growth=-points,
                reason_code=reason_code,
                ref_type=ref_type,
                ref_id=ref_id,
                idempotency_key=key,
                operator=operator,
                balance_after=after,
                created_at=now,
            ),
        )
        _allocate(session, row, taken)
        return row


def cancel_pending(
    session: Session, pending: PointsLedger, points: int, *, key: str, reason_code: str, operator: str
) -> PointsLedger | None:
    """Cancel up to `points` of a pending credit that is not yet active. Returns None if nothing
    was left pending."""
    with session.begin_nested():
        before = _lock_account(session, pending.customer_id)
        if (row := _existing(session, key)) is not None:
            return row
        fresh = session.scalars(
            select(PointsLedger).where(PointsLedger.id == pending.id).execution_options(populate_existing=True)
        ).one()
        n = min(points, fresh.remaining)
        if n <= 0:
            return None
        fresh.remaining -= n
        _apply(session, pending.customer_id, pending=-n)
        return _add(
            session,
            PointsLedger(
                customer_id=pending.customer_id,
                kind=LedgerKind.PENDING_CANCEL,
                pending_delta=-n,
                reason_code=reason_code,
                ref_type=pending.ref_type,
                ref_id=pending.ref_id,
                idempotency_key=key,
                operator=operator,
                related_id=pending.id,
                balance_after=before,
            ),
        )


def give_back_pending(
    session: Session, cancelled: PointsLedger, *, key: str, reason_code: str, operator: str
) -> PointsLedger | None:
    """Undo a pending cancellation (the refund that cancelled the points failed): the points are
    pending again on the credit they came from, or, if that credit has been activated meanwhile,
    a new bucket (they would have been activated with it). Same ref as the cancellation, so what
    a refund has taken back nets out. The same key gives back once."""
    n = -cancelled.pending_delta
    if cancelled.kind != LedgerKind.PENDING_CANCEL or n <= 0 or cancelled.related_id is None:
        return None
    with session.begin_nested():
        before = _lock_account(session, cancelled.customer_id)
        if (row := _existing(session, key)) is not None:
            return row
        pending = session.scalars(
            select(PointsLedger)
            .where(PointsLedger.id == cancelled.related_id)
            .execution_options(populate_existing=True)
        ).one()
        if _existing(session, f"activate:{pending.id}") is not None:
            return earn(
                session, cancelled.customer_id, n, key=key, reason_code=reason_code, operator=operator,
                ref_type=pending.ref_type, ref_id=pending.ref_id,
            )  # fmt: skip
        pending.remaining += n
        _apply(session, cancelled.customer_id, pending=n)
        return _add(
            session,
            PointsLedger(
                customer_id=cancelled.customer_id,
                kind=LedgerKind.PENDING_CANCEL,
                pending_delta=n,
                reason_code=reason_code,
                ref_type=pending.ref_type,
                ref_id=pending.ref_id,
                idempotency_key=key,
                operator=operator,
                related_id=pending.id,
                balance_after=before,
            ),
        )


# ---------------------------------------------------------------------------------------------
# Expiry and reminders


def expire_bucket(session: Session, bucket_id: int, now: datetime | None = None) -> PointsLedger | None:
    now = now or utcnow()
    customer_id = session.scalar(select(PointsLedger.customer_id).where(PointsLedger.id == bucket_id))
    if customer_id is None:
        return None
    with session.begin_nested():
        _lock_account(session, customer_id)
        bucket = session.scalars(
            select(PointsLedger)
            .where(PointsLedger.id == bucket_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()
        if bucket.remaining <= 0 or bucket.expires_at is None or bucket.expires_at > now:
            return None
        amount = bucket.remaining
        bucket.remaining = 0
        after = _apply(session, customer_id, available=-amount)
        assert after is not None
        row = _add(
            session,
            PointsLedger(
                customer_id=customer_id,
                kind=LedgerKind.EXPIRE,
                delta=-amount,
                reason_code="expired",
                ref_type="points_ledger",
                ref_id=str(bucket.id),
                # a bucket can expire again only after points were restored into it
                idempotency_key=f"expire:{bucket.id}:{now.timestamp():.6f}",
                operator="system:points.expire",
                related_id=bucket.id,
                balance_after=after,
                created_at=now,
            ),
        )
        _allocate(session, row, [(bucket, amount)])
        return row


def _expire_member_due(session: Session, customer_id: int, now: datetime) -> None:
    """Expire the member's buckets past their expiry (caller holds the account lock). A spend
    does this first: the hourly sweep may not have reached them yet, and points past their
    expiry must not be spent in between."""
    due = session.scalars(
        select(PointsLedger.id)
        .where(
            PointsLedger.customer_id == customer_id,
            PointsLedger.kind.in_(BUCKET_KINDS),
            PointsLedger.remaining > 0,
            PointsLedger.expires_at <= now,
        )
        .order_by(PointsLedger.expires_at, PointsLedger.id)
    ).all()
    for bucket_id in due:
        expire_bucket(session, bucket_id, now)


def expire_due(session: Session, now: datetime | None = None, limit: int = 500) -> int:
    now = now or utcnow()
    ids = session.scalars(
        select(PointsLedger.id)
        .where(
            PointsLedger.kind.in_(BUCKET_KINDS),
            PointsLedger.remaining > 0,
            PointsLedger.expires_at <= now,
        )
        .order_by(PointsLedger.expires_at, PointsLedger.id)
        .limit(limit)
    ).all()
    return sum(1 for i in ids if expire_bucket(session, i, now) is not None)


def expiring(session: Session, customer_id: int, now: datetime, within_days: int) -> list[PointsLedger]:
    return list(
        session.scalars(
            select(PointsLedger)
            .where(
                PointsLedger.customer_id == customer_id,
                PointsLedger.kind.in_(BUCKET_KINDS),
                PointsLedger.remaining > 0,
                PointsLedger.expires_at.is_not(None),
                PointsLedger.expires_at <= now + timedelta(days=within_days),
            )
            .order_by(PointsLedger.expires_at, PointsLedger.id)
        )
    )


def record_expiry_reminders(session: Session, now: datetime | None = None, days: int | None = None) -> int:
    """One notice per member and expiry day, `days` before it (re-runs record nothing new)."""
    from backend.points.notices import record_notice

    now = now or utcnow()
    days = days if days is not None else policy().reminder_days
    rows = session.execute(
        select(PointsLedger.customer_id, func.min(PointsLedger.expires_at), func.sum(PointsLedger.remaining))
        .where(
            PointsLedger.kind.in_(BUCKET_KINDS),
            PointsLedger.remaining > 0,
            PointsLedger.expires_at > now,
            PointsLedger.expires_at <= now + timedelta(days=days),
        )
        .group_by(PointsLedger.customer_id)
    ).all()
    written = 0
    for customer_id, first_expiry, total in rows:
        first_expiry = first_expiry if first_expiry.tzinfo else first_expiry.replace(tzinfo=UTC)
        day = shanghai_date(first_expiry)
        payload = {"points": int(total), "expires_at": first_expiry.isoformat(), "expires_on": day.isoformat()}
        key = f"points_expiring:{customer_id}:{day.isoformat()}"
        if record_notice(session, customer_id, "points_expiring", key, payload) is not None:
            written += 1
    return written


# ---------------------------------------------------------------------------------------------
# Reading


def account(session: Session, customer_id: int) -> PointsAccount:
    acc = session.scalars(
        select(PointsAccount).where(PointsAccount.customer_id == customer_id).execution_options(populate_existing=True)
    ).one_or_none()
    return acc or PointsAccount(customer_id=customer_id, available=0, pending=0, frozen=0, lifetime_earned=0)


def ledger_page(
    session: Session, customer_id: int, limit: int = 20, before_id: int | None = None
) -> tuple[list[PointsLedger], int | None]:
    """Newest first, keyset on id (`before_id` is the cursor)."""
    stmt = select(PointsLedger).where(PointsLedger.customer_id == customer_id)
    if before_id is not None:
        stmt = stmt.where(PointsLedger.id < before_id)
    rows = list(session.scalars(stmt.order_by(PointsLedger.id.desc()).limit(limit + 1)))
    nxt = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], nxt


# ---------------------------------------------------------------------------------------------
# Staff adjustments (maker–checker above a threshold)


def request_adjustment(
    session: Session, actor: StaffActor, customer_id: int, delta: int, reason: str
) -> PointsAdjustment:
    from backend.platform.audit import write_audit

    if type(delta) is not int or delta == 0:
        raise AppError("points.amount_invalid", 422, errors={"json": {"delta": ["must be a non-zero integer"]}})
    needs_approval = abs(delta) > policy().adjust_approval_threshold
    adj = PointsAdjustment(
        customer_id=customer_id,
        delta=delta,
        reason=reason,
        state=AdjustmentState.PENDING,
        requested_by=actor.staff_id,
    )
    session.add(adj)
    session.flush()
    write_audit(session, actor, "points.adjust_requested", "points_adjustment", adj.id, {"delta": delta})
    if not needs_approval:
        _apply_adjustment(session, actor, adj)
    return adj


def decide_adjustment(session: Session, actor: StaffActor, adj: PointsAdjustment, approve: bool) -> PointsAdjustment:
    from backend.platform.audit import write_audit

    adj = session.scalars(
        select(PointsAdjustment)
        .where(PointsAdjustment.id == adj.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if adj.state != AdjustmentState.PENDING:
        raise AppError("points.adjustment_decided", 409)
    if adj.requested_by == actor.staff_id:
        raise AppError("points.same_approver", 403)
    write_audit(
        session, actor, "points.adjust_approved" if approve else "points.adjust_rejected", "points_adjustment", adj.id
    )
    if approve:
        _apply_adjustment(session, actor, adj)
    else:
        adj.state = AdjustmentState.REJECTED
        adj.decided_by = actor.staff_id
        adj.decided_at = utcnow()
    return adj


def _apply_adjustment(session: Session, actor: StaffActor, adj: PointsAdjustment) -> None:
    common: dict[str, Any] = {
        "key": f"adjust:{adj.id}",
        "reason_code": "staff_adjustment",
        "operator": operator_of(actor),
        "ref_type": "points_adjustment",
        "ref_id": str(adj.id),
        "note": adj.reason[:255],
        "kind": LedgerKind.ADJUST,
    }
    if adj.delta > 0:
        row = earn(session, adj.customer_id, adj.delta, counts_for_growth=False, **common)
    else:
        row = spend(session, adj.customer_id, -adj.delta, **common)
    adj.state = AdjustmentState.APPLIED
    adj.ledger_id = row.id
    adj.decided_by = actor.staff_id
    adj.decided_at = utcnow()
    session.flush()


BULK_GRANT_JOB = "points.bulk_grant"


def grant_batch(staff_id: int, batch_key: str) -> str:
    """A bulk grant's batch as the job and the ledger know it: the client's key under its staff
    member's name, so that two stores choosing the same key ("2026-spring") grant both."""
    return f"s{staff_id}:{batch_key}"


def queue_bulk_grant(
    session: Session, actor: StaffActor, batch_key: str, customer_ids: list[int], points: int, reason: str
) -> bool:
    """Queue the grant's job once per batch: False when this very grant was queued already (a
    retry). The same key for another grant (other members, points or reason) is refused; it
    used to be silently dropped."""
    from backend.platform.jobs import OutboxJob, enqueue

    batch = grant_batch(actor.staff_id, batch_key)
    args = {"batch_key": batch, "customer_ids": customer_ids, "points": points, "reason": reason}
    dedup_key = f"{BULK_GRANT_JOB}:{batch}"
    if enqueue(session, BULK_GRANT_JOB, {**args, "staff_id": actor.staff_id}, dedup_key=dedup_key) is not None:
        return True
    queued = session.scalars(select(OutboxJob.args).where(OutboxJob.dedup_key == dedup_key)).one_or_none()
    if queued is not None and {k: queued.get(k) for k in args} != args:
        raise AppError("points.batch_key_reused", 422, errors={"json": {"batch_key": ["used for another grant"]}})
    return False


def bulk_grant(
    session: Session, batch_key: str, customer_ids: list[int], points: int, reason: str, staff_id: int
) -> int:
    """One idempotency key per member: a re-run (or a retried job) grants nobody twice."""
    granted = 0
    for cid in customer_ids:
        key = f"grant:{batch_key}:{cid}"
        if _existing(session, key) is None:
            granted += 1
        earn(
            session,
            cid,
            points,
            key=key,
            reason_code="bulk_grant",
            operator=f"staff:{staff_id}",
            ref_type="bulk_grant",
            ref_id=batch_key[:64],
            note=reason[:255],
            counts_for_growth=False,
        )
    return granted


# ---------------------------------------------------------------------------------------------
# The drift check


def _ledger_sums(session: Session, where: list[Any]) -> dict[int, tuple[int, ...]]:
    """Per customer, what the ledger adds up to: available, pending, frozen, lifetime growth, the
    remainders of the spendable buckets and of the pending credits."""
    L = PointsLedger
    rows = session.execute(
        select(
            L.customer_id,
            func.coalesce(func.sum(L.delta), 0),
            func.coalesce(func.sum(L.pending_delta), 0),
            func.coalesce(func.sum(L.frozen_delta), 0),
            func.coalesce(func.sum(L.growth), 0),
            func.coalesce(func.sum(case((L.kind.in_(BUCKET_KINDS), L.remaining), else_=0)), 0),
            func.coalesce(func.sum(case((L.kind == LedgerKind.EARN_PENDING, L.remaining), else_=0)), 0),
        )
        .where(*where)
        .group_by(L.customer_id)
    )
    return {row[0]: tuple(int(x) for x in row[1:]) for row in rows}


def rebuild_accounts(session: Session, customer_ids: list[int]) -> None:
    """Set the accounts' cached sums to their ledgers' (a customer merge or its reversal moved
    ledger rows between customers: the books then add up, with no figure carried by hand).
    Locks the accounts in customer order, as every points operation does one at a time."""
    L = PointsLedger
    ids = sorted(set(customer_ids))
    held = set(
        session.scalars(
            select(_A.customer_id).where(_A.customer_id.in_(ids)).order_by(_A.customer_id).with_for_update()
        )
    )
    sums = {cid: figures[:4] for cid, figures in _ledger_sums(session, [L.customer_id.in_(ids)]).items()}
    for cid in ids:
        if cid not in held:
            if cid not in sums:
                continue
            _lock_account(session, cid)
        available, pending, frozen, growth = (int(x) for x in sums.get(cid, (0, 0, 0, 0)))
        session.execute(
            update(PointsAccount.__table__)
            .where(_A.customer_id == cid)
            .values(
                available=available,
                pending=pending,
                frozen=frozen,
                lifetime_earned=growth,
                version=_A.version + 1,
                updated_at=utcnow(),
            )
        )


def check_drift(session: Session, customer_ids: list[int] | None = None) -> list[dict[str, Any]]:
    """Re-sum the ledger and compare with the account rows. Returns one entry per member whose
    cached sums (or bucket remainders) differ; empty means the books balance."""
    L = PointsLedger
    sums = _ledger_sums(session, [L.customer_id.in_(customer_ids)] if customer_ids is not None else [])
    acc_where = [PointsAccount.customer_id.in_(customer_ids)] if customer_ids is not None else []
    accounts = {a.customer_id: a for a in session.scalars(select(PointsAccount).where(*acc_where))}
    drift = []
    for cid in sorted(set(sums) | set(accounts)):
        s_avail, s_pend, s_frozen, s_growth, s_buckets, s_pending_left = (int(x) for x in sums.get(cid, (0,) * 6))
        a = accounts.get(cid)
        cached = (a.available, a.pending, a.frozen, a.lifetime_earned) if a else (0, 0, 0, 0)
        problems = {}
        for name, have, want in zip(
            ("available", "pending", "frozen", "lifetime_earned"),
            cached,
            (s_avail, s_pend, s_frozen, s_growth),
            strict=True,
        ):
            if have != want:
                problems[name] = {"account": have, "ledger": want}
        if s_buckets != max(s_avail, 0):
            problems["buckets"] = {"remaining": s_buckets, "available": s_avail}
        if s_pending_left != s_pend:
            problems["pending_buckets"] = {"remaining": s_pending_left, "pending": s_pend}
        if problems:
            drift.append({"customer_id": cid, "problems": problems})
    return drift


def _adjustment_rule(actor: StaffActor) -> Any:
    from sqlalchemy import exists

    from backend.customers.models import Customer
    from backend.customers.service import _customer_rule

    return exists().where(Customer.id == PointsAdjustment.customer_id, _customer_rule(actor))


register_scope("points_adjustment", PointsAdjustment, _adjustment_rule, "points.adjustment_not_found")
