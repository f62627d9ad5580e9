"""Coupon templates, the coupons issued from them, their claim counters and write-offs."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.platform.db import Base, BigId, ExactString, StrEnumType, utcnow


class CouponKind(enum.StrEnum):
    FIXED = "fixed"  # 立减 value_fen
    THRESHOLD = "threshold"  # 满 threshold_fen 减 value_fen
    PERCENT = "percent"  # percent_off % off, at most cap_fen
    VOUCHER = "voucher"  # a service (service_type) free of charge, e.g. labour of a basic maintenance
    GIFT = "gift"  # a gift handed over at the store (gift_name)


class CouponStatus(enum.StrEnum):
    UNUSED = "unused"
    LOCKED = "locked"  # held by an open payment order (locked_order_id) until it is paid or closed
    USED = "used"
    EXPIRED = "expired"


class AutoIssue(enum.StrEnum):
    """Moments a template is given automatically, once per member (its key says so)."""

    REGISTRATION = "registration"  # a new member's first login
    CAR_BOUND = "car_bound"  # the member's first car bound
    FIRST_PAID_ORDER = "first_paid_order"
    BIRTHDAY = "birthday"  # by the daily job, once a year
    TIER_UPGRADE = "tier_upgrade"  # each tier reached, once


class CouponTemplate(Base):
    __tablename__ = "coupon_template"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[CouponKind] = mapped_column(StrEnumType(CouponKind, 16))
    value_fen: Mapped[int] = mapped_column(default=0)
    threshold_fen: Mapped[int] = mapped_column(default=0)
    percent_off: Mapped[int] = mapped_column(default=0)
    cap_fen: Mapped[int] = mapped_column(default=0)
    service_type: Mapped[str | None] = mapped_column(String(32), default=None)
    gift_name: Mapped[str | None] = mapped_column(String(64), default=None)
    # The store that issues and funds it; None: the group's, usable at every store.
    store_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True, default=None)
    stock: Mapped[int]
    issued: Mapped[int] = mapped_column(default=0)  # taken by a conditional update, never above stock
    per_member_limit: Mapped[int] = mapped_column(default=1)
    claim_starts_at: Mapped[datetime]
    claim_ends_at: Mapped[datetime]
    # Use window: fixed dates, or use_days after the claim (then use_ends_at may still cap it).
    use_starts_at: Mapped[datetime | None] = mapped_column(default=None)
    use_ends_at: Mapped[datetime | None] = mapped_column(default=None)
    use_days: Mapped[int | None] = mapped_column(default=None)
    # Online use: the payment business types it applies to (service_package, mall_order, ...);
    # None: every type. A voucher or a gift is for the store counter only.
    business_types: Mapped[list | None] = mapped_column(default=None)
    item_ids: Mapped[list | None] = mapped_column(default=None)  # business ids (a package, a mall item); None: all
    brands: Mapped[list | None] = mapped_column(default=None)  # usable at stores serving one of them; None: all
    eligible_tiers: Mapped[list | None] = mapped_column(default=None)
    segment_id: Mapped[int | None] = mapped_column(default=None)
    car_brand: Mapped[str | None] = mapped_column(String(32), default=None)
    new_members_only: Mapped[bool] = mapped_column(default=False)
    # Stacking on one payment order: alone, with which other kinds, how many of this template.
    exclusive: Mapped[bool] = mapped_column(default=True)
    combinable_kinds: Mapped[list | None] = mapped_column(default=None)
    max_per_order: Mapped[int] = mapped_column(default=1)
    # Other ways to get it: an exchange code the member types (兑换码), or given automatically.
    exchange_code: Mapped[str | None] = mapped_column(String(32), unique=True, default=None)
    auto_issue_on: Mapped[AutoIssue | None] = mapped_column(StrEnumType(AutoIssue, 24), index=True, default=None)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CouponClaimCounter(Base):
    """Coupons a member holds of a template, counted under a conditional update so that
    concurrent claims cannot pass the per-member limit. Deliberately without a foreign key to
    customer: a merge leaves each side's counter where it was (it would collide on the key)."""

    __tablename__ = "coupon_claim_counter"
    __table_args__ = (UniqueConstraint("template_id", "customer_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # No foreign key to the template, on purpose: InnoDB's FK check takes a shared lock on the
    # parent row, and a claim's last step updates that row, so concurrent claims holding shared
    # locks would deadlock upgrading them. Templates are never deleted (only deactivated).
    template_id: Mapped[int] = mapped_column()
    customer_id: Mapped[int]
    claimed: Mapped[int] = mapped_column(default=0)


class Coupon(Base):
    __tablename__ = "coupon"
    __table_args__ = (Index("ix_coupon_customer_status", "customer_id", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    template_id: Mapped[int] = mapped_column(index=True)  # no foreign key: see CouponClaimCounter
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    code: Mapped[str] = mapped_column(String(12), unique=True)  # the 12-digit code shown in the app
    status: Mapped[CouponStatus] = mapped_column(StrEnumType(CouponStatus, 16), default=CouponStatus.UNUSED)
    source: Mapped[str] = mapped_column(String(16))  # claim | staff | push | auto | exchange | mall
    # What issued it, unique: a retried claim or grant cannot issue twice.
    issue_key: Mapped[str] = mapped_column(String(191), unique=True)
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    campaign_id: Mapped[int | None] = mapped_column(index=True, default=None)  # pushed for a campaign
    locked_order_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("payment_order.id"), index=True, default=None)
    discount_fen: Mapped[int | None] = mapped_column(default=None)  # taken off the order it is locked to


class CouponWriteOff(Base):
    """One scan confirmed at a store. The scan's nonce is unique, so the same scan submitted again
    answers this row; a manager's reversal keeps the row (reversed_*) and frees the coupon."""

    __tablename__ = "coupon_write_off"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    coupon_id: Mapped[int] = mapped_column(BigId, ForeignKey("coupon.id"), index=True)
    nonce: Mapped[str] = mapped_column(ExactString(64), unique=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"), index=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    used_at: Mapped[datetime]
    reversed_at: Mapped[datetime | None] = mapped_column(default=None)
    reversed_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
    reverse_reason: Mapped[str | None] = mapped_column(String(255), default=None)


class PushStatus(enum.StrEnum):
    QUEUED = "queued"
    DONE = "done"


class CouponPush(Base):
    """A template pushed to a segment's members by a job. Each member's coupon is keyed by
    (template, member, campaign or push), so a re-run or a second push for the same campaign
    gives nobody a second coupon."""

    __tablename__ = "coupon_push"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("coupon_template.id"), index=True)
    segment_id: Mapped[int]
    campaign_id: Mapped[int | None] = mapped_column(default=None)
    created_by: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    status: Mapped[PushStatus] = mapped_column(StrEnumType(PushStatus, 16), default=PushStatus.QUEUED)
    issued: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)  # already had it, over the limit or not eligible
    sold_out: Mapped[int] = mapped_column(default=0)  # members left without one when the stock ran out
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
