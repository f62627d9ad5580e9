"""`flask worker` stopped by SIGTERM, as a deploy does: nothing lost, nothing done twice.

The shipped command runs as a subprocess against this run's MariaDB database and Redis. A job
running at the signal completes once and the process exits (RQ's warm shutdown); jobs still
queued stay queued for the next worker; callbacks arriving meanwhile are admitted whole (their
row and their jobs) or left to the next pump. During a Redis outage (RQ not running, only the
relayer and the pumps) the signal stops them gracefully too.

How long a stop takes is measured (README, "Stopping workers"), not asserted here."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from sqlalchemy import func, select

pytestmark = [pytest.mark.mariadb, pytest.mark.redis, pytest.mark.dbcommit]

REPO_ROOT = Path(__file__).resolve().parent.parent
EXIT_BOUND = 150  # seconds: only a worker that never exits reaches it (the measured stops take 1-5 s)


def _wait_for(what: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.1)
    return False


class WorkerProcess:
    def __init__(self, database_url: str, redis_url: str, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        env = {
            **os.environ,
            "DEALERLOOP_ENV": "development",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "LOG_LEVEL": "WARNING",
        }
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop(); a pipe could fill and block it
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and command
            [sys.executable, "-m", "flask", "--app", "wsgi", "worker", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def terminate_and_wait(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self) -> int:
        try:
            return self.proc.wait(EXIT_BOUND)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the worker did not exit; its log:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def start_worker(database_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(redis_url: str, *args: str) -> WorkerProcess:
        worker = WorkerProcess(database_url, redis_url, tmp_path / f"worker-{len(started)}.log", *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


def _rq_workers(client: Any) -> list[Any]:
    from rq import Worker

    return Worker.all(connection=client)


def _rq_status(client: Any, row_id: int) -> str | None:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job
    from rq.serializers import JSONSerializer

    try:
        status = Job.fetch(f"outbox-{row_id}", connection=client, serializer=JSONSerializer).get_status()
    except NoSuchJobError:
        return None
    return str(status.value if hasattr(status, "value") else status)


def _queued_ids(client: Any, queue: str) -> list[str]:
    from rq import Queue
    from rq.serializers import JSONSerializer

    return Queue(queue, connection=client, serializer=JSONSerializer).get_job_ids()


def _read(app: Any, query: Callable[[Any], Any]) -> Any:
    from backend.platform.db import db

    with app.app_context():
        session = db.session_factory()
        try:
            return query(session)
        finally:
            session.rollback()
            session.close()


def _grant(app: Any, batch_key: str, customer_id: int) -> int:
    """A points grant through the outbox (handed to Redis after the commit); returns its row id."""
    from backend.platform.db import commit, db
    from backend.platform.jobs import enqueue

    args = {"batch_key": batch_key, "customer_ids": [customer_id], "points": 10, "reason": "stop", "staff_id": 1}
    with app.app_context():
        session = db.session_factory()
        try:
            row = enqueue(session, "points.bulk_grant", args)
            assert row is not None
            commit(session)
            return row.id
        finally:
            session.close()


def _grants(app: Any, batch_key: str) -> int:
    from backend.points.models import PointsLedger

    return _read(
        app,
        lambda s: s.scalar(
            select(func.count())
            .select_from(PointsLedger)
            .where(PointsLedger.ref_type == "bulk_grant", PointsLedger.ref_id == batch_key)
        ),
    )


def _outbox(app: Any, row_id: int) -> tuple[str, int]:
    from backend.platform.jobs import OutboxJob

    row = _read(
        app, lambda s: s.execute(select(OutboxJob.status, OutboxJob.attempts).where(OutboxJob.id == row_id)).one()
    )
    return str(row.status), int(row.attempts)


def test_sigterm_while_a_job_runs_finishes_it_once_and_leaves_the_queued_jobs_to_the_next_worker(
    app: Any, db_session: Any, make_customer: Any, redis_url: str, redis_dispatcher: Any, start_worker: Any
) -> None:
    from backend.platform.db import db
    from backend.points.models import PointsAccount

    running, queued_1, queued_2 = make_customer(), make_customer(), make_customer()
    db_session.add(PointsAccount(customer_id=running.id))
    db_session.commit()

    worker = start_worker(redis_url)
    assert _wait_for(lambda: len(_rq_workers(redis_dispatcher)) == 1, 60), worker.output()

    # The grant's job runs until this transaction lets go of the member's points account.
    with app.app_context():
        holder = db.session_factory()
        holder.execute(select(PointsAccount.id).where(PointsAccount.customer_id == running.id).with_for_update())
        try:
            job_a = _grant(app, "stop-running", running.id)
            assert _wait_for(lambda: _rq_status(redis_dispatcher, job_a) == "started", 60), worker.output()
            job_b = _grant(app, "stop-queued-1", queued_1.id)
            job_c = _grant(app, "stop-queued-2", queued_2.id)

            worker.proc.send_signal(signal.SIGTERM)
            # RQ notes a warm shutdown asked for during a job on its worker's hash
            assert _wait_for(lambda: any(w.shutdown_requested_date for w in _rq_workers(redis_dispatcher)), 30), (
                worker.output()
            )
        finally:
            holder.rollback()
            holder.close()
    exit_code = worker.wait()

    assert exit_code == 0, worker.output()
    assert _rq_workers(redis_dispatcher) == []  # deregistered
    assert _outbox(app, job_a) == ("done", 1)
    assert _grants(app, "stop-running") == 1
    for job in (job_b, job_c):  # untouched, still in RQ's queue
        assert _outbox(app, job) == ("enqueued", 0)
        assert _rq_status(redis_dispatcher, job) == "queued"
        assert f"outbox-{job}" in _queued_ids(redis_dispatcher, "default")
    assert _grants(app, "stop-queued-1") == _grants(app, "stop-queued-2") == 0

    # the next worker (until the queues are empty) runs them, each once
    next_worker = start_worker(redis_url, "--burst")
    assert next_worker.wait() == 0, next_worker.output()
    assert [_outbox(app, job) for job in (job_a, job_b, job_c)] == [("done", 1)] * 3
    assert [_grants(app, key) for key in ("stop-running", "stop-queued-1", "stop-queued-2")] == [1, 1, 1]


def _accept(app: Any, n: int) -> int:
    from backend.platform.db import db
    from backend.wecom.events import accept_event, parse_event

    xml = (
        f"<xml><ToUserName>ww-stop</ToUserName><FromUserName>sys{n}</FromUserName>"
        f"<CreateTime>{1700000000 + n}</CreateTime><MsgType>event</MsgType>"
        "<Event>not_handled_here</Event><ChangeType>whatever</ChangeType></xml>"
    )
    with app.app_context(), db.engine.begin() as conn:
        return accept_event(conn, "ww-stop", "1000002", xml, parse_event(xml), datetime.now(UTC))


def _intake_state(app: Any) -> dict[int, tuple[str, int]]:
    """Each stored callback: its status and how many processing jobs it has."""
    from backend.platform.jobs import OutboxJob
    from backend.wecom.events import PROCESS_JOB
    from backend.wecom.models import WeComRawEvent

    def query(session: Any) -> dict[int, tuple[str, int]]:
        events = {row.id: str(row.status) for row in session.execute(select(WeComRawEvent.id, WeComRawEvent.status))}
        jobs: dict[int, int] = {}
        for args in session.scalars(select(OutboxJob.args).where(OutboxJob.name == PROCESS_JOB)):
            jobs[int(args["raw_event_id"])] = jobs.get(int(args["raw_event_id"]), 0) + 1
        return {event_id: (status, jobs.get(event_id, 0)) for event_id, status in events.items()}

    return _read(app, query)


def _assert_admitted_whole_or_not_at_all(state: dict[int, tuple[str, int]]) -> None:
    from backend.wecom.models import RawEventStatus

    for event_id, (status, jobs) in state.items():
        expected = 0 if status == RawEventStatus.ACCEPTED else 1
        assert jobs == expected, (event_id, status, jobs)


def _accept_until(app: Any, stop: threading.Event, accepted: list[int]) -> None:
    n = 0
    while not stop.is_set():
        accepted.append(_accept(app, n))
        n += 1
        time.sleep(0.02)


def test_callbacks_arriving_while_the_worker_stops_are_admitted_whole_or_left_to_the_next_pump(
    app: Any, redis_url: str, redis_dispatcher: Any, start_worker: Any
) -> None:
    from backend.platform import intake
    from backend.wecom.models import RawEventStatus

    worker = start_worker(redis_url)
    assert _wait_for(lambda: len(_rq_workers(redis_dispatcher)) == 1, 60), worker.output()
    done, accepted = threading.Event(), []
    sender = threading.Thread(target=_accept_until, args=(app, done, accepted))
    sender.start()
    try:
        admitted = lambda: sum(s != RawEventStatus.ACCEPTED for s, _ in _intake_state(app).values())  # noqa: E731
        assert _wait_for(lambda: admitted() >= 5, 60), worker.output()
        exit_code = worker.terminate_and_wait()
    finally:
        done.set()
        sender.join()

    assert exit_code == 0, worker.output()
    state = _intake_state(app)
    assert sorted(state) == sorted(accepted)
    _assert_admitted_whole_or_not_at_all(state)

    # the next pump admits what was left, once
    intake.admit_now(app, "wecom", None)
    state = _intake_state(app)
    assert all(status != RawEventStatus.ACCEPTED and jobs == 1 for status, jobs in state.values()), state


def _closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def test_sigterm_during_a_redis_outage_stops_the_relayer_and_pumps_gracefully(
    app: Any, redis_url: str, start_worker: Any
) -> None:
    """Before: RQ had not installed its handlers (it never registered), so SIGTERM's default
    action killed the process (exit code -15) with its intake pumps and relayer mid-work."""
    from backend.wecom.models import RawEventStatus

    number = urlparse(redis_url).path.lstrip("/") or "0"
    worker = start_worker(f"redis://127.0.0.1:{_closed_port()}/{number}")
    _accept(app, 0)
    # the pump runs without Redis: the callback is admitted
    assert _wait_for(lambda: [s for s, _ in _intake_state(app).values()] == [RawEventStatus.RECEIVED], 60), (
        worker.output()
    )
    assert worker.proc.poll() is None, worker.output()

    assert worker.terminate_and_wait() == 0, worker.output()
    _assert_admitted_whole_or_not_at_all(_intake_state(app))
