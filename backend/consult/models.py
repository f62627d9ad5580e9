"""Models of consultations (在线咨询) between owners and advisors.

- `consult_conversation`: one thread about a topic, optionally about one of the owner's cars, at
  a store. `advisor_id` None means it waits in the store's queue to be claimed. While an owner
  message is unanswered, `awaiting_since` holds when that wait began and `due_at` the SLA
  deadline in the store's business time (the "overdue" inbox is `due_at <= now`). The first
  response and the latest resolution are kept on the row for per-conversation KPIs.
- `consult_message`: both directions; unique per (conversation, sender side, client id) so a
  retried send is stored once. Read receipts are the highest message id each side has read.
- `consult_response`: one fact row per answer to a waiting owner (Chatwoot's reporting events
  shape): who answered, when the wait began, wall-clock and business seconds, within the SLA —
  so advisor KPIs are plain SQL over this table.
- `consult_store_setting`: a store's SLA minutes (default from the CONSULT_SLA_MINUTES setting).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.platform.db import Base, BigId, ExactString, StrEnumType, TimestampMixin, utcnow


class Topic(enum.StrEnum):
    NEW_CAR = "new_car"
    USED_CAR = "used_car"
    SERVICE = "service"
    INSURANCE = "insurance"
    FINANCE = "finance"
    OTHER = "other"


# The customer's assigned advisor (customer_advisor.role) who gets a topic; "other" goes to the queue.
TOPIC_ROLE: dict[Topic, str | None] = {
    Topic.NEW_CAR: "sales_advisor",
    Topic.USED_CAR: "sales_advisor",
    Topic.SERVICE: "service_advisor",
    Topic.INSURANCE: "insurance_finance",
    Topic.FINANCE: "insurance_finance",
    Topic.OTHER: None,
}
TOPIC_LABEL = {
    Topic.NEW_CAR: "新车咨询",
    Topic.USED_CAR: "二手车咨询",
    Topic.SERVICE: "维修保养",
    Topic.INSURANCE: "保险咨询",
    Topic.FINANCE: "金融贷款",
    Topic.OTHER: "其他咨询",
}


class ConversationStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Sender(enum.StrEnum):
    OWNER = "owner"
    STAFF = "staff"


class MessageKind(enum.StrEnum):
    TEXT = "text"
    IMAGE = "image"
    CAR_CARD = "car_card"
    BOOKING_CARD = "booking_card"


class ResponseKind(enum.StrEnum):
    FIRST_RESPONSE = "first_response"
    REPLY = "reply"


class Conversation(Base, TimestampMixin):
    __tablename__ = "consult_conversation"
    __table_args__ = (
        Index("ix_consult_conversation_customer_id_id", "customer_id", "id"),
        Index("ix_consult_conversation_advisor_status", "advisor_id", "status", "last_message_at"),
        Index("ix_consult_conversation_store_status", "store_id", "status", "advisor_id"),
        Index("ix_consult_conversation_status_due", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    store_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    topic: Mapped[Topic] = mapped_column(StrEnumType(Topic, 16))
    car_id: Mapped[int | None] = mapped_column(ForeignKey("car.id"), default=None)
    advisor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
    status: Mapped[ConversationStatus] = mapped_column(StrEnumType(ConversationStatus, 16))
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    last_message_at: Mapped[datetime | None] = mapped_column(default=None)
    last_excerpt: Mapped[str | None] = mapped_column(String(64), default=None)
    awaiting_since: Mapped[datetime | None] = mapped_column(default=None)  # oldest unanswered owner message
    due_at: Mapped[datetime | None] = mapped_column(default=None)  # SLA deadline of that wait
    overdue_alerted_at: Mapped[datetime | None] = mapped_column(default=None)  # this wait's overdue alert went out
    first_message_at: Mapped[datetime | None] = mapped_column(default=None)
    first_response_at: Mapped[datetime | None] = mapped_column(default=None)
    first_response_seconds: Mapped[int | None] = mapped_column(default=None)
    first_response_business_seconds: Mapped[int | None] = mapped_column(default=None)
    response_count: Mapped[int] = mapped_column(default=0)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    closed_by: Mapped[str | None] = mapped_column(String(16), default=None)  # owner | staff
    closed_by_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
    resolution_seconds: Mapped[int | None] = mapped_column(default=None)
    resolution_business_seconds: Mapped[int | None] = mapped_column(default=None)
    reopened_count: Mapped[int] = mapped_column(default=0)
    transfer_count: Mapped[int] = mapped_column(default=0)
    owner_read_message_id: Mapped[int] = mapped_column(BigId, default=0)
    staff_read_message_id: Mapped[int] = mapped_column(BigId, default=0)


class Message(Base):
    __tablename__ = "consult_message"
    __table_args__ = (
        UniqueConstraint("conversation_id", "sender", "client_id"),
        Index("ix_consult_message_conversation_id_id", "conversation_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("consult_conversation.id"))
    sender: Mapped[Sender] = mapped_column(StrEnumType(Sender, 8))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
    kind: Mapped[MessageKind] = mapped_column(StrEnumType(MessageKind, 16))
    # Phone numbers in the text are masked; the text as typed is sealed alongside (platform/pii).
    text: Mapped[str | None] = mapped_column(String(1000), default=None)
    text_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    ref: Mapped[dict | None] = mapped_column(default=None)  # image ref, car / booking card
    client_id: Mapped[str | None] = mapped_column(ExactString(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Response(Base):
    __tablename__ = "consult_response"
    __table_args__ = (
        Index("ix_consult_response_advisor_time", "advisor_id", "responded_at"),
        Index("ix_consult_response_store_time", "store_id", "responded_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("consult_conversation.id"), index=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("consult_message.id"), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    advisor_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    store_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    kind: Mapped[ResponseKind] = mapped_column(StrEnumType(ResponseKind, 16))
    waiting_since: Mapped[datetime]
    responded_at: Mapped[datetime]
    seconds: Mapped[int]
    business_seconds: Mapped[int]
    sla_seconds: Mapped[int]
    within_sla: Mapped[bool]


class StoreSetting(Base):
    __tablename__ = "consult_store_setting"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"), unique=True)
    sla_minutes: Mapped[int]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
