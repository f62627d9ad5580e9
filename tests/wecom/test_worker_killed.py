"""A worker killed (SIGKILL: out of memory, a deploy, a lost node) while it processes an event.

The processing job is handed to RQ; a real RQ worker in a forked process takes it and is
killed while the job waits for the event's row (so the kill lands mid-processing). RQ finds the
abandoned job later (StartedJobRegistry.cleanup, run here with a clock moved forward) and
retries it while it has retries left. When the kills use up the retries, the outbox's recovery
gives the job up: the event is a dead letter an admin sees and can replay, not `received` for
good with no job left."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from typing import Any

import pytest
from sqlalchemy import select, text

from backend.platform.jobs import OutboxJob
from backend.wecom.models import WeComRawEvent
from tests.wecom.helpers import callback_world, contact_xml, post_event, run_due_jobs
from tests.wecom.test_faults import _waiting_for_a_lock

ADVISOR = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    return callback_world(sandbox_reset, tree, make_staff)


def _work(app: Any, redis_url: str) -> None:
    try:
        import redis
        from rq import SimpleWorker
        from rq.serializers import JSONSerializer

        from backend.platform import jobs

        jobs.set_worker_app(app)
        conn = redis.Redis.from_url(redis_url)
        SimpleWorker(list(jobs.QUEUES), connection=conn, serializer=JSONSerializer).work(burst=True)
    finally:
        os._exit(0)


@pytest.mark.redis
@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_a_worker_killed_on_every_try_leaves_the_event_dead_lettered(
    client: Any, db_session: Any, world: Any, redis_dispatcher: Any, redis_url: str
) -> None:
    from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
    from rq.serializers import JSONSerializer

    from backend.platform import intake, jobs
    from backend.platform.db import db

    app = client.application
    sb = world["sandbox"]
    assert post_event(
        client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, int(time.time()))
    ).data == (b"success")
    raw_id = db_session.scalars(select(WeComRawEvent.id)).one()
    db_session.close()
    (process_job,) = intake.admit_now(app, "wecom", None).deferred_job_ids
    assert jobs.relay([process_job], app=app) == 1  # handed to RQ
    job_id = f"outbox-{process_job}"
    started = StartedJobRegistry("default", connection=redis_dispatcher, serializer=JSONSerializer)
    scheduled = ScheduledJobRegistry("default", connection=redis_dispatcher, serializer=JSONSerializer)
    failed = FailedJobRegistry("default", connection=redis_dispatcher, serializer=JSONSerializer)

    kills = 0
    ctx = multiprocessing.get_context("fork")
    while job_id not in failed.get_job_ids():
        assert kills < 10
        with db.engine.connect() as holder:
            holder.execute(text("SELECT id FROM wecom_raw_event WHERE id = :id FOR UPDATE"), {"id": raw_id})
            child = ctx.Process(target=_work, args=(app, redis_url))
            child.start()
            _waiting_for_a_lock(holder)  # the job is inside process_raw_event now
            os.kill(child.pid, signal.SIGKILL)
            child.join(10)
            holder.rollback()
        kills += 1
        started.cleanup(timestamp=time.time() + 100_000)  # later: RQ's maintenance finds it abandoned
        if job_id in scheduled.get_job_ids():
            scheduled.requeue(job_id)  # its retry interval has passed
    assert kills == redis_dispatcher_attempts(app)

    # what the outbox relayer of a live worker does from now on, with every lease expired
    jobs.recover_lost(app, lease_seconds=0)
    run_due_jobs(app)
    db_session.expire_all()
    raw = db_session.get(WeComRawEvent, raw_id)
    row = db_session.get(OutboxJob, process_job)
    state = (raw.status, raw.attempts, raw.last_error, row.status, row.attempts)
    db_session.close()
    assert (state[0], state[3], state[4]) == ("dead", "failed", redis_dispatcher_attempts(app)), repr(state)
    assert "died on every try" in (raw.last_error or row.last_error or ""), repr(state)


def redis_dispatcher_attempts(app: Any) -> int:
    return int(app.extensions["dealerloop.jobs"].max_attempts)
