"""The audit log: who did what to which object (phone reveals, merges, imports, role changes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from backend.platform.actors import Actor
from backend.platform.db import Base, BigId, utcnow


class AuditLog(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_type: Mapped[str] = mapped_column(String(16))  # staff | member | system
    actor_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict | None] = mapped_column(default=None)


def write_audit(
    session: Session, actor: Actor, action: str, object_type: str, object_id: Any, detail: dict | None = None
) -> AuditLog:
    entry = AuditLog(
        actor_type=actor.kind,
        actor_id=str(actor.ident),
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        detail=detail,
    )
    session.add(entry)
    return entry
