"""Retention: done periodic-job rows and old idempotency records are pruned, nothing else."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from backend.platform.db import utcnow
from backend.platform.idempotency import IdempotencyRecord
from backend.platform.jobs import OutboxJob, registered_jobs
from backend.platform.retention import prune_done_jobs, prune_idempotency_records, prune_job


def _job(session: Any, key: str, status: str, finished_days_ago: float | None) -> OutboxJob:
    finished = utcnow() - timedelta(days=finished_days_ago) if finished_days_ago is not None else None
    row = OutboxJob(name=key.split(":")[1], dedup_key=key, status=status, finished_at=finished)
    session.add(row)
    session.flush()
    return row


def test_only_done_periodic_rows_past_the_week_are_pruned(app_ctx: Any, db_session: Any) -> None:
    pruned = [_job(db_session, f"periodic:consult.alert_overdue:{slot}", "done", 8) for slot in (60, 120, 180)]
    kept = [
        _job(db_session, "periodic:consult.alert_overdue:240", "done", 6),  # within the week
        _job(db_session, "periodic:consult.alert_overdue:300", "failed", 30),  # not done: for an admin
        _job(db_session, "periodic:consult.alert_overdue:360", "pending", None),
        _job(db_session, "payment:77:paid", "done", 30),  # a business key guards a second run
    ]
    before = utcnow() - timedelta(days=7)
    assert prune_done_jobs(db_session, "periodic:", before, limit=2) == 2  # a run deletes a batch at most
    assert prune_done_jobs(db_session, "periodic:", before) == 1
    assert prune_done_jobs(db_session, "periodic:", before) == 0
    left = set(db_session.scalars(select(OutboxJob.id)))
    assert not left & {r.id for r in pruned}
    assert {r.id for r in kept} <= left


def test_idempotency_records_are_kept_a_week(app_ctx: Any, db_session: Any) -> None:
    now = utcnow()
    ages = [10, 9, 8, 6, 1]
    rows = [
        IdempotencyRecord(actor="member:1", key=f"k{i}", request_hash="h", created_at=now - timedelta(days=days))
        for i, days in enumerate(ages)
    ]
    db_session.add_all(rows)
    db_session.flush()
    assert prune_idempotency_records(db_session, now - timedelta(days=7)) == 3
    assert set(db_session.scalars(select(IdempotencyRecord.key).where(IdempotencyRecord.actor == "member:1"))) == {
        "k3",
        "k4",
    }


def test_the_prune_job_is_registered_and_reports_what_it_removed(app_ctx: Any, db_session: Any) -> None:
    assert "platform.prune" in registered_jobs()
    _job(db_session, "periodic:leads.escalate_overdue:60", "done", 8)
    db_session.add(
        IdempotencyRecord(actor="member:2", key="old", request_hash="h", created_at=utcnow() - timedelta(days=8))
    )
    db_session.flush()
    assert prune_job(db_session) == {
        "periodic_jobs": 1,
        "idempotency_records": 1,
        "wecom_intake_jobs": 0,  # the features' rules run in the same job (tests/wecom/test_retention.py)
        "wecom_raw_events": 0,
    }
