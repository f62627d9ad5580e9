"""Retention of the WeCom intake's rows (run by the hourly `platform.prune`).

- **Processed raw events** older than RAW_EVENT_KEEP: WeCom redelivers within seconds to hours,
  so by then the dedup key guards nothing, and everything the event did is in the friend
  relations, touchpoints and channel facts. An event no welcome message or alert points at is
  deleted. One that a welcome or an alert points at (its foreign key, which also keeps that
  welcome or alert once per event) stays as a `pruned` row: the decrypted XML (external user
  id, state, welcome code) is emptied, the dedup key and the event's kind and time remain.
  Ignored and dead events are kept whole: an admin may still inspect and replay them.
- **Done outbox rows of the intake's jobs** (`wecom.process_event:…`, `wecom.send_welcome:…`)
  older than INTAKE_JOBS_KEEP: those keys only guard the admission and the tries of one event,
  whose status now decides everything (a replay makes new keys).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from backend.platform.retention import BATCH, old_ids, prune_done_jobs, register_pruner
from backend.wecom.events import PROCESS_JOB, WELCOME_JOB
from backend.wecom.models import RawEventStatus, WeComAlert, WeComRawEvent, WelcomeMessage

RAW_EVENT_KEEP = timedelta(days=90)
INTAKE_JOBS_KEEP = timedelta(days=7)


def prune_raw_events(session: Session, processed_before: datetime, limit: int = BATCH) -> int:
    """Delete, or empty and mark `pruned`, up to `limit` of the oldest processed raw events
    processed before `processed_before`; returns how many.

    Walks the processed events by id on the (status, id) index (`old_ids`): one processed late
    (after retries, or replayed by an admin) waits for a later run without holding back the
    events after it."""
    ids = old_ids(
        session,
        select(WeComRawEvent.id, WeComRawEvent.processed_at)
        .where(WeComRawEvent.status == RawEventStatus.PROCESSED)
        .order_by(WeComRawEvent.id)
        .limit(limit),
        processed_before,
    )
    if not ids:
        return 0
    referenced = set(session.scalars(select(WelcomeMessage.raw_event_id).where(WelcomeMessage.raw_event_id.in_(ids))))
    referenced |= set(session.scalars(select(WeComAlert.raw_event_id).where(WeComAlert.raw_event_id.in_(ids))))
    unreferenced = [raw_id for raw_id in ids if raw_id not in referenced]
    if unreferenced:
        session.execute(delete(WeComRawEvent).where(WeComRawEvent.id.in_(unreferenced)))
    if referenced:
        session.execute(
            update(WeComRawEvent)
            .where(WeComRawEvent.id.in_(referenced))
            .values(status=RawEventStatus.PRUNED, xml="", last_error=None)
            .execution_options(synchronize_session=False)
        )
    return len(ids)


def prune_intake_jobs(session: Session, now: datetime) -> int:
    before = now - INTAKE_JOBS_KEEP
    return sum(prune_done_jobs(session, f"{name}:", before) for name in (PROCESS_JOB, WELCOME_JOB))


register_pruner("wecom_raw_events", lambda session, now: prune_raw_events(session, now - RAW_EVENT_KEEP))
register_pruner("wecom_intake_jobs", prune_intake_jobs)
