from __future__ import annotations

from typing import Any

from flask import current_app
from marshmallow import fields
from sqlalchemy import text

from backend.platform.api import Blueprint, OutputSchema, public
from backend.platform.db import db
from backend.platform.migrate import current_revision, head_revision

blp = Blueprint("ops", __name__, audience=None, description="Health checks")


class HealthSchema(OutputSchema):
    status = fields.String()


class ReadySchema(OutputSchema):
    status = fields.String(
        metadata={"description": "ready | degraded (Redis down: jobs wait in the outbox) | not_ready"}
    )
    checks = fields.Dict(keys=fields.String(), values=fields.String())


@blp.route("/healthz")
@public
@blp.response(200, HealthSchema)
def healthz() -> dict[str, str]:
    """The process is alive (no dependency is checked)."""
    return {"status": "ok"}


@blp.route("/readyz")
@public
@blp.response(200, ReadySchema)
@blp.alt_response(503, schema=ReadySchema, description="a dependency is not ready")
def readyz() -> Any:
    """Database reachable and migrations at head: ready (200). Redis is checked when configured,
    but its absence only degrades the node (200, `degraded`): every request still works — the
    jobs it would hand to RQ wait in the outbox, tokens are cached per process — and the load
    balancer probing this must not take every web node out during a Redis outage (the WeCom
    and WeChat Pay callbacks and every owner's write with them)."""
    checks: dict[str, str] = {}
    try:
        conn = db.session().connection()
        conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
        current = current_revision(conn)
        checks["migrations"] = "ok" if current == head_revision() else f"at {current}, head is {head_revision()}"
    except Exception as exc:  # any failure means "not ready", with the reason
        checks["database"] = f"error: {type(exc).__name__}"
    redis_client = current_app.extensions.get("dealerloop.redis")
    if redis_client is not None:
        try:
            redis_client.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    ready = checks.get("database") == "ok" and checks.get("migrations") == "ok"
    if not ready:
        return {"status": "not_ready", "checks": checks}, 503
    return {"status": "ready" if checks.get("redis", "ok") == "ok" else "degraded", "checks": checks}, 200
