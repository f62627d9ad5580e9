"""Client Idempotency-Key on create endpoints.

Same key + same request → the stored response, replayed; same key + different request → 422;
the key row is written in the request's own transaction, so a request that fails leaves no
trace and may be retried, and two concurrent submits serialise on the unique key.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Response, g, request
from sqlalchemy import String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, mapped_column

from backend.platform.db import Base, BigId, DuplicateKey, ExactString, db, unique_savepoint, utcnow
from backend.platform.errors import AppError

HEADER = "Idempotency-Key"


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("actor", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(ExactString(128))  # byte for byte: "KeyA" and "keya" are two keys
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int | None] = mapped_column(default=None)
    response_body: Mapped[dict | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def _request_hash() -> str:
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.path}\n".encode())
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def idempotent(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Place directly under `@blp.route` so it sees the serialised response."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(HEADER, "").strip()
        if not key:
            return fn(*args, **kwargs)
        if len(key) > 128:
            raise AppError("request.invalid", 422, errors={"headers": {HEADER: ["at most 128 characters"]}})
        actor_ref = g.get("idempotency_owner") or "anonymous"  # set by the authentication
        session = db.session()
        record = IdempotencyRecord(actor=actor_ref, key=key, request_hash=_request_hash())
        try:
            with unique_savepoint(session):
                session.add(record)
        except DuplicateKey as exc:
            existing = session.scalars(
                select(IdempotencyRecord).where(IdempotencyRecord.actor == actor_ref, IdempotencyRecord.key == key)
            ).one()
            if existing.request_hash != record.request_hash:
                raise AppError("request.idempotency_key_reused", 422) from exc
            if existing.response_status is None:
                raise AppError("request.idempotency_in_progress", 409) from exc
            replay = Response(
                json.dumps(existing.response_body, ensure_ascii=False),
                status=existing.response_status,
                mimetype="application/json",
            )
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        response = fn(*args, **kwargs)
        record.response_status = response.status_code
        record.response_body = response.get_json(silent=True)
        return response

    return wrapper
