"""`flask worker` started while Redis is down (a deploy, a restart after a crash): its intake
pumps and outbox relayer need no Redis, so they run at once — WeCom callbacks are admitted (and
their welcomes sent) during the outage — and RQ starts when Redis is back and runs the jobs that
waited in the outbox. Redis here sits behind a TCP forwarder the test starts and stops."""

from __future__ import annotations

import contextlib
import os
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
from sqlalchemy import select

pytestmark = [pytest.mark.mariadb, pytest.mark.redis, pytest.mark.dbcommit]

REPO_ROOT = Path(__file__).resolve().parent.parent


class Forwarder:
    """127.0.0.1:<port> → Redis, while running; nothing listens on the port otherwise."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                s.close()

    def stop(self) -> None:
        # shutdown first: a close alone leaves a socket up while a thread waits on it (accept, recv)
        if self._server is not None:
            _shut(self._server)
            self._server = None
        for s in self._conns:
            _shut(s)
        self._conns.clear()


def _shut(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()


@pytest.fixture
def forwarder(redis_url: str) -> Iterator[Forwarder]:
    import redis

    parsed = urlparse(redis_url)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    fwd = Forwarder((parsed.hostname or "127.0.0.1", parsed.port or 6379))
    try:
        yield fwd
    finally:
        fwd.stop()
        client.flushdb()
        client.close()


def _wait_for(what: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.2)
    return False


def test_a_worker_started_while_redis_is_down_admits_callbacks_then_runs_their_jobs_when_it_is_back(
    app: Any, database_url: str, redis_url: str, forwarder: Forwarder
) -> None:
    from backend.platform.db import db
    from backend.platform.jobs import OutboxJob
    from backend.wecom.events import PROCESS_JOB, accept_event, parse_event
    from backend.wecom.models import WeComRawEvent

    def accept(n: int) -> int:
        xml = (
            "<xml><ToUserName>ww-outage</ToUserName><FromUserName>sys</FromUserName>"
            f"<CreateTime>{1700000000 + n}</CreateTime><MsgType>event</MsgType>"
            "<Event>not_handled_here</Event><ChangeType>whatever</ChangeType></xml>"
        )
        with app.app_context(), db.engine.begin() as conn:
            return accept_event(conn, "ww-outage", "1000002", xml, parse_event(xml), datetime.now(UTC))

    def statuses() -> list[str]:
        with app.app_context():
            try:
                return [str(s) for s in db.session().scalars(select(WeComRawEvent.status).order_by(WeComRawEvent.id))]
            finally:
                db.session.remove()

    def processing() -> list[str]:
        with app.app_context():
            try:
                jobs = select(OutboxJob.status).where(OutboxJob.name == PROCESS_JOB).order_by(OutboxJob.id)
                return list(db.session().scalars(jobs))
            finally:
                db.session.remove()

    accept(0)
    number = urlparse(redis_url).path.lstrip("/") or "0"
    env = {
        **os.environ,
        "DEALERLOOP_ENV": "development",
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:{forwarder.port}/{number}",  # nothing listens yet
        "LOG_LEVEL": "WARNING",
    }
    worker = subprocess.Popen(  # noqa: S603 - our own interpreter and command
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Redis down: the pump admits a callback that was waiting, and one that comes later
        assert _wait_for(lambda: statuses() == ["received"], 30), statuses()
        time.sleep(3)  # RQ has met the closed port by now
        assert worker.poll() is None, "the worker exited during the outage"
        accept(1)
        assert _wait_for(lambda: statuses() == ["received", "received"], 15), statuses()
        assert processing() == ["pending", "pending"]  # their processing waits in the outbox

        forwarder.start()  # Redis is back: RQ starts and runs what waited, once
        done = _wait_for(lambda: statuses() == ["ignored", "ignored"] and processing() == ["done", "done"], 60)
        assert done, (statuses(), processing())
        assert worker.poll() is None
    finally:
        if worker.poll() is None:
            worker.terminate()
        try:
            output, _ = worker.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()
    print(output[-3000:])
