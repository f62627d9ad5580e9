"""Database connections under stress: a forked child (an RQ work horse — `flask worker` forks one
per job) opens its own connections instead of reusing the parent's pooled ones, and an exhausted
pool answers a retryable 503."""

from __future__ import annotations

import os
from typing import Any

import pytest
from sqlalchemy import text

from backend.platform.db import db

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def test_forked_child_uses_its_own_connection(app: Any) -> None:
    with app.app_context():
        session = db.session()
        parent_id = session.scalar(text("SELECT CONNECTION_ID()"))  # the session now holds a connection
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report the connection its session uses, then leave at once
            os.close(read)
            try:
                child_id = db.session().scalar(text("SELECT CONNECTION_ID()"))
                os.write(write, str(child_id).encode())
            finally:
                os._exit(0)
        os.close(write)
        reported = b""
        while chunk := os.read(read, 64):
            reported += chunk
        os.close(read)
        os.waitpid(pid, 0)
        assert reported and int(reported) != parent_id
        # The parent's connection was not disturbed by the child.
        assert session.scalar(text("SELECT CONNECTION_ID()")) == parent_id
        session.rollback()


def test_an_exhausted_pool_answers_503_busy_not_500(app: Any, member_headers: Any) -> None:
    """Every connection of the process is busy (a flash sale): the request waits DB_POOL_TIMEOUT,
    then answers a retryable 503 in the error format."""
    pool = db.engine.pool
    held = []
    saved_timeout = pool._timeout  # type: ignore[attr-defined]
    pool._timeout = 0.2  # type: ignore[attr-defined]  # the setting, shortened for the test
    try:
        for _ in range(pool.size() + pool._max_overflow):  # type: ignore[attr-defined]
            held.append(db.engine.connect())
        headers = member_headers(type("M", (), {"id": 1})())
        resp = app.test_client().get("/api/app/v1/points/account", headers=headers)
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"
        assert resp.get_json()["code"] == "service.busy" and resp.get_json()["message"]
    finally:
        for conn in held:
            conn.close()
        pool._timeout = saved_timeout  # type: ignore[attr-defined]
    assert app.test_client().get("/healthz").status_code == 200
