"""The shipped worker, `flask --app wsgi worker --burst`, as its own process: it runs a job the app
handed to RQ in its own process (RQ's SimpleWorker: no work horse is forked beside the relayer
and intake threads), records it done, and exits once the queues are empty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

pytestmark = [pytest.mark.mariadb, pytest.mark.redis, pytest.mark.dbcommit]

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_the_worker_command_runs_a_handed_over_job_and_exits(
    app: Any, database_url: str, redis_url: str, redis_dispatcher: Any
) -> None:
    from rq import Queue
    from rq.serializers import JSONSerializer

    from backend.platform.db import db, unit_of_work
    from backend.platform.jobs import OutboxJob, enqueue

    with app.app_context():
        with unit_of_work() as session:
            enqueue(session, "points.drift_check", {}, dedup_key="worker-command-test")
        row = db.session().scalars(select(OutboxJob).where(OutboxJob.dedup_key == "worker-command-test")).one()
        assert row.status == "enqueued"  # handed to RQ at commit
        db.session.remove()
    low = Queue("low", connection=redis_dispatcher, serializer=JSONSerializer)
    assert low.count == 1
    # the low queue's bulk jobs get more than RQ's default 180 s before the work horse is killed
    assert low.jobs[0].timeout == 1800

    env = {
        **os.environ,
        "DEALERLOOP_ENV": "development",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(  # noqa: S603 - our own interpreter and command
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--burst"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    with app.app_context():
        row = db.session().scalars(select(OutboxJob).where(OutboxJob.dedup_key == "worker-command-test")).one()
        assert (row.status, row.attempts, row.last_error) == ("done", 1, None)
        assert row.finished_at is not None
        db.session.remove()
    # (The queues need not be empty now: the worker's relayer thread may have handed periodic
    # jobs over after RQ found the queues empty and before the threads stopped.)
