"""The baseline: a bare Flask endpoint doing the timeline read with PyMySQL directly.

No flask-smorest, no SQLAlchemy, no auth, no scope check, no marshmallow: it runs exactly the
keyset SELECT that `backend.touchpoints.service.timeline` emits (the runner checks, before
measuring, that the SQL text is the app's and that both answer the same items) and returns the
same JSON (`items` with the TouchpointSchema fields, `next_cursor`). Whatever the app spends
above this is the cost of the full stack.

Served by gunicorn exactly like the app: `gunicorn bench.baseline_app:app`. Settings from the
environment: BENCH_DATABASE_URL (mysql+pymysql://user[:password]@host:port/db).
"""

from __future__ import annotations

import base64
import json
import os
import threading
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import pymysql
from flask import Flask, Response, jsonify, request

# The statements the app emits (SQLAlchemy, MariaDB dialect, pyformat parameters), verbatim up to
# whitespace; the runner compares them with what the app actually sends before measuring.
COLUMNS = (
    "touchpoint.id, touchpoint.occurred_at, touchpoint.recorded_at, touchpoint.customer_id, "
    "touchpoint.advisor_id, touchpoint.store_id, touchpoint.channel, touchpoint.kind, touchpoint.source, "
    "touchpoint.source_ref, touchpoint.payload"
)
SQL_FIRST_PAGE = (
    f"SELECT {COLUMNS} FROM touchpoint WHERE touchpoint.customer_id = %(customer_id_1)s "
    "ORDER BY touchpoint.occurred_at DESC, touchpoint.id DESC LIMIT %(param_1)s"
)
SQL_NEXT_PAGE = (
    f"SELECT {COLUMNS} FROM touchpoint WHERE touchpoint.customer_id = %(customer_id_1)s "
    "AND (touchpoint.occurred_at < %(occurred_at_1)s OR touchpoint.occurred_at = %(occurred_at_2)s "
    "AND touchpoint.id < %(id_1)s) ORDER BY touchpoint.occurred_at DESC, touchpoint.id DESC LIMIT %(param_1)s"
)


def _connect_args(url: str) -> dict:
    u = urlsplit(url.replace("mysql+pymysql://", "mysql://", 1))
    return {
        "host": u.hostname or "127.0.0.1",
        "port": u.port or 3306,
        "user": unquote(u.username or "root"),
        "password": unquote(u.password or ""),
        "database": u.path.lstrip("/"),
        "charset": "utf8mb4",
        # The app's engine runs READ COMMITTED; the baseline has no unit of work, one statement.
        "init_command": "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "autocommit": True,
    }


def _encode_cursor(occurred_at: datetime, ident: int) -> str:
    raw = f"{occurred_at.isoformat()}|{ident}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    when, _, ident = raw.partition("|")
    return datetime.fromisoformat(when).astimezone(UTC).replace(tzinfo=None), int(ident)


def create_app(url: str | None = None) -> Flask:
    app = Flask("dealerloop_bench_baseline")
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # as the app does
    connect_args = _connect_args(url or os.environ["BENCH_DATABASE_URL"])
    local = threading.local()  # one persistent connection per gunicorn thread

    def query(sql: str, params: dict) -> list[tuple]:
        for attempt in (1, 2):
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = pymysql.connect(**connect_args)
            try:
                with conn.cursor() as cur:
                    cur.execute(sql, params)
                    return list(cur.fetchall())
            except pymysql.err.OperationalError:
                local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @app.get("/baseline/customers/<int:customer_id>/timeline")
    def timeline(customer_id: int):  # type: ignore[no-untyped-def]
        limit = int(request.args.get("limit", 20))
        cursor = request.args.get("cursor")
        params: dict = {"customer_id_1": customer_id, "param_1": limit + 1}
        if cursor:
            at, ident = _decode_cursor(cursor)
            params.update(occurred_at_1=at, occurred_at_2=at, id_1=ident)
            rows = query(SQL_NEXT_PAGE, params)
        else:
            rows = query(SQL_FIRST_PAGE, params)
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = _encode_cursor(last[1].replace(tzinfo=UTC), last[0])
        items = [
            {
                "id": r[0],
                "occurred_at": r[1].replace(tzinfo=UTC).isoformat(),
                "kind": r[7],
                "channel": r[6],
                "advisor_id": r[4],
                "store_id": r[5],
                "source": r[8],
                "payload": None if r[10] is None else json.loads(r[10]),
            }
            for r in rows[:limit]
        ]
        return jsonify({"items": items, "next_cursor": next_cursor})

    # Bare callback endpoints (paynotify, wecomcallback): read the body, answer as the protocol
    # wants, nothing else — the floor of an HTTP callback on this server setup.
    @app.post("/baseline/wechatpay/payment")
    def bare_pay_notify():  # type: ignore[no-untyped-def]
        request.get_data()
        return Response(status=204)

    @app.post("/baseline/wecom")
    def bare_wecom_callback():  # type: ignore[no-untyped-def]
        request.get_data()
        return Response("success", status=200, mimetype="text/plain")

    @app.get("/baseline/healthz")
    def bare_health():  # type: ignore[no-untyped-def]
        return Response("ok", status=200, mimetype="text/plain")

    return app


app = create_app() if os.environ.get("BENCH_DATABASE_URL") else None
