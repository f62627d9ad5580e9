"""Models of service packages (保养套餐).

A `service_package` is what a store (or the group) sells: N uses of a service for a price. A
`package_purchase` is one owner's purchase: the business object a payment order pays for
(business type "service_package", business id = purchase id). It becomes `active` with a
write-off code when paid; each use at a store is a `package_use` row, unique per (purchase,
nonce) so a replayed scan is answered with the same use instead of taking a second one.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.platform.db import Base, BigId, ExactString, StrEnumType, TimestampMixin, utcnow


class ServicePackage(Base, TimestampMixin):
    __tablename__ = "service_package"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True, default=None)  # None: group
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(500), default=None)
    service_type: Mapped[str] = mapped_column(String(32))  # basic_maintenance, wash, ...
    uses: Mapped[int]
    price_fen: Mapped[int]
    valid_days: Mapped[int] = mapped_column(default=365)
    active: Mapped[bool] = mapped_column(default=True)


class PurchaseState(enum.StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    ACTIVE = "active"
    USED_UP = "used_up"
    EXPIRED = "expired"
    REFUNDED = "refunded"  # fully refunded: nothing left to use
    CLOSED = "closed"  # never paid


class PackagePurchase(Base, TimestampMixin):
    __tablename__ = "package_purchase"
    __table_args__ = (
        Index("ix_package_purchase_customer_id_id", "customer_id", "id"),
        Index("ix_package_purchase_state_expires", "state", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("service_package.id"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True, default=None)
    name: Mapped[str] = mapped_column(String(64))  # as sold (the package may be renamed later)
    service_type: Mapped[str] = mapped_column(String(32))
    price_fen: Mapped[int]
    uses_total: Mapped[int]
    uses_left: Mapped[int]
    uses_refunded: Mapped[int] = mapped_column(default=0)
    state: Mapped[PurchaseState] = mapped_column(StrEnumType(PurchaseState, 24))
    code: Mapped[str | None] = mapped_column(String(12), unique=True, default=None)  # write-off code, once paid
    pay_expires_at: Mapped[datetime]
    paid_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)  # end of validity, once paid


class PackageUse(Base):
    __tablename__ = "package_use"
    __table_args__ = (UniqueConstraint("purchase_id", "nonce"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    purchase_id: Mapped[int] = mapped_column(ForeignKey("package_purchase.id"), index=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    nonce: Mapped[str] = mapped_column(ExactString(64))
    uses_left_after: Mapped[int]
    used_at: Mapped[datetime] = mapped_column(default=utcnow)
