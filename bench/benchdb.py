"""Throw-away MariaDB databases for the write benchmarks (flashsale, paynotify, wecomcallback).

Each benchmark gets its own database, named after BENCH_DATABASE_URL's plus a suffix
(`dealerloop_bench_flash`, ...), rebuilt at every run with the project's Alembic migrations: a
write benchmark leaves orders, ledgers and events behind, so a cached dataset is worthless. A
database is only dropped when it is one the bench created (it carries a `bench_meta` row saying
so) or does not exist; anything else with the same name stops the run.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pymysql
from sqlalchemy.engine import make_url

from bench import datagen

OWNER_MARK = "dealerloop-bench"


def url_for(suffix: str) -> str:
    """BENCH_DATABASE_URL with `_<suffix>` appended to the database name."""
    u = make_url(datagen.database_url())
    name = f"{u.database}_{suffix}"
    if not name.startswith("dealerloop_bench") or not name.replace("_", "").isalnum():
        raise SystemExit(f"refusing an odd bench database name: {name!r}")
    return u.set(database=name).render_as_string(hide_password=False)


def _owned_or_absent(cur: Any, name: str) -> bool:
    cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
    if cur.fetchone() is None:
        return True
    cur.execute(
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'bench_meta'", (name,)
    )
    if not cur.fetchone()[0]:
        return False
    cur.execute(f"SELECT v FROM `{name}`.bench_meta WHERE k = 'owner'")
    row = cur.fetchone()
    return bool(row and row[0] == OWNER_MARK)


def recreate(url: str, purpose: str) -> float:
    """Drop (if ours) and create the database, build the schema with the migrations. Seconds taken."""
    from backend.platform.db import make_engine
    from backend.platform.migrate import head_revision, upgrade

    started = time.perf_counter()
    name = make_url(url).database
    assert name
    server = datagen._connect(url, database=False)
    try:
        with server.cursor() as cur:
            if not _owned_or_absent(cur, name):
                raise SystemExit(
                    f"database {name} exists and was not created by the bench (no bench_meta owner row); "
                    "not dropping it. Choose another BENCH_DATABASE_URL."
                )
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            cur.execute(f"CREATE TABLE `{name}`.bench_meta (k VARCHAR(64) PRIMARY KEY, v TEXT NOT NULL)")
            cur.execute(
                f"INSERT INTO `{name}`.bench_meta (k, v) VALUES ('owner', %s), ('created', %s)",
                (
                    OWNER_MARK,
                    json.dumps(
                        {"purpose": purpose, "at": datetime.now(UTC).isoformat(), "alembic_head": head_revision()}
                    ),
                ),
            )
        server.commit()
    finally:
        server.close()
    engine = make_engine(datagen._sqlalchemy_url(url))
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return time.perf_counter() - started


def connect(url: str, *, autocommit: bool = True) -> pymysql.Connection:
    u = make_url(url)
    return pymysql.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 3306,
        user=u.username or "root",
        password=u.password or "",
        database=u.database,
        charset="utf8mb4",
        autocommit=autocommit,
        init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",  # as the app's engine
    )


def scalar(url: str, sql: str, params: tuple = ()) -> Any:
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        conn.close()


def environment(url: str) -> dict[str, Any]:
    """What the README's "Latest run" line needs (the same fields as the timeline's)."""
    import os
    import platform
    import sys

    from bench import timeline

    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION(), @@innodb_buffer_pool_size, @@innodb_flush_log_at_trx_commit")
            version, pool, flush = cur.fetchone()
    finally:
        conn.close()
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": timeline._versions(),
        "git_commit": timeline._git_commit(),
        "server_version": version,
        "innodb_buffer_pool_mb": int(pool) // (1024 * 1024),
        "innodb_flush_log_at_trx_commit": int(flush),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def capture_sql(app: Any, fn: Any) -> list[str]:
    """The statements (and COMMIT / ROLLBACK) the app sends to MariaDB while `fn()` runs
    in-process, after-commit work (the outbox relay) included. Statements are taken where the
    driver executes them (PyMySQL's cursor), so a write made straight on a DBAPI cursor
    (backend.platform.db.insert_row) is counted like SQLAlchemy's; the transaction ends come
    from the engines' events (the driver sends those without a cursor)."""
    import pymysql.cursors
    from sqlalchemy import event

    from backend.platform.db import db

    statements: list[str] = []
    cursor_class = pymysql.cursors.Cursor
    plain_execute, plain_executemany = cursor_class.execute, cursor_class.executemany

    inside_many = [False]  # PyMySQL's executemany sends its rows through execute: counted once

    def execute(cursor: Any, query: str, args: Any = None) -> Any:
        if not inside_many[0]:
            statements.append(" ".join(query.split()))
        return plain_execute(cursor, query, args)

    def executemany(cursor: Any, query: str, args: Any) -> Any:
        statements.append(" ".join(query.split()))
        inside_many[0] = True
        try:
            return plain_executemany(cursor, query, args)
        finally:
            inside_many[0] = False

    def on(name: str) -> Any:
        return lambda *_a: statements.append(name)

    hooks = [("commit", on("COMMIT")), ("rollback", on("ROLLBACK"))]
    engines = [e for e in (db.engine, db.autocommit_engine) if e is not None]
    for engine in engines:
        for name, hook in hooks:
            event.listen(engine, name, hook)
    cursor_class.execute, cursor_class.executemany = execute, executemany  # type: ignore[method-assign]
    try:
        fn()
    finally:
        cursor_class.execute, cursor_class.executemany = plain_execute, plain_executemany  # type: ignore[method-assign]
        for engine in engines:
            for name, hook in hooks:
                event.remove(engine, name, hook)
    return statements
