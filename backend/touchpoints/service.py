"""`record` — the single way every feature writes a touchpoint — plus the timeline and the
profile projection.

`record` runs in the caller's transaction, so a touchpoint exists exactly when the change it
describes does. Its `source_ref` is unique: recording the same thing twice (a retried callback,
a re-run job) returns the first row and leaves the projection untouched.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, case, delete, or_, select
from sqlalchemy.orm import Session

from backend.platform.db import DuplicateKey, unique_savepoint, utcnow
from backend.platform.errors import AppError
from backend.platform.upsert import upsert
from backend.touchpoints.models import (
    CONTACT_KINDS,
    VISIT_KINDS,
    Channel,
    CustomerKindCount,
    CustomerProfile,
    Kind,
    Touchpoint,
)


def record(
    session: Session,
    *,
    customer_id: int,
    kind: Kind | str,
    channel: Channel | str,
    source: str,
    source_ref: str,
    occurred_at: datetime | None = None,
    advisor_id: int | None = None,
    store_id: int | None = None,
    payload: dict[str, Any] | None = None,
) -> Touchpoint:
    kind = Kind(kind)  # refuses a kind outside the vocabulary
    channel = Channel(channel)
    customer_id = live_customer_id(session, customer_id)
    now = utcnow()
    tp = Touchpoint(
        occurred_at=occurred_at or now,
        recorded_at=now,
        customer_id=customer_id,
        advisor_id=advisor_id,
        store_id=store_id,
        channel=channel.value,
        kind=kind.value,
        source=source,
        source_ref=source_ref[:191],
        payload=payload,
    )
    try:
        with unique_savepoint(session):
            session.add(tp)
    except DuplicateKey:
        return session.scalars(select(Touchpoint).where(Touchpoint.source_ref == tp.source_ref)).one()
    _project(session, tp)
    return tp


def live_customer_id(session: Session, customer_id: int, *, exclusive: bool = False) -> int:
    """The customer that survives, read under a shared lock (`exclusive`: the caller's own lock
    on the row, held until commit).

    A writer that resolved a customer just before a merge committed would otherwise attach its
    row to the merged (hidden) source. The shared lock waits for a merge in progress (which holds
    both rows FOR UPDATE) and the read then sees where the customer went."""
    from backend.customers.models import Customer

    for _ in range(10):
        merged_into = session.execute(
            select(Customer.merged_into_id).where(Customer.id == customer_id).with_for_update(read=not exclusive)
        ).scalar_one_or_none()
        if merged_into is None:
            return customer_id
        customer_id = merged_into
    return customer_id


def _project(session: Session, tp: Touchpoint) -> None:
    kind = Kind(tp.kind)
    is_contact = kind in CONTACT_KINDS
    is_visit = kind in VISIT_KINDS
    advisor_contact = is_contact and tp.advisor_id is not None
    values = {
        "customer_id": tp.customer_id,
        "touchpoint_count": 1,
        "last_touch_at": tp.occurred_at,
        "last_contact_at": tp.occurred_at if is_contact else None,
        "last_contact_advisor_id": tp.advisor_id if advisor_contact else None,
        "last_advisor_contact_at": tp.occurred_at if advisor_contact else None,
        "last_store_visit_at": tp.occurred_at if is_visit else None,
        "last_store_visit_store_id": tp.store_id if is_visit else None,
    }
    P = CustomerProfile.__table__.c

    def newer(column: Any, new_value: Any) -> Any:
        return or_(column.is_(None), column <= new_value)

    def updates(new: Any) -> list[tuple[str, Any]]:
        pairs: list[tuple[str, Any]] = [("touchpoint_count", P.touchpoint_count + 1)]
        pairs.append(
            (
                "last_touch_at",
                case((newer(P.last_touch_at, new.last_touch_at), new.last_touch_at), else_=P.last_touch_at),
            )
        )
        if is_contact:
            pairs.append(
                (
                    "last_contact_at",
                    case((newer(P.last_contact_at, new.last_contact_at), new.last_contact_at), else_=P.last_contact_at),
                )
            )
        if advisor_contact:
            # advisor before time: on MariaDB later assignments see the earlier ones
            # Two advisors' contacts in the same instant: the higher advisor id stands, whatever
            # the order they were recorded in (rebuild_profiles orders them so too).
            later_or_tie_won = or_(
                P.last_advisor_contact_at.is_(None),
                P.last_advisor_contact_at < new.last_advisor_contact_at,
                and_(
                    P.last_advisor_contact_at == new.last_advisor_contact_at,
                    or_(P.last_contact_advisor_id.is_(None), P.last_contact_advisor_id <= new.last_contact_advisor_id),
                ),
            )
            pairs.append(
                (
                    "last_contact_advisor_id",
                    case((later_or_tie_won, new.last_contact_advisor_id), else_=P.last_contact_advisor_id),
                )
            )
            pairs.append(
                (
                    "last_advisor_contact_at",
                    case(
                        (newer(P.last_advisor_contact_at, new.last_advisor_contact_at), new.last_advisor_contact_at),
                        else_=P.last_advisor_contact_at,
                    ),
                )
            )
        if is_visit:
            pairs.append(
                (
                    "last_store_visit_store_id",
                    case(
                        (newer(P.last_store_visit_at, new.last_store_visit_at), new.last_store_visit_store_id),
                        else_=P.last_store_visit_store_id,
                    ),
                )
            )
            pairs.append(
                (
                    "last_store_visit_at",
                    case(
                        (newer(P.last_store_visit_at, new.last_store_visit_at), new.last_store_visit_at),
                        else_=P.last_store_visit_at,
                    ),
                )
            )
        return pairs

    upsert(session, CustomerProfile, values, ["customer_id"], updates)
    K = CustomerKindCount.__table__.c
    upsert(
        session,
        CustomerKindCount,
        {"customer_id": tp.customer_id, "kind": tp.kind, "count": 1},
        ["customer_id", "kind"],
        lambda new: [("count", K.count + 1)],
    )


def rebuild_profiles(session: Session, customer_ids: list[int] | None = None, batch: int = 5000) -> int:
    """Recompute the projection from the touchpoints alone. Returns the customers rebuilt."""
    where = [Touchpoint.customer_id.in_(customer_ids)] if customer_ids is not None else []
    if customer_ids is not None:
        session.execute(delete(CustomerKindCount).where(CustomerKindCount.customer_id.in_(customer_ids)))
        session.execute(delete(CustomerProfile).where(CustomerProfile.customer_id.in_(customer_ids)))
    else:
        session.execute(delete(CustomerKindCount))
        session.execute(delete(CustomerProfile))
    stmt = (
        select(
            Touchpoint.customer_id, Touchpoint.kind, Touchpoint.occurred_at, Touchpoint.advisor_id, Touchpoint.store_id
        )
        .where(*where)
        .order_by(Touchpoint.customer_id, Touchpoint.occurred_at, Touchpoint.advisor_id, Touchpoint.id)
        .execution_options(yield_per=batch)
    )
    profiles: list[dict[str, Any]] = []
    counts: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    kind_counts: dict[str, int] = {}

    def flush_current() -> None:
        if current is not None:
            profiles.append(current)
            counts.extend(
                {"customer_id": current["customer_id"], "kind": k, "count": n} for k, n in kind_counts.items()
            )

    for customer_id, kind, occurred_at, advisor_id, store_id in session.execute(stmt):
        if current is None or current["customer_id"] != customer_id:
            flush_current()
            current = {
                "customer_id": customer_id,
                "touchpoint_count": 0,
                "last_touch_at": None,
                "last_contact_at": None,
                "last_contact_advisor_id": None,
                "last_advisor_contact_at": None,
                "last_store_visit_at": None,
                "last_store_visit_store_id": None,
            }
            kind_counts = {}
        current["touchpoint_count"] += 1
        current["last_touch_at"] = occurred_at  # rows come oldest first: the last one wins
        kind_counts[kind] = kind_counts.get(kind, 0) + 1
        if kind in CONTACT_KINDS:
            current["last_contact_at"] = occurred_at
            if advisor_id is not None:
                current["last_contact_advisor_id"] = advisor_id
                current["last_advisor_contact_at"] = occurred_at
        if kind in VISIT_KINDS:
            current["last_store_visit_at"] = occurred_at
            current["last_store_visit_store_id"] = store_id
    flush_current()
    for i in range(0, len(profiles), batch):
        session.execute(CustomerProfile.__table__.insert(), profiles[i : i + batch])
    for i in range(0, len(counts), batch):
        session.execute(CustomerKindCount.__table__.insert(), counts[i : i + batch])
    return len(profiles)


def profile_of(session: Session, customer_id: int) -> dict[str, Any]:
    profile = session.get(CustomerProfile, customer_id)
    counts = dict(
        session.execute(
            select(CustomerKindCount.kind, CustomerKindCount.count).where(CustomerKindCount.customer_id == customer_id)
        ).all()
    )
    return {
        "touchpoint_count": profile.touchpoint_count if profile else 0,
        "last_touch_at": profile.last_touch_at if profile else None,
        "last_contact_at": profile.last_contact_at if profile else None,
        "last_contact_advisor_id": profile.last_contact_advisor_id if profile else None,
        "last_advisor_contact_at": profile.last_advisor_contact_at if profile else None,
        "last_store_visit_at": profile.last_store_visit_at if profile else None,
        "last_store_visit_store_id": profile.last_store_visit_store_id if profile else None,
        "counts_by_kind": counts,
    }


# ---------------------------------------------------------------------------------------------
# Timeline: newest first, keyset pagination on (occurred_at, id)


@dataclass(frozen=True)
class TimelineFilter:
    kinds: frozenset[str] | None = None
    channels: frozenset[str] | None = None
    advisor_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def encode_cursor(tp: Touchpoint) -> str:
    raw = f"{tp.occurred_at.isoformat()}|{tp.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, ident = raw.partition("|")
        occurred = datetime.fromisoformat(when)
        if occurred.tzinfo is None:
            raise ValueError("naive")
        occurred = occurred.astimezone(UTC)
        if not datetime(2000, 1, 1, tzinfo=UTC) <= occurred <= datetime(2100, 1, 1, tzinfo=UTC):
            raise ValueError("out of range")
        return occurred, int(ident)
    except (ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise AppError("timeline.cursor_invalid", 422, errors={"query": {"cursor": ["invalid cursor"]}}) from exc


def timeline(
    session: Session,
    customer_id: int,
    flt: TimelineFilter,
    limit: int = 20,
    cursor: str | None = None,
    only_kinds: frozenset[str] | None = None,
) -> tuple[list[Touchpoint], str | None]:
    stmt = select(Touchpoint).where(Touchpoint.customer_id == customer_id)
    kinds = flt.kinds
    if only_kinds is not None:
        kinds = (kinds & only_kinds) if kinds is not None else only_kinds
    if kinds is not None:
        stmt = stmt.where(Touchpoint.kind.in_(sorted(kinds)))
    if flt.channels:
        stmt = stmt.where(Touchpoint.channel.in_(sorted(flt.channels)))
    if flt.advisor_id is not None:
        stmt = stmt.where(Touchpoint.advisor_id == flt.advisor_id)
    if flt.since is not None:
        stmt = stmt.where(Touchpoint.occurred_at >= flt.since)
    if flt.until is not None:
        stmt = stmt.where(Touchpoint.occurred_at < flt.until)
    if cursor:
        at, ident = decode_cursor(cursor)
        stmt = stmt.where(or_(Touchpoint.occurred_at < at, and_(Touchpoint.occurred_at == at, Touchpoint.id < ident)))
    stmt = stmt.order_by(Touchpoint.occurred_at.desc(), Touchpoint.id.desc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def profile_drift(session: Session, limit: int = 1000) -> list[int]:
    """Customers whose projected touchpoint count differs from their touchpoints (at most `limit`)."""
    from sqlalchemy import func

    actual = (
        select(Touchpoint.customer_id.label("customer_id"), func.count().label("n"))
        .group_by(Touchpoint.customer_id)
        .subquery()
    )
    stmt = (
        select(actual.c.customer_id)
        .outerjoin(CustomerProfile, CustomerProfile.customer_id == actual.c.customer_id)
        .where(func.coalesce(CustomerProfile.touchpoint_count, 0) != actual.c.n)
        .order_by(actual.c.customer_id)
        .limit(limit)
    )
    return list(session.scalars(stmt))
