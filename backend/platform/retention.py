"""Rows that only record the path of work, pruned once they can guard nothing any more.

- Done rows of periodic jobs (`periodic:<job>:<slot>` in the outbox): one is written per job and
  slot (a job every minute writes 1,440 a day), and a slot never comes back, so its row has
  nothing left to deduplicate once it ran.
- Idempotency records: a client retries a create within minutes; a replay is answered for
  `IDEMPOTENCY_KEEP`, a week, after which the key is forgotten.
- What a feature registers with `register_pruner` (WeCom: backend/wecom/retention.py).

Everything else is kept: an outbox dedup key may be the only guard against a second run
(`payment:<order>:paid`, `points:<…>`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, select
from sqlalchemy.orm import Session

from backend.platform.db import utcnow
from backend.platform.idempotency import IdempotencyRecord
from backend.platform.jobs import OutboxJob, job, periodic

PERIODIC_JOBS_KEEP = timedelta(days=7)
IDEMPOTENCY_KEEP = timedelta(days=7)
BATCH = 5000  # rows per table and run: short deletes; a backlog drains over the hourly runs


# name -> prune(session, now): deletes (or shrinks) a batch of a feature's rows, returns how many.
Pruner = Callable[[Session, datetime], int]
_PRUNERS: dict[str, Pruner] = {}


def register_pruner(name: str, prune: Pruner) -> None:
    _PRUNERS[name] = prune


def prune_done_jobs(session: Session, key_prefix: str, finished_before: datetime, limit: int = BATCH) -> int:
    """Delete up to `limit` done outbox rows whose dedup key starts with `key_prefix` and that
    finished before `finished_before` (the caller knows that those keys guard nothing any more)."""
    ids = session.scalars(
        select(OutboxJob.id)
        .where(
            OutboxJob.dedup_key.startswith(key_prefix, autoescape=True),
            OutboxJob.status == "done",
            OutboxJob.finished_at < finished_before,
        )
        .order_by(OutboxJob.id)
        .limit(limit)
    ).all()
    if ids:
        session.execute(delete(OutboxJob).where(OutboxJob.id.in_(ids)))
    return len(ids)


def old_ids(session: Session, rows: Select, before: datetime) -> list[int]:
    """The ids of `rows` (id, time: the oldest ids first, a limited batch) whose time is before
    `before`. Ids grow with time, so the oldest ids find the oldest rows without an index on
    the time. A row out of order (an old event replayed today) is skipped, not waited for: it
    would otherwise hold back every row after it until it is old enough itself."""
    return [row_id for row_id, at in session.execute(rows) if at is not None and at < before]


def prune_idempotency_records(session: Session, created_before: datetime, limit: int = BATCH) -> int:
    """Delete up to `limit` of the oldest idempotency records created before `created_before`
    (the table has no index on `created_at`: `old_ids`)."""
    ids = old_ids(
        session,
        select(IdempotencyRecord.id, IdempotencyRecord.created_at).order_by(IdempotencyRecord.id).limit(limit),
        created_before,
    )
    if ids:
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id.in_(ids)))
    return len(ids)


@job("platform.prune", queue="low")
def prune_job(session: Session, slot: int | None = None) -> dict[str, int]:
    now = utcnow()
    return {
        "periodic_jobs": prune_done_jobs(session, "periodic:", now - PERIODIC_JOBS_KEEP),
        "idempotency_records": prune_idempotency_records(session, now - IDEMPOTENCY_KEEP),
        **{name: prune(session, now) for name, prune in sorted(_PRUNERS.items())},
    }


periodic("platform.prune", every_seconds=3600)
