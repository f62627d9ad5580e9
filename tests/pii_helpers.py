"""Where a phone number sits in clear: every column of every table, and every captured log
record (the scan tests/test_phone_requests_leave_no_number_in_clear.py started with)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.models import metadata
from backend.platform.audit import AuditLog


def clear_copies(db_session: Any, caplog: Any, *numbers: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for number in numbers:
        for r in caplog.records:
            if number in r.getMessage():
                found.setdefault("log", []).append(r.getMessage()[:200])
    db_session.expire_all()
    for table in metadata.sorted_tables:
        for row in db_session.execute(table.select()).mappings():
            for column, value in row.items():
                raw = value if isinstance(value, bytes) else str(value).encode()
                if any(number.encode() in raw for number in numbers):
                    found.setdefault(f"{table.name}.{column}", str(value)[:200])
    return found


def reveals(db_session: Any, kind: str) -> list[tuple[str, str, str]]:
    """The audit rows of full-text reveals of `kind`: (actor id, object type, object id)."""
    db_session.expire_all()
    rows = db_session.execute(
        select(AuditLog.actor_id, AuditLog.object_type, AuditLog.object_id).where(
            AuditLog.action == "text.phone_revealed", AuditLog.object_type == kind
        )
    ).all()
    return [tuple(r) for r in rows]
