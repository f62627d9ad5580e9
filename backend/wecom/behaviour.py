"""Advisor behaviour figures from WeCom (`externalcontact/get_user_behavior_data`).

- One advisor per call: several userids in one call come back as one aggregate.
- Day granularity, at most 30 days per call, only the last 180 days.
- Stored per advisor per China-time day (upsert: a re-pull overwrites). `reply_percentage` and
  `avg_reply_time` come only for days with chats: without them the columns stay NULL (no figure),
  never 0 — an average over days must skip them, not count them as zero.
- The daily job re-pulls the last few days: figures fetched too early in the morning are zeros
  and come in late.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select, true
from sqlalchemy.orm import Session

from backend.org.models import ADVISOR_ROLES, Staff, StaffRole, StaffStatus
from backend.org.scope import get_scoped_or_404, scope_query, store_filter
from backend.platform.actors import StaffActor
from backend.platform.db import utcnow
from backend.platform.errors import AppError, register_messages
from backend.platform.jobs import enqueue
from backend.platform.ports import UpstreamError
from backend.platform.upsert import upsert
from backend.wecom import service as svc
from backend.wecom.ops_models import WeComBehaviourDay

log = logging.getLogger("dealerloop.wecom.behaviour")

CHINA = timezone(timedelta(hours=8))
ALL_JOB = "wecom.behaviour.pull_all"
PULL_JOB = "wecom.behaviour.pull"
MAX_SPAN_DAYS = 30
MAX_AGE_DAYS = 180
REPULL_DAYS = 3  # the daily job fetches yesterday and the days before it again
COUNTS = ("chat_cnt", "message_cnt", "negative_feedback_cnt", "new_apply_cnt", "new_contact_cnt")
UNKNOWN_USER = 60111

register_messages(
    {
        "wecom.behaviour_range_invalid": (
            "日期范围无效（最多拉取最近 180 天）",
            "Invalid date range (only the last 180 days can be pulled)",
        ),
        "wecom.behaviour_too_many": (
            "数据超过 5000 行，请缩短日期范围或选择一位顾问",
            "More than 5,000 rows: shorten the range or pick one advisor",
        ),
    }
)

LIST_MAX = 5000  # rows one listing answers; a larger one is refused, never cut short


def china_today(now: datetime | None = None) -> date:
    return (now or utcnow()).astimezone(CHINA).date()


def day_start(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=CHINA).timestamp())


def chunks(start: date, end: date) -> list[tuple[date, date]]:
    out = []
    current = start
    while current <= end:
        last = min(current + timedelta(days=MAX_SPAN_DAYS - 1), end)
        out.append((current, last))
        current = last + timedelta(days=1)
    return out


def check_range(start: date, end: date, today: date) -> None:
    if start > end or end > today or start < today - timedelta(days=MAX_AGE_DAYS - 1):
        raise AppError(
            "wecom.behaviour_range_invalid",
            422,
            errors={"json": {"start_date": [f"{today - timedelta(days=MAX_AGE_DAYS - 1)} .. {today}"]}},
        )


def pull(session: Session, corp_id: str, userid: str, start: date, end: date) -> int:
    """One call for one advisor and ≤ 30 days; upserts each day returned. Returns days stored."""
    if (end - start).days + 1 > MAX_SPAN_DAYS or start > end:
        raise ValueError(f"{start}..{end} is not a 1..{MAX_SPAN_DAYS}-day range")
    try:
        result = svc.gateway_for(corp_id).post(
            "externalcontact/get_user_behavior_data",
            {"userid": [userid], "start_time": day_start(start), "end_time": day_start(end)},
        )
    except UpstreamError as exc:
        if exc.reason == "rejected" and exc.errcode == UNKNOWN_USER:
            log.warning("behaviour: %s is not a WeCom member (60111); skipped", userid)
            return 0
        raise  # the outbox retries; nothing was stored
    staff = svc.staff_by_userid(session, corp_id, userid)
    now = utcnow()
    stored = 0
    for row in result.get("behavior_data") or []:
        stat_date = datetime.fromtimestamp(int(row["stat_time"]), UTC).astimezone(CHINA).date()
        values: dict[str, Any] = {
            "corp_id": corp_id,
            "userid": userid,
            "stat_date": stat_date,
            "staff_id": staff.id if staff else None,
            "store_id": staff.org_unit_id if staff else None,
            "reply_percentage": _number(row.get("reply_percentage")),
            "avg_reply_time": _number(row.get("avg_reply_time")),
            "pulled_at": now,
            **{k: int(row.get(k) or 0) for k in COUNTS},
        }
        changing = ["staff_id", *COUNTS, "reply_percentage", "avg_reply_time", "pulled_at"]
        upsert(
            session,
            WeComBehaviourDay,
            values,
            ["corp_id", "userid", "stat_date"],
            # A re-pull refreshes the figures; the day keeps the store it was first stored for.
            lambda new, cols=changing: [
                *[(c, getattr(new, c)) for c in cols],
                ("store_id", func.coalesce(WeComBehaviourDay.__table__.c.store_id, new.store_id)),
            ],
        )
        stored += 1
    return stored


def _number(value: Any) -> float | None:
    """A figure WeCom sent, or None when it sent none (no chats that day)."""
    if value is None or value == "":
        return None
    return float(value)


def _day_began(day: date) -> datetime:
    """The moment a China day began."""
    return datetime.fromtimestamp(day_start(day), UTC)


def _advisors_since(since: date) -> Any:
    """(corp_id, userid, resigned_at) of advisors who worked in the days from `since`: the
    active ones and those who resigned since (their last days' figures are theirs: WeCom still
    has them, or answers 60111, which a pull skips)."""
    return (
        select(Staff.corp_id, Staff.wecom_userid, Staff.resigned_at)
        .join(StaffRole)
        .where(
            StaffRole.role.in_(ADVISOR_ROLES),
            (Staff.status == StaffStatus.ACTIVE) | (Staff.resigned_at >= _day_began(since)),
        )
        .distinct()
    )


def enqueue_pulls(session: Session, corp_id: str, userid: str, start: date, end: date, key: str | None) -> int:
    n = 0
    for first, last in chunks(start, end):
        args = {"corp_id": corp_id, "userid": userid, "start": first.isoformat(), "end": last.isoformat()}
        # The corp too: the same userid can exist in two corps (a person in both, common pinyin).
        dedup = f"{PULL_JOB}:{key}:{corp_id}:{userid}:{first}" if key else None
        if enqueue(session, PULL_JOB, args, dedup_key=dedup):
            n += 1
    return n


def pull_all(session: Session, corp_id: str, run: str, now: datetime | None = None) -> int:
    """The daily job: every advisor, yesterday and the REPULL_DAYS - 1 days before it, and back
    to the day after their last stored day when runs were missed (the job did not run, WeCom
    was down past the retries) — never further than WeCom keeps (MAX_AGE_DAYS). An advisor who
    resigned is pulled for the days up to their leaving."""
    today = china_today(now)
    end = today - timedelta(days=1)
    window = today - timedelta(days=REPULL_DAYS)
    oldest = today - timedelta(days=MAX_AGE_DAYS - 1)
    last_stored = {
        userid.casefold(): last
        for userid, last in session.execute(
            select(WeComBehaviourDay.userid, func.max(WeComBehaviourDay.stat_date))
            .where(WeComBehaviourDay.corp_id == corp_id, WeComBehaviourDay.stat_date >= oldest)
            .group_by(WeComBehaviourDay.userid)
        )
    }
    advisors = session.execute(_advisors_since(oldest).where(Staff.corp_id == corp_id).order_by(Staff.wecom_userid))
    enqueued = 0
    for _, userid, resigned_at in advisors:
        last = last_stored.get(userid.casefold())
        start = max(oldest, min(window, last + timedelta(days=1))) if last is not None else window
        if resigned_at is not None and resigned_at < _day_began(start):
            continue  # left before the first day this run would pull
        enqueued += enqueue_pulls(session, corp_id, userid, start, end, run)
    return enqueued


def request_pull(session: Session, actor: StaffActor, start: date, end: date, staff_id: int | None = None) -> int:
    """A manager back-fills figures (≤ 180 days back) for one advisor or every advisor in scope,
    of every configured corp, each pulled from their own corp."""
    check_range(start, end, china_today())
    if staff_id is not None:
        # The advisor's own corp: the same userid in the primary corp may be somebody else.
        staff = get_scoped_or_404(session, actor, "staff", staff_id)
        svc.configured_gateway(staff.corp_id, "staff_id")  # a job for a corp without an app could never run
        advisors_to_pull = [(staff.corp_id, staff.wecom_userid)]
    else:
        # Those who resigned within the range too: the days they worked are in it.
        stmt = _advisors_since(start).where(Staff.corp_id.in_(svc.corp_ids()))
        advisors_to_pull = [
            (corp, userid)
            for corp, userid, _ in session.execute(
                scope_query(stmt, actor, "staff").order_by(Staff.corp_id, Staff.wecom_userid)
            )
        ]
    return sum(enqueue_pulls(session, corp, u, start, end, None) for corp, u in advisors_to_pull)


def list_days(
    session: Session, actor: StaffActor, start: date, end: date, staff_id: int | None = None
) -> list[WeComBehaviourDay]:
    if start > end or (end - start).days > 366:
        raise AppError("wecom.behaviour_range_invalid", 422)
    stmt = (
        select(WeComBehaviourDay)
        .join(Staff, Staff.id == WeComBehaviourDay.staff_id)
        .where(WeComBehaviourDay.stat_date >= start, WeComBehaviourDay.stat_date <= end)
    )
    visible = _visible_days(actor)
    if staff_id is not None:
        # An advisor who has moved on is still found by the store they worked at.
        has_days_here = session.scalar(
            select(WeComBehaviourDay.id)
            .join(Staff, Staff.id == WeComBehaviourDay.staff_id)
            .where(WeComBehaviourDay.staff_id == staff_id, visible)
            .limit(1)
        )
        if has_days_here is None:
            get_scoped_or_404(session, actor, "staff", staff_id)
        stmt = stmt.where(WeComBehaviourDay.staff_id == staff_id)
    stmt = stmt.where(visible)
    rows = list(
        session.scalars(stmt.order_by(WeComBehaviourDay.staff_id, WeComBehaviourDay.stat_date).limit(LIST_MAX + 1))
    )
    if len(rows) > LIST_MAX:  # cut short, whole advisors would be missing without a word
        raise AppError("wecom.behaviour_too_many", 422, errors={"end_date": [f"more than {LIST_MAX} rows"]})
    return rows


def _visible_days(actor: StaffActor) -> Any:
    """An advisor sees their own days; a manager the days earned at their stores (a row from
    before stores were kept counts for the advisor's store now)."""
    if actor.scope.store_ids is None:
        return true()
    mine = WeComBehaviourDay.staff_id == actor.staff_id
    if actor.scope.own_customers_only:
        return mine
    return mine | store_filter(actor, func.coalesce(WeComBehaviourDay.store_id, Staff.org_unit_id))
