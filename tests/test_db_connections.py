"""Database connections under stress: a forked child (an RQ work horse — `flask worker` forks one
per job) opens its own connections instead of reusing the parent's pooled ones, and an exhausted
pool answers a retryable 503."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from backend.platform.db import db

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def in_forked_child(fn: Callable[[], int]) -> int:
    """`fn()` run in a forked child, which reports the number and leaves at once."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            os.write(write, str(fn()).encode())
        finally:
            os._exit(0)
    os.close(write)
    reported = b""
    while chunk := os.read(read, 64):
        reported += chunk
    os.close(read)
    os.waitpid(pid, 0)
    assert reported, "the child reported nothing"
    return int(reported)


def test_forked_child_uses_its_own_connection(app: Any) -> None:
    with app.app_context():
        session = db.session()
        parent_id = session.scalar(text("SELECT CONNECTION_ID()"))  # the session now holds a connection
        # the child: report the connection its session uses
        assert in_forked_child(lambda: db.session().scalar(text("SELECT CONNECTION_ID()"))) != parent_id
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


def _probe_table() -> Any:
    from sqlalchemy import BigInteger, Column, MetaData, String, Table

    from backend.platform.db import UTCDateTime

    return Table(
        "probe_insert_row",
        MetaData(),
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("key", String(32), unique=True, nullable=False),
        Column("at", UTCDateTime, nullable=False),
    )


def test_autocommit_connection_is_kept_and_replaced_when_it_breaks(app: Any) -> None:
    """`db.autocommit()` keeps its connection for the next block; a duplicate key leaves it in
    place, a connection the server dropped is replaced, and `insert_row` writes through the
    columns' types (UTCDateTime: naive times refused, aware ones stored as UTC)."""
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy.exc import DBAPIError, IntegrityError

    from backend.platform.db import insert_row, is_duplicate_key

    table = _probe_table()
    with app.app_context():
        table.drop(db.engine, checkfirst=True)
        table.create(db.engine)
        try:
            with db.autocommit() as conn:
                first = conn.scalar(text("SELECT CONNECTION_ID()"))
                shanghai = datetime(2026, 12, 4, 20, 0, tzinfo=timezone(timedelta(hours=8)))
                row_id = insert_row(conn, table, {"key": "a", "at": shanghai})
            with db.autocommit() as conn:
                assert conn.scalar(text("SELECT CONNECTION_ID()")) == first
                stored = conn.execute(text("SELECT `at` FROM probe_insert_row WHERE id = :id"), {"id": row_id}).scalar()
                assert stored == datetime(2026, 12, 4, 12, 0)  # naive UTC in the column

            with pytest.raises(IntegrityError) as duplicate, db.autocommit() as conn:
                insert_row(conn, table, {"key": "a", "at": datetime.now(UTC)})
            assert is_duplicate_key(duplicate.value)
            with pytest.raises(ValueError, match="naive"), db.autocommit() as conn:
                assert conn.scalar(text("SELECT CONNECTION_ID()")) == first  # kept after the duplicate
                insert_row(conn, table, {"key": "b", "at": datetime(2026, 12, 4)})

            with db.autocommit() as conn:  # the naive time's block closed its connection: a fresh one
                second = conn.scalar(text("SELECT CONNECTION_ID()"))
            assert second != first
            with db.engine.connect() as other:
                other.execute(text(f"KILL {int(second)}"))
            with pytest.raises(DBAPIError), db.autocommit() as conn:
                insert_row(conn, table, {"key": "c", "at": datetime.now(UTC)})
            with db.autocommit() as conn:
                assert conn.scalar(text("SELECT CONNECTION_ID()")) not in (first, second)
                insert_row(conn, table, {"key": "c", "at": datetime.now(UTC)})
                keys = conn.execute(text("SELECT `key` FROM probe_insert_row ORDER BY id")).scalars().all()
            assert keys == ["a", "c"]
        finally:
            table.drop(db.engine, checkfirst=True)


def test_forked_child_does_not_reuse_a_kept_autocommit_connection(app: Any) -> None:
    with app.app_context():
        with db.autocommit() as conn:
            parent_id = conn.scalar(text("SELECT CONNECTION_ID()"))

        def child_connection() -> int:
            with db.autocommit() as conn:
                return int(conn.scalar(text("SELECT CONNECTION_ID()")))

        assert in_forked_child(child_connection) != parent_id
        with db.autocommit() as conn:
            assert conn.scalar(text("SELECT CONNECTION_ID()")) == parent_id


def test_kept_autocommit_connections_the_server_dropped_are_all_replaced(app: Any, monkeypatch: Any) -> None:
    """A restart (here: KILL) drops every kept connection at once. The first block on one of
    them fails; its retry gets a new connection, not the next dead one. A connection kept longer
    than KEEP_IDLE_SECONDS is not reused at all."""
    from sqlalchemy.exc import DBAPIError

    from backend.platform import db as db_module

    with app.app_context():
        with db.autocommit() as first, db.autocommit() as second:  # two kept connections
            ids = {first.scalar(text("SELECT CONNECTION_ID()")), second.scalar(text("SELECT CONNECTION_ID()"))}
        assert len(ids) == 2
        with db.engine.connect() as other:
            for connection_id in ids:
                other.execute(text(f"KILL {int(connection_id)}"))
        with pytest.raises(DBAPIError), db.autocommit() as conn:
            conn.scalar(text("SELECT CONNECTION_ID()"))
        with db.autocommit() as conn:  # the retry
            fresh = conn.scalar(text("SELECT CONNECTION_ID()"))
        assert fresh not in ids

        monkeypatch.setattr(db_module, "KEEP_IDLE_SECONDS", 0.0)
        with db.autocommit() as conn:
            assert conn.scalar(text("SELECT CONNECTION_ID()")) != fresh  # idle too long: replaced
