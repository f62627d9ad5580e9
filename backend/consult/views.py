"""Serialising conversations and messages for both APIs (one place, no N+1: a page of
conversations loads its advisors and unread counts with one query each)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.consult import service
from backend.consult.models import Conversation, Message, Sender
from backend.org.models import Staff
from backend.platform.db import utcnow

_STAFF_FIELDS = (
    "customer_id",
    "claimed_at",
    "awaiting_since",
    "due_at",
    "first_response_at",
    "first_response_seconds",
    "first_response_business_seconds",
    "response_count",
    "resolution_seconds",
    "resolution_business_seconds",
    "closed_by",
    "reopened_count",
    "transfer_count",
)


def conversations(
    session: Session, rows: list[Conversation], side: Sender, names: dict[int, str | None] | None = None
) -> list[dict[str, Any]]:
    advisor_ids = sorted({c.advisor_id for c in rows if c.advisor_id})
    advisors = (
        dict(session.execute(select(Staff.id, Staff.name).where(Staff.id.in_(advisor_ids))).all())
        if advisor_ids
        else {}
    )
    unread = service.unread_counts(session, rows, side)
    now = utcnow()
    out = []
    for c in rows:
        view: dict[str, Any] = {
            "id": c.id,
            "topic": c.topic,
            "car_id": c.car_id,
            "store_id": c.store_id,
            "advisor": {"id": c.advisor_id, "name": advisors.get(c.advisor_id)} if c.advisor_id else None,
            "status": c.status,
            "created_at": c.created_at,
            "last_message_at": c.last_message_at,
            "last_excerpt": c.last_excerpt,
            "closed_at": c.closed_at,
            "unread": unread.get(c.id, 0),
            "other_side_read_message_id": c.staff_read_message_id if side == Sender.OWNER else c.owner_read_message_id,
        }
        if side == Sender.STAFF:
            view.update({name: getattr(c, name) for name in _STAFF_FIELDS})
            view["customer_name"] = (names or {}).get(c.id)
            view["overdue"] = c.status == "open" and c.due_at is not None and c.due_at <= now
        out.append(view)
    return out


def conversation(session: Session, row: Conversation, side: Sender) -> dict[str, Any]:
    names = None
    if side == Sender.STAFF:
        from backend.customers.models import Customer

        names = {row.id: session.scalar(select(Customer.name).where(Customer.id == row.customer_id))}
    return conversations(session, [row], side, names)[0]


def messages(conversation: Conversation, rows: list[Message]) -> list[dict[str, Any]]:
    out = []
    for m in rows:
        other_mark = (
            conversation.staff_read_message_id if m.sender == Sender.OWNER else conversation.owner_read_message_id
        )
        out.append(
            {
                "id": m.id,
                "conversation_id": m.conversation_id,
                "sender": m.sender,
                "staff_id": m.staff_id,
                "kind": m.kind,
                "text": m.text,
                "ref": m.ref,
                "client_id": m.client_id,
                "created_at": m.created_at,
                "read": m.id <= other_mark,
            }
        )
    return out
