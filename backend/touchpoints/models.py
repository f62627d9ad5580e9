from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.platform.db import Base, BigId


class Channel(enum.StrEnum):
    WECOM = "wecom"
    MINIPROGRAM = "miniprogram"
    STORE = "store"
    PHONE = "phone"
    SYSTEM = "system"


class Kind(enum.StrEnum):
    """The documented vocabulary. Add a kind here (and to the owner-visible / contact sets below
    if it belongs there); free-form kinds are refused so that KPIs can count on the names."""

    # identity and relationship
    MEMBER_REGISTERED = "member_registered"
    PHONE_BOUND = "phone_bound"
    CAR_BOUND = "car_bound"
    CAR_UPDATED = "car_updated"
    CAR_REMOVED = "car_removed"
    PROFILE_UPDATED = "profile_updated"
    CUSTOMER_MERGED = "customer_merged"
    CUSTOMER_UNMERGED = "customer_unmerged"
    ADVISOR_ASSIGNED = "advisor_assigned"
    # WeCom
    FRIEND_ADDED = "friend_added"
    FRIEND_DELETED_BY_CUSTOMER = "friend_deleted_by_customer"
    FRIEND_DELETED_BY_ADVISOR = "friend_deleted_by_advisor"
    FRIEND_TRANSFERRED = "friend_transferred"
    FRIEND_HALF_ADDED = "friend_half_added"
    FRIEND_EDITED = "friend_edited"
    FRIEND_RECONCILED = "friend_reconciled"
    TRANSFER_STARTED = "transfer_started"  # a handover accepted by WeCom, takeover pending
    TRANSFER_FAILED = "transfer_failed"
    LOST_CUSTOMER_ALERTED = "lost_customer_alerted"
    WELCOME_SENT = "welcome_sent"
    TAG_ADDED = "tag_added"
    TAG_REMOVED = "tag_removed"
    GROUP_JOINED = "group_joined"
    GROUP_LEFT = "group_left"
    MESSAGE_SENT = "message_sent"
    MESSAGE_RECEIVED = "message_received"
    SCRIPT_SENT = "script_sent"
    CONTENT_SHARED = "content_shared"
    CONTENT_OPENED = "content_opened"
    # advisor work
    CALL_LOGGED = "call_logged"
    VISIT_INVITED = "visit_invited"
    FOLLOW_UP_DONE = "follow_up_done"
    # owner app
    NOTICE_SENT = "notice_sent"  # a subscribe message that reached the owner
    # booking (维修保养预约)
    BOOKING_CREATED = "booking_created"
    BOOKING_RESCHEDULED = "booking_rescheduled"
    BOOKING_CANCELLED = "booking_cancelled"
    ARRIVED = "arrived"
    BOOKING_STARTED = "booking_started"
    SERVICE_COMPLETED = "service_completed"
    NO_SHOW = "no_show"
    BOOKING_UNDONE = "booking_undone"

    # consultation (在线咨询)
    CONSULT_OPENED = "consult_opened"
    CONSULT_MESSAGE = "consult_message"
    CONSULT_RESPONDED = "consult_responded"  # an advisor's answer to a waiting owner (response time in payload)
    CONSULT_CLAIMED = "consult_claimed"
    CONSULT_TRANSFERRED = "consult_transferred"
    CONSULT_CLOSED = "consult_closed"
    CONSULT_REOPENED = "consult_reopened"

    # leads (线索)
    LEAD_CREATED = "lead_created"
    LEAD_ASSIGNED = "lead_assigned"
    LEAD_STATUS_CHANGED = "lead_status_changed"
    LEAD_ESCALATED = "lead_escalated"

    PAYMENT_CREATED = "payment_created"
    PAYMENT_SUCCEEDED = "payment_succeeded"
    PAYMENT_CLOSED = "payment_closed"
    REFUND_SUCCEEDED = "refund_succeeded"
    POINTS_EARNED = "points_earned"
    POINTS_SPENT = "points_spent"
    POINTS_EXPIRED = "points_expired"
    POINTS_REVERSED = "points_reversed"
    POINTS_ADJUSTED = "points_adjusted"
    MALL_REDEEMED = "mall_redeemed"
    MALL_CANCELLED = "mall_cancelled"
    PACKAGE_ACTIVATED = "package_activated"
    PACKAGE_USED = "package_used"
    PACKAGE_REFUNDED = "package_refunded"

    # offers (优惠券)
    COUPON_CLAIMED = "coupon_claimed"
    COUPON_ISSUED = "coupon_issued"  # pushed, given by staff, automatic, exchanged
    COUPON_USED = "coupon_used"
    COUPON_RELEASED = "coupon_released"
    COUPON_EXPIRED = "coupon_expired"
    COUPON_REVERSED = "coupon_reversed"

    # events (活动)
    EVENT_SIGNED_UP = "event_signed_up"
    EVENT_WAITLISTED = "event_waitlisted"
    EVENT_SEAT_OFFERED = "event_seat_offered"
    EVENT_CANCELLED = "event_cancelled"
    EVENT_CHECKED_IN = "event_checked_in"
    EVENT_NO_SHOW = "event_no_show"

    # campaigns (营销活动)
    CAMPAIGN_POINTS_GRANTED = "campaign_points_granted"

    SIGNED_IN = "signed_in"
    TIER_CHANGED = "tier_changed"


# Interactions between an advisor / the store and the customer: these move "last contact".
CONTACT_KINDS = frozenset(
    {
        Kind.FRIEND_ADDED,
        Kind.MESSAGE_SENT,
        Kind.MESSAGE_RECEIVED,
        Kind.SCRIPT_SENT,
        Kind.CONTENT_SHARED,
        Kind.CALL_LOGGED,
        Kind.VISIT_INVITED,
        Kind.FOLLOW_UP_DONE,
        Kind.CONSULT_MESSAGE,
        Kind.ARRIVED,
        Kind.SERVICE_COMPLETED,
        Kind.EVENT_CHECKED_IN,
    }
)
# Being physically at a store.
VISIT_KINDS = frozenset({Kind.ARRIVED, Kind.SERVICE_COMPLETED, Kind.EVENT_CHECKED_IN})
# What an owner sees in their own activity feed (advisor-internal work is not shown).
OWNER_VISIBLE_KINDS = frozenset(
    {
        Kind.MEMBER_REGISTERED,
        Kind.PHONE_BOUND,
        Kind.CAR_BOUND,
        Kind.CAR_UPDATED,
        Kind.CAR_REMOVED,
        Kind.PROFILE_UPDATED,
        Kind.FRIEND_ADDED,
        Kind.CONSULT_MESSAGE,
        Kind.BOOKING_CREATED,
        Kind.BOOKING_RESCHEDULED,
        Kind.BOOKING_CANCELLED,
        Kind.ARRIVED,
        Kind.SERVICE_COMPLETED,
        Kind.PAYMENT_SUCCEEDED,
        Kind.REFUND_SUCCEEDED,
        Kind.POINTS_EARNED,
        Kind.POINTS_SPENT,
        Kind.POINTS_EXPIRED,
        Kind.POINTS_REVERSED,
        Kind.POINTS_ADJUSTED,
        Kind.MALL_REDEEMED,
        Kind.MALL_CANCELLED,
        Kind.PACKAGE_ACTIVATED,
        Kind.PACKAGE_USED,
        Kind.PACKAGE_REFUNDED,
        Kind.COUPON_CLAIMED,
        Kind.COUPON_USED,
        Kind.EVENT_SIGNED_UP,
        Kind.EVENT_CHECKED_IN,
        Kind.LEAD_CREATED,
        Kind.SIGNED_IN,
        Kind.TIER_CHANGED,
    }
)


class Touchpoint(Base):
    __tablename__ = "touchpoint"
    __table_args__ = (
        # The timeline reads newest-first per customer with a keyset on (occurred_at, id).
        Index("ix_touchpoint_customer_time", "customer_id", "occurred_at", "id"),
        Index("ix_touchpoint_advisor_time", "advisor_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    advisor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), default=None)
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(32))
    # Unique: a retried callback or job that records the same thing again is a no-op.
    source_ref: Mapped[str] = mapped_column(String(191), unique=True)
    payload: Mapped[dict | None] = mapped_column(default=None)


class CustomerProfile(Base):
    """Projection of the touchpoints, kept current by `record` and rebuildable from scratch."""

    __tablename__ = "customer_profile"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), primary_key=True)
    touchpoint_count: Mapped[int] = mapped_column(default=0)
    last_touch_at: Mapped[datetime | None] = mapped_column(default=None)
    last_contact_at: Mapped[datetime | None] = mapped_column(default=None)
    # The advisor of the latest contact that had one (a store visit may have no advisor).
    last_contact_advisor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
    last_advisor_contact_at: Mapped[datetime | None] = mapped_column(default=None)
    last_store_visit_at: Mapped[datetime | None] = mapped_column(default=None)
    last_store_visit_store_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), default=None)


class CustomerKindCount(Base):
    """Touchpoint counts by kind, one row per (customer, kind) so that concurrent writers only
    increment a counter and never rewrite each other's JSON."""

    __tablename__ = "customer_kind_count"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)
