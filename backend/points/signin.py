"""Daily sign-in (签到): once per member per Asia/Shanghai day — a unique (member, day) row,
not a check-then-insert — with a streak that a missed day resets and a 7-day reward cycle that
starts over after its last day. Points go through the ledger (key `signin:<member>:<day>`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.platform.db import DuplicateKey, unique_savepoint, utcnow
from backend.platform.errors import AppError, register_messages
from backend.points import service
from backend.points.models import PointsSignin
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import live_customer_id, record

register_messages({"signin.already_signed": ("今天已经签到过了", "Already signed in today")})

BASE_POINTS = 5
CYCLE_DAYS = 7
CYCLE_BONUS = {3: 5, 7: 20}  # extra points on these days of the cycle


def points_for(cycle_day: int) -> int:
    return BASE_POINTS + CYCLE_BONUS.get(cycle_day, 0)


def sign_in(session: Session, customer_id: int, now: datetime | None = None) -> PointsSignin:
    now = now or utcnow()
    # The member resolved before a merge committed still says the merged-away id: the day's
    # key (one sign-in per customer and day) must be the survivor's, or they sign in twice.
    customer_id = live_customer_id(session, customer_id)
    today = service.shanghai_date(now)
    yesterday = session.scalars(
        select(PointsSignin).where(
            PointsSignin.customer_id == customer_id, PointsSignin.sign_date == today - timedelta(days=1)
        )
    ).one_or_none()
    streak = yesterday.streak + 1 if yesterday else 1
    cycle_day = (streak - 1) % CYCLE_DAYS + 1
    row = PointsSignin(
        customer_id=customer_id, sign_date=today, streak=streak, cycle_day=cycle_day, points=points_for(cycle_day)
    )
    try:
        with unique_savepoint(session):
            session.add(row)
    except DuplicateKey as exc:
        raise AppError("signin.already_signed", 409) from exc
    ledger = service.earn(
        session,
        customer_id,
        row.points,
        key=f"signin:{customer_id}:{today.isoformat()}",
        reason_code="sign_in",
        operator=f"member:{customer_id}",
        ref_type="sign_in",
        ref_id=today.isoformat(),
        now=now,
    )
    row.ledger_id = ledger.id
    session.flush()
    record(
        session,
        customer_id=customer_id,
        kind=Kind.SIGNED_IN,
        channel=Channel.MINIPROGRAM,
        source="points",
        source_ref=f"signin:{customer_id}:{today.isoformat()}",
        occurred_at=now,
        payload={"streak": streak, "cycle_day": cycle_day, "points": row.points},
    )
    return row


def status(session: Session, customer_id: int, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    today = service.shanghai_date(now)
    recent = {
        r.sign_date: r
        for r in session.scalars(
            select(PointsSignin).where(
                PointsSignin.customer_id == customer_id, PointsSignin.sign_date >= today - timedelta(days=1)
            )
        )
    }
    current = recent.get(today) or recent.get(today - timedelta(days=1))
    streak = current.streak if current else 0
    signed_today = today in recent
    next_cycle_day = streak % CYCLE_DAYS + 1  # tomorrow's if signed today, else today's
    return {
        "today": today,
        "signed_today": signed_today,
        "streak": streak,
        "cycle_day": current.cycle_day if current else 0,
        "next_points": points_for(next_cycle_day),
        "cycle_days": CYCLE_DAYS,
        "cycle_bonus": {str(k): v for k, v in CYCLE_BONUS.items()},
    }
