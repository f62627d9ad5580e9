from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import VARBINARY, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backend.platform.db import Base, BigId, ExactString, StrEnumType, TimestampMixin, utcnow


class LifecycleStage(enum.StrEnum):
    LEAD = "lead"
    PROSPECT = "prospect"
    OWNER = "owner"
    LOYAL = "loyal"
    AT_RISK = "at_risk"
    LOST = "lost"


class Gender(enum.StrEnum):
    UNKNOWN = "unknown"
    MALE = "male"
    FEMALE = "female"


class IdentityKind(enum.StrEnum):
    """The ways the same person reaches us. Each value identifies at most one customer."""

    OPENID = "openid"  # mini-program openid
    UNIONID = "unionid"  # WeChat Open Platform unionid
    EXTERNAL_USERID = "external_userid"  # WeCom external contact id
    PHONE = "phone"  # HMAC blind index of the normalised phone number


class Customer(Base, TimestampMixin):
    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str | None] = mapped_column(String(64), default=None)
    gender: Mapped[Gender] = mapped_column(StrEnumType(Gender, 16), default=Gender.UNKNOWN)
    birthday: Mapped[date | None] = mapped_column(default=None)
    phone_encrypted: Mapped[bytes | None] = mapped_column(VARBINARY(128), default=None)
    home_store_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True, default=None)
    lifecycle_stage: Mapped[LifecycleStage] = mapped_column(
        StrEnumType(LifecycleStage, 16), default=LifecycleStage.LEAD
    )
    tier: Mapped[str] = mapped_column(String(32), default="standard")
    acquisition_channel: Mapped[str | None] = mapped_column(String(64), default=None)
    # Set when this row was merged into another; such a row is hidden everywhere.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"), index=True, default=None)
    # Owner access tokens carry the generation they were issued in; one of an older generation
    # is refused (auth.session_revoked). Raised when staff reverse a merge into this customer:
    # tokens issued while the merge stood would otherwise act as this customer until they expire.
    session_generation: Mapped[int] = mapped_column(default=0, server_default="0")

    # Loaded on access; list views ask for selectinload explicitly (no N+1, no loads on the hot path).
    identities: Mapped[list[CustomerIdentity]] = relationship(back_populates="customer")
    advisors: Mapped[list[CustomerAdvisor]] = relationship(back_populates="customer")

    def identity(self, kind: IdentityKind) -> str | None:
        for ident in self.identities:
            if ident.kind == kind:
                return ident.value
        return None


class CustomerIdentity(Base):
    """One row per identifier; the unique key makes "found by openid, unionid, external_userid or
    phone is the same row" a database fact instead of a check-then-insert."""

    __tablename__ = "customer_identity"
    __table_args__ = (UniqueConstraint("kind", "value"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    kind: Mapped[IdentityKind] = mapped_column(StrEnumType(IdentityKind, 24))
    value: Mapped[str] = mapped_column(ExactString(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    customer: Mapped[Customer] = relationship(back_populates="identities")


class CustomerAdvisor(Base):
    """The advisor assigned to a customer for one role (sales, service, insurance/finance)."""

    __tablename__ = "customer_advisor"
    __table_args__ = (
        UniqueConstraint("customer_id", "role"),
        Index("ix_customer_advisor_staff_customer", "staff_id", "customer_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    role: Mapped[str] = mapped_column(String(32))
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)

    customer: Mapped[Customer] = relationship(back_populates="advisors")


class Car(Base, TimestampMixin):
    """A car belongs to one customer at a time: the VIN is unique. An owner who removes a car
    that bookings, leads or consultations were about (sold, scrapped) leaves it `removed_at`:
    their history keeps it, their list and new business do not, and its VIN can be bound again
    (by them, or by its next owner: the row moves, the history stays with each owner's rows)."""

    __tablename__ = "car"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    vin: Mapped[str] = mapped_column(String(17), unique=True)
    plate: Mapped[str | None] = mapped_column(String(16), default=None)
    brand: Mapped[str | None] = mapped_column(String(64), default=None)
    series: Mapped[str | None] = mapped_column(String(64), default=None)
    model: Mapped[str | None] = mapped_column(String(128), default=None)
    purchase_date: Mapped[date | None] = mapped_column(default=None)
    mileage_km: Mapped[int | None] = mapped_column(default=None)
    last_service_date: Mapped[date | None] = mapped_column(default=None)
    removed_at: Mapped[datetime | None] = mapped_column(default=None)


class CustomerMerge(Base):
    """An explicit, audited merge of `source` into `target`. `moved` lists, per table, the ids of
    the rows that were re-pointed, so that the merge can be reversed exactly."""

    __tablename__ = "customer_merge"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    reason: Mapped[str] = mapped_column(String(255))
    merged_by_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
    merged_at: Mapped[datetime] = mapped_column(default=utcnow)
    moved: Mapped[dict] = mapped_column(default=dict)
    reversed_at: Mapped[datetime | None] = mapped_column(default=None)
    reversed_by_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
