"""Redis down, as the app's own client (`backend.connect_redis`) sees it: each command fails at
once, so what falls back (the outbox, the notify limiter's database count, the per-process token
cache, /readyz's `degraded`) does so without making the request wait. A client built with
`redis.Redis(host=...)` retries 10 times with backoff (~4.6 s per command on a refused port): a
request that queued a job would answer that late, and /readyz past a load balancer's probe
timeout, taking the node out although it would answer `degraded`."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from backend.platform import jobs
from backend.platform.db import commit, db

pytestmark = pytest.mark.redis

FAST = 1.0  # seconds; a refused connection costs milliseconds, a retrying client ~4.6 s


def _timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_readyz_answers_degraded_at_once_while_redis_is_down(client: Any, redis_outage: Any) -> None:
    redis_outage.down()
    down, seconds = _timed(lambda: client.get("/readyz"))
    assert down.status_code == 200 and down.get_json()["status"] == "degraded", down.get_json()
    assert seconds < FAST, seconds


def test_a_job_queued_while_redis_is_down_waits_in_the_outbox_without_holding_the_request(
    app: Any, redis_outage: Any
) -> None:
    redis_outage.down()
    with app.test_request_context():
        session = db.session()
        row = jobs.enqueue(session, "payments.sync_pending", {})
        assert row is not None
        row_id = row.id
        _, seconds = _timed(lambda: commit(session))  # the hand-over runs right after the commit
        assert seconds < FAST, seconds
        db.session.remove()
    _, seconds = _timed(lambda: jobs.relay(app=app))
    assert seconds < FAST, seconds
    with app.app_context():
        assert db.session().scalar(select(jobs.OutboxJob.status).where(jobs.OutboxJob.id == row_id)) == "pending"
        db.session.remove()
