"""Models of events (活动): an event, the owners' sign-ups (registrations) and check-in scans.

An `event` is organised by an org unit — a store, a region or the group (`org_unit_id`) — and
may take place at a store (`store_id`, where staff check people in) or elsewhere (`place`). Its
seat counter (`seats_taken`, every seat held: confirmed, awaiting payment, offered, checked in)
only moves by conditional updates or under the event row's lock, never read-modify-write;
`waitlist_count` is how many wait now and `waitlist_seq` the last waitlist ticket handed out,
so positions follow the order people joined.

A `event_registration` is one owner's sign-up for `party_size` seats. At most one active
sign-up per owner and event: `active_customer_id` is the customer id while the sign-up is
active and NULL once it ends (cancelled, expired), under a unique key with the event id
(MariaDB has no partial unique index; NULLs never collide).

An `event_checkin_scan` is one scan of a member's rotating QR at an event: the nonce is unique
per event, and the result (success or a refusal code) is stored, so the same scan replayed
answers the same result.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.platform.db import Base, BigId, ExactString, StrEnumType, TimestampMixin, utcnow


class EventStatus(enum.StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    CANCELLED = "cancelled"


class FeeKind(enum.StrEnum):
    FREE = "free"
    POINTS = "points"
    CASH = "cash"


class RegistrationState(enum.StrEnum):
    PENDING_PAYMENT = "pending_payment"  # a seat held until the payment window closes
    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    OFFERED = "offered"  # a freed seat held for this owner until `offer_expires_at`
    CANCELLED = "cancelled"  # by the owner, or by the store (`cancelled_by`)
    EXPIRED = "expired"  # an offer not taken up, or a payment hold not paid
    CHECKED_IN = "checked_in"
    NO_SHOW = "no_show"


# States that hold seats of the event's counter.
SEAT_STATES = (
    RegistrationState.PENDING_PAYMENT,
    RegistrationState.CONFIRMED,
    RegistrationState.OFFERED,
    RegistrationState.CHECKED_IN,
)
ACTIVE_STATES = (*SEAT_STATES, RegistrationState.WAITLISTED)


class Event(Base, TimestampMixin):
    __tablename__ = "event"
    __table_args__ = (
        Index("ix_event_status_starts", "status", "starts_at"),
        Index("ix_event_org_unit", "org_unit_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))  # organiser: store, region, group
    store_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), default=None)  # venue store
    title: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(2000), default=None)
    place: Mapped[str] = mapped_column(String(255))
    status: Mapped[EventStatus] = mapped_column(StrEnumType(EventStatus, 16), default=EventStatus.DRAFT)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    signup_opens_at: Mapped[datetime]
    signup_closes_at: Mapped[datetime]
    cancel_cutoff_at: Mapped[datetime]
    checkin_opens_at: Mapped[datetime]
    checkin_closes_at: Mapped[datetime]
    capacity: Mapped[int]
    seats_taken: Mapped[int] = mapped_column(default=0)
    max_party_size: Mapped[int] = mapped_column(default=1)
    waitlist_limit: Mapped[int | None] = mapped_column(default=None)  # None: no limit
    waitlist_count: Mapped[int] = mapped_column(default=0)
    waitlist_seq: Mapped[int] = mapped_column(default=0)
    eligible_tiers: Mapped[list] = mapped_column(default=list)  # empty: every tier
    # No foreign key: the segment table comes in a later migration (0012); checked on write.
    segment_id: Mapped[int | None] = mapped_column(default=None)
    fee_kind: Mapped[FeeKind] = mapped_column(StrEnumType(FeeKind, 8), default=FeeKind.FREE)
    fee_points: Mapped[int] = mapped_column(default=0)  # per seat
    fee_fen: Mapped[int] = mapped_column(default=0)  # per seat
    attendance_points: Mapped[int] = mapped_column(default=0)  # per sign-up checked in
    created_by_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_reason: Mapped[str | None] = mapped_column(String(255), default=None)
    reminded_at: Mapped[datetime | None] = mapped_column(default=None)
    no_shows_marked_at: Mapped[datetime | None] = mapped_column(default=None)


class EventRegistration(Base, TimestampMixin):
    __tablename__ = "event_registration"
    __table_args__ = (
        UniqueConstraint("event_id", "active_customer_id"),
        Index("ix_event_registration_event_state", "event_id", "state", "waitlist_seq"),
        Index("ix_event_registration_customer", "customer_id", "id"),
        Index("ix_event_registration_offer", "state", "offer_expires_at"),
        Index("ix_event_registration_hold", "state", "hold_expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("event.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    active_customer_id: Mapped[int | None] = mapped_column(default=None)
    state: Mapped[RegistrationState] = mapped_column(StrEnumType(RegistrationState, 16))
    party_size: Mapped[int] = mapped_column(default=1)
    waitlist_seq: Mapped[int | None] = mapped_column(default=None)  # ticket: the order of joining
    offer_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    hold_expires_at: Mapped[datetime | None] = mapped_column(default=None)  # payment window
    fee_points: Mapped[int] = mapped_column(default=0)  # what this sign-up costs, fixed at sign-up
    fee_fen: Mapped[int] = mapped_column(default=0)
    points_ledger_id: Mapped[int | None] = mapped_column(default=None)  # the spend, restored on cancel
    payment_order_id: Mapped[int | None] = mapped_column(default=None)  # the paid order
    confirmed_at: Mapped[datetime | None] = mapped_column(default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)
    cancelled_by: Mapped[str | None] = mapped_column(String(16), default=None)  # owner | store | system
    checked_in_at: Mapped[datetime | None] = mapped_column(default=None)
    checked_in_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
    version: Mapped[int] = mapped_column(default=1)


class EventCheckinScan(Base):
    __tablename__ = "event_checkin_scan"
    __table_args__ = (UniqueConstraint("event_id", "nonce"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("event.id"))
    nonce: Mapped[str] = mapped_column(ExactString(64))
    token_hash: Mapped[str] = mapped_column(String(64), index=True)
    registration_id: Mapped[int | None] = mapped_column(default=None)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    store_id: Mapped[int | None] = mapped_column(default=None)
    result: Mapped[str] = mapped_column(String(48))  # "checked_in" or the refusal code
    status: Mapped[int] = mapped_column(default=200)  # the HTTP status answered
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
