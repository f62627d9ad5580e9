"""Tiers (会员等级) by growth value: points earned within a rolling window, net of reversals —
never the spendable balance (staff adjustments and bulk grants do not count). An upgrade happens
as soon as the growth value reaches the next tier; a downgrade only when the tier is reviewed,
once per cycle. `customer.tier` keeps the current tier code (denormalised for the rest of the
app); every change writes a touchpoint and a notice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from backend.customers.models import Customer
from backend.platform.db import utcnow
from backend.points.models import PointsAccount, PointsLedger
from backend.points.notices import record_notice
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import record


@dataclass(frozen=True)
class Tier:
    code: str
    name: str
    min_growth: int
    multiplier_pct: int  # earning multiplier on spend, in percent
    rank: int


TIERS: tuple[Tier, ...] = (
    Tier("standard", "普通会员", 0, 100, 0),
    Tier("silver", "银卡会员", 1000, 120, 1),
    Tier("gold", "金卡会员", 5000, 150, 2),
    Tier("platinum", "铂金会员", 20000, 200, 3),
)
_BY_CODE = {t.code: t for t in TIERS}


def tier(code: str | None) -> Tier:
    return _BY_CODE.get(code or "", TIERS[0])


def tier_for_growth(growth: int) -> Tier:
    best = TIERS[0]
    for t in TIERS:
        if growth >= t.min_growth:
            best = t
    return best


def next_tier(code: str) -> Tier | None:
    current = tier(code)
    higher = [t for t in TIERS if t.rank > current.rank]
    return higher[0] if higher else None


def growth_value(session: Session, customer_id: int, now: datetime | None = None) -> int:
    from backend.points.service import policy

    now = now or utcnow()
    since = now - timedelta(days=policy().growth_window_days)
    return int(
        session.scalar(
            select(func.coalesce(func.sum(PointsLedger.growth), 0)).where(
                PointsLedger.customer_id == customer_id, PointsLedger.created_at > since
            )
        )
        or 0
    )


def _change(session: Session, customer_id: int, old: Tier, new: Tier, now: datetime, growth: int, why: str) -> None:
    session.execute(update(Customer).where(Customer.id == customer_id).values(tier=new.code))
    session.execute(update(PointsAccount).where(PointsAccount.customer_id == customer_id).values(tier_since=now))
    stamp = f"{customer_id}:{old.code}:{new.code}:{int(now.timestamp() * 1_000_000)}"
    payload = {"from": old.code, "to": new.code, "growth": growth, "reason": why, "name": new.name}
    record(
        session,
        customer_id=customer_id,
        kind=Kind.TIER_CHANGED,
        channel=Channel.SYSTEM,
        source="points",
        source_ref=f"tier:{stamp}",
        occurred_at=now,
        payload=payload,
    )
    record_notice(session, customer_id, "tier_changed", f"tier:{stamp}", payload)
    if new.rank > old.rank:
        from backend.offers.models import AutoIssue
        from backend.offers.service import auto_issue

        auto_issue(session, customer_id, AutoIssue.TIER_UPGRADE, ref=new.code, now=now)  # once per tier reached


def upgrade_if_due(session: Session, customer_id: int, now: datetime | None = None) -> Tier | None:
    """Called after growth, under the account lock. Returns the new tier when upgraded."""
    now = now or utcnow()
    current_code = session.scalar(select(Customer.tier).where(Customer.id == customer_id))
    current = tier(current_code)
    growth = growth_value(session, customer_id, now)
    target = tier_for_growth(growth)
    if target.rank <= current.rank:
        return None
    _change(session, customer_id, current, target, now, growth, "upgrade")
    return target


def review_tiers(session: Session, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """The downgrade cycle: tiers held for a full cycle are re-computed from the growth value in
    the window; a lower result downgrades, otherwise the tier is kept for another cycle."""
    from backend.points.service import _lock_account, policy

    now = now or utcnow()
    cutoff = now - timedelta(days=policy().tier_cycle_days)
    due = session.execute(
        select(PointsAccount.customer_id)
        .join(Customer, Customer.id == PointsAccount.customer_id)
        .where(Customer.tier != TIERS[0].code, PointsAccount.tier_since <= cutoff)
        .order_by(PointsAccount.customer_id)
        .limit(limit)
    ).scalars()
    counts = {"downgraded": 0, "kept": 0}
    for customer_id in list(due):
        with session.begin_nested():
            _lock_account(session, customer_id)
            current = tier(session.scalar(select(Customer.tier).where(Customer.id == customer_id)))
            growth = growth_value(session, customer_id, now)
            target = tier_for_growth(growth)
            if target.rank < current.rank:
                _change(session, customer_id, current, target, now, growth, "cycle_review")
                counts["downgraded"] += 1
            else:
                session.execute(
                    update(PointsAccount).where(PointsAccount.customer_id == customer_id).values(tier_since=now)
                )
                counts["kept"] += 1
    return counts
