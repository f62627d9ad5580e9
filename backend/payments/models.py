"""Models of the payments feature.

`payment_order` is one payment attempt for a business object (`business_type`, `business_id`);
the business order itself lives with its feature. `open_key` is set while an attempt is open or
paid and cleared when it closes: a unique key, so a business object has at most one live attempt
(MySQL has no partial unique index; a nullable unique column is the portable equivalent).
`refund_reserved_fen` counts refunds in flight plus succeeded, so the "sum of refunds ≤ paid"
rule is checked under the order's row lock before WeChat is asked.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backend.platform.db import Base, BigId, ExactString, StrEnumType, TimestampMixin, utcnow


class OrderState(enum.StrEnum):
    PENDING = "pending"  # created locally, prepaid or not yet
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    CLOSED = "closed"


PAID_STATES = (OrderState.PAID, OrderState.PARTIALLY_REFUNDED, OrderState.REFUNDED)


class RefundState(enum.StrEnum):
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    CLOSED = "closed"  # failed; the amount is available again
    ABNORMAL = "abnormal"  # needs finance (the payer's card was closed, ...)


class PaymentOrder(Base, TimestampMixin):
    __tablename__ = "payment_order"
    __table_args__ = (Index("ix_payment_order_state_expires", "state", "expires_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    out_trade_no: Mapped[str] = mapped_column(ExactString(32), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True, default=None)
    business_type: Mapped[str] = mapped_column(String(32))
    business_id: Mapped[str] = mapped_column(String(64))
    open_key: Mapped[str | None] = mapped_column(String(100), unique=True, default=None)
    description: Mapped[str] = mapped_column(String(127))
    amount_fen: Mapped[int]
    state: Mapped[OrderState] = mapped_column(StrEnumType(OrderState, 24), default=OrderState.PENDING)
    openid: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    prepay_id: Mapped[str | None] = mapped_column(String(64), default=None)
    prepaid_at: Mapped[datetime | None] = mapped_column(default=None)
    transaction_id: Mapped[str | None] = mapped_column(String(32), unique=True, default=None)
    paid_at: Mapped[datetime | None] = mapped_column(default=None)
    payer_total_fen: Mapped[int | None] = mapped_column(default=None)
    paid_via: Mapped[str | None] = mapped_column(String(16), default=None)  # notify | query | close | bill
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    refund_reserved_fen: Mapped[int] = mapped_column(default=0)
    refunded_fen: Mapped[int] = mapped_column(default=0)
    refund_count: Mapped[int] = mapped_column(default=0)
    flagged: Mapped[bool] = mapped_column(default=False)


class PaymentRefund(Base, TimestampMixin):
    __tablename__ = "payment_refund"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("payment_order.id"), index=True)
    out_refund_no: Mapped[str] = mapped_column(ExactString(64), unique=True)
    refund_id: Mapped[str | None] = mapped_column(String(32), default=None)
    amount_fen: Mapped[int]
    reason: Mapped[str] = mapped_column(String(80))
    state: Mapped[RefundState] = mapped_column(StrEnumType(RefundState, 16), default=RefundState.PROCESSING)
    requested_by: Mapped[str] = mapped_column(String(64))  # "staff:12", "system:..."
    submitted: Mapped[bool] = mapped_column(default=False)  # WeChat Pay accepted the request
    succeeded_at: Mapped[datetime | None] = mapped_column(default=None)


class PaymentIssue(Base):
    """Something that must not pass silently: a notification whose amount differs, a payment
    WeChat has and we do not, a bill line that does not match. `dedup_key` makes a retried
    notification or a re-run reconciliation record the same issue once."""

    __tablename__ = "payment_issue"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    dedup_key: Mapped[str] = mapped_column(ExactString(191), unique=True)
    out_trade_no: Mapped[str | None] = mapped_column(ExactString(32), index=True, default=None)
    out_refund_no: Mapped[str | None] = mapped_column(ExactString(64), default=None)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("payment_order.id"), default=None)
    reconciliation_id: Mapped[int | None] = mapped_column(ForeignKey("payment_reconciliation.id"), default=None)
    resolution: Mapped[str] = mapped_column(String(16), default="flagged")  # flagged | repaired | handled
    detail: Mapped[dict | None] = mapped_column(default=None)
    handled_by: Mapped[str | None] = mapped_column(String(64), default=None)  # "staff:12"
    handled_at: Mapped[datetime | None] = mapped_column(default=None)
    handling_note: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PaymentReconciliation(Base):
    __tablename__ = "payment_reconciliation"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    bill_date: Mapped[date] = mapped_column(unique=True)
    status: Mapped[str] = mapped_column(String(16), default="done")  # done | failed
    bill_rows: Mapped[int] = mapped_column(default=0)
    matched: Mapped[int] = mapped_column(default=0)
    issues: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    ran_at: Mapped[datetime] = mapped_column(default=utcnow)
