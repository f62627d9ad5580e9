"""Models of the points feature: the ledger and its account row, sign-ins, notices,
adjustments awaiting a second approver, and the points mall.

The ledger is the truth. `points_ledger` rows are append-only in everything that says what
happened (kind, deltas, reason, reference, operator, key); the only columns that change after
insert are a credit row's bookkeeping (`remaining`: what is left in the bucket or still pending).
`points_account` caches the sums and is updated in the same transaction as each ledger row;
`check_drift` re-sums the ledger against it.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import VARBINARY, ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.platform.db import Base, BigId, ExactString, StrEnumType, TimestampMixin, utcnow


class LedgerKind(enum.StrEnum):
    EARN = "earn"  # credit bucket (available +)
    EARN_PENDING = "earn_pending"  # pending + during a return window; `remaining` = not yet settled
    ACTIVATE = "activate"  # pending → available; the activation row is the bucket
    PENDING_CANCEL = "pending_cancel"  # pending − (refund inside the window)
    SPEND = "spend"  # available −, allocations to buckets
    FREEZE = "freeze"  # available − frozen +, allocations to buckets (points + cash orders)
    CONSUME = "consume"  # frozen − (the cash part was paid)
    RELEASE = "release"  # frozen − available +, the freeze's allocations restored
    RESTORE = "restore"  # available +, a spend's (or consumed freeze's) allocations restored
    EXPIRE = "expire"  # available −, the bucket emptied
    REVERSE = "reverse"  # available − (may go below zero: a debt), earned points taken back
    ADJUST = "adjust"  # staff adjustment: + is a bucket, − consumes buckets like a spend


# Rows that are buckets (can be consumed, expire).
BUCKET_KINDS = (LedgerKind.EARN, LedgerKind.ACTIVATE, LedgerKind.ADJUST)


class PointsAccount(Base):
    """One per member. (An `id` key of its own so that a customer merge can move it; merging two
    members that both have an account is refused by the unique key rather than mixing books.)"""

    __tablename__ = "points_account"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), unique=True)
    available: Mapped[int] = mapped_column(default=0)  # below zero only through a refund reversal (a debt)
    pending: Mapped[int] = mapped_column(default=0)
    frozen: Mapped[int] = mapped_column(default=0)
    lifetime_earned: Mapped[int] = mapped_column(default=0)  # growth value ever earned (net of reversals)
    tier_since: Mapped[datetime | None] = mapped_column(default=None)
    version: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PointsLedger(Base):
    __tablename__ = "points_ledger"
    __table_args__ = (
        Index("ix_points_ledger_customer_id_id", "customer_id", "id"),
        Index("ix_points_ledger_customer_bucket", "customer_id", "remaining", "expires_at"),
        Index("ix_points_ledger_expiry", "expires_at", "remaining"),
        Index("ix_points_ledger_ref", "ref_type", "ref_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    kind: Mapped[LedgerKind] = mapped_column(StrEnumType(LedgerKind, 16))
    delta: Mapped[int] = mapped_column(default=0)  # change of `available`
    pending_delta: Mapped[int] = mapped_column(default=0)
    frozen_delta: Mapped[int] = mapped_column(default=0)
    growth: Mapped[int] = mapped_column(default=0)  # change of growth value (tiers), not spendable
    reason_code: Mapped[str] = mapped_column(String(48))
    ref_type: Mapped[str | None] = mapped_column(String(32), default=None)
    ref_id: Mapped[str | None] = mapped_column(ExactString(64), default=None)
    idempotency_key: Mapped[str] = mapped_column(ExactString(191), unique=True)
    operator: Mapped[str] = mapped_column(String(64))  # "staff:12", "member:3", "system:points.expire"
    note: Mapped[str | None] = mapped_column(String(255), default=None)
    # Buckets: what is left, and when it expires (None: never). Pending rows: not yet settled.
    remaining: Mapped[int] = mapped_column(default=0)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    activates_at: Mapped[datetime | None] = mapped_column(default=None)
    related_id: Mapped[int | None] = mapped_column(ForeignKey("points_ledger.id"), default=None)
    balance_after: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PointsAllocation(Base):
    """Which buckets a debit took its points from, so that a reversal restores exactly those."""

    __tablename__ = "points_allocation"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    debit_id: Mapped[int] = mapped_column(ForeignKey("points_ledger.id"), index=True)
    credit_id: Mapped[int] = mapped_column(ForeignKey("points_ledger.id"), index=True)
    amount: Mapped[int]


class PointsSignin(Base):
    __tablename__ = "points_signin"
    __table_args__ = (UniqueConstraint("customer_id", "sign_date"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    sign_date: Mapped[date]  # the Asia/Shanghai calendar day
    streak: Mapped[int]
    cycle_day: Mapped[int]
    points: Mapped[int]
    ledger_id: Mapped[int | None] = mapped_column(ForeignKey("points_ledger.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AdjustmentState(enum.StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"


class PointsAdjustment(Base):
    __tablename__ = "points_adjustment"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    delta: Mapped[int]
    reason: Mapped[str] = mapped_column(String(255))
    state: Mapped[AdjustmentState] = mapped_column(StrEnumType(AdjustmentState, 16))
    requested_by: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
    ledger_id: Mapped[int | None] = mapped_column(ForeignKey("points_ledger.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)


# ---------------------------------------------------------------------------------------------
# Points mall


class ItemKind(enum.StrEnum):
    PHYSICAL = "physical"
    VIRTUAL_CODE = "virtual_code"
    COUPON = "coupon"
    SERVICE_VOUCHER = "service_voucher"


class LimitPeriod(enum.StrEnum):
    NONE = "none"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class MallItem(Base, TimestampMixin):
    __tablename__ = "mall_item"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(String(1000), default=None)
    kind: Mapped[ItemKind] = mapped_column(StrEnumType(ItemKind, 24))
    points_price: Mapped[int]
    cash_fen: Mapped[int] = mapped_column(default=0)  # optional cash part (积分+钱)
    stock: Mapped[int] = mapped_column(default=0)
    sold: Mapped[int] = mapped_column(default=0)
    per_order_limit: Mapped[int] = mapped_column(default=1)
    per_member_limit: Mapped[int | None] = mapped_column(default=None)  # overall; None: unlimited
    limit_period: Mapped[LimitPeriod] = mapped_column(StrEnumType(LimitPeriod, 8), default=LimitPeriod.NONE)
    per_period_limit: Mapped[int | None] = mapped_column(default=None)
    min_tier: Mapped[str | None] = mapped_column(String(32), default=None)
    sale_starts_at: Mapped[datetime | None] = mapped_column(default=None)
    sale_ends_at: Mapped[datetime | None] = mapped_column(default=None)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True, default=None)  # None: group
    # kind coupon: the coupon template each unit issues (through the coupons feature)
    coupon_template_id: Mapped[int | None] = mapped_column(default=None)
    active: Mapped[bool] = mapped_column(default=True)


class MallMemberCounter(Base):
    """Units a member has redeemed of an item, overall (`period_key="all"`) and per period."""

    __tablename__ = "mall_member_counter"
    __table_args__ = (UniqueConstraint("item_id", "customer_id", "period_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("mall_item.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    period_key: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[int] = mapped_column(default=0)


class MallOrderState(enum.StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"  # points frozen until the cash part is paid
    PLACED = "placed"  # points taken; physical: waiting for shipment
    SHIPPED = "shipped"
    COMPLETED = "completed"  # delivered (virtual code) or voucher redeemed at the store
    CANCELLED = "cancelled"
    CLOSED = "closed"  # the cash part was never paid


class MallOrder(Base, TimestampMixin):
    __tablename__ = "mall_order"
    __table_args__ = (Index("ix_mall_order_customer_id_id", "customer_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_no: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("mall_item.id"), index=True)
    item_kind: Mapped[ItemKind] = mapped_column(StrEnumType(ItemKind, 24))
    quantity: Mapped[int]
    points_total: Mapped[int]
    cash_fen_total: Mapped[int] = mapped_column(default=0)
    period_key: Mapped[str | None] = mapped_column(String(16), default=None)
    state: Mapped[MallOrderState] = mapped_column(StrEnumType(MallOrderState, 24), index=True)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True, default=None)
    points_ledger_id: Mapped[int | None] = mapped_column(ForeignKey("points_ledger.id"), default=None)
    # The recipient's name, phone and street address (JSON) sealed with the PII key, like every
    # phone at rest; answers show it masked, staff reveal it in full through an audited call.
    address_encrypted: Mapped[bytes | None] = mapped_column(VARBINARY(2048), default=None)
    carrier: Mapped[str | None] = mapped_column(String(32), default=None)
    tracking_no: Mapped[str | None] = mapped_column(String(64), default=None)
    shipped_at: Mapped[datetime | None] = mapped_column(default=None)
    voucher_code: Mapped[str | None] = mapped_column(String(16), unique=True, default=None)
    redeemed_at: Mapped[datetime | None] = mapped_column(default=None)
    pay_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)
    # Phone numbers in the reason are masked; the reason as typed is sealed alongside (platform/pii).
    cancel_reason: Mapped[str | None] = mapped_column(String(255), default=None)
    cancel_reason_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)


class MallCode(Base):
    """A pool of virtual codes; a code is claimed by an order with SKIP LOCKED."""

    __tablename__ = "mall_code"
    __table_args__ = (Index("ix_mall_code_item_order", "item_id", "order_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("mall_item.id"))
    code: Mapped[str] = mapped_column(String(64), unique=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("mall_order.id"), default=None)
    assigned_at: Mapped[datetime | None] = mapped_column(default=None)
