"""Models of leads (线索) and the vehicles for sale they may point at (listings).

A `vehicle_listing` is a car a store offers (new or used: price in fen, mileage, photos),
managed by staff. A `lead` is one owner enquiry — new/used car interest, trade-in valuation,
loan, insurance, accident report — routed to one advisor of the store, with a status, an SLA
clock (`contact_due_at`) and at most one escalation (`escalated_at`, set by a conditional
update). `version` counts the lead's changes; each change's touchpoint is keyed by it.
`lead_route_cursor` is the round-robin position per (store, role), moved under the store's
row lock.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.platform.db import Base, BigId, StrEnumType, TimestampMixin


class ListingCondition(enum.StrEnum):
    NEW = "new"
    USED = "used"


class ListingStatus(enum.StrEnum):
    ON_SALE = "on_sale"
    RESERVED = "reserved"  # still shown, enquiries accepted
    SOLD = "sold"
    WITHDRAWN = "withdrawn"


OPEN_LISTING_STATUSES = (ListingStatus.ON_SALE, ListingStatus.RESERVED)


class Listing(Base, TimestampMixin):
    __tablename__ = "vehicle_listing"
    __table_args__ = (Index("ix_vehicle_listing_store_status", "store_id", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    condition: Mapped[ListingCondition] = mapped_column(StrEnumType(ListingCondition, 8))
    title: Mapped[str] = mapped_column(String(128))
    brand: Mapped[str] = mapped_column(String(64))
    series: Mapped[str | None] = mapped_column(String(64), default=None)
    model: Mapped[str | None] = mapped_column(String(128), default=None)
    year: Mapped[int | None] = mapped_column(default=None)
    mileage_km: Mapped[int] = mapped_column(default=0)
    price_fen: Mapped[int]
    photos: Mapped[list] = mapped_column(default=list)
    description: Mapped[str | None] = mapped_column(String(2000), default=None)
    status: Mapped[ListingStatus] = mapped_column(StrEnumType(ListingStatus, 16), default=ListingStatus.ON_SALE)
    created_by_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)


class LeadType(enum.StrEnum):
    NEW_CAR = "new_car"  # 新车意向
    USED_CAR = "used_car"  # 二手车意向 (a listing)
    TRADE_IN = "trade_in"  # 车主焕新 / 置换估价
    LOAN = "loan"  # 分期贷款
    INSURANCE = "insurance"  # 保险报价 / 续保
    ACCIDENT = "accident"  # 出险


class LeadStatus(enum.StrEnum):
    NEW = "new"
    CONTACTED = "contacted"
    APPOINTMENT = "appointment"
    WON = "won"
    LOST = "lost"


CLOSED_STATUSES = (LeadStatus.WON, LeadStatus.LOST)


class LeadPriority(enum.StrEnum):
    NORMAL = "normal"
    HIGH = "high"


class Lead(Base, TimestampMixin):
    __tablename__ = "lead"
    __table_args__ = (
        Index("ix_lead_store_status", "store_id", "status", "id"),
        Index("ix_lead_advisor_status", "advisor_id", "status", "id"),
        Index("ix_lead_customer_type", "customer_id", "type", "created_at"),
        Index("ix_lead_sla", "status", "escalated_at", "contact_due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    store_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    type: Mapped[LeadType] = mapped_column(StrEnumType(LeadType, 16))
    status: Mapped[LeadStatus] = mapped_column(StrEnumType(LeadStatus, 16), default=LeadStatus.NEW)
    priority: Mapped[LeadPriority] = mapped_column(StrEnumType(LeadPriority, 8), default=LeadPriority.NORMAL)
    advisor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
    routed_role: Mapped[str] = mapped_column(String(32))
    routed_by: Mapped[str] = mapped_column(String(24))  # assigned_advisor | round_robin | store_manager | manual | none
    car_id: Mapped[int | None] = mapped_column(ForeignKey("car.id"), default=None)
    listing_id: Mapped[int | None] = mapped_column(ForeignKey("vehicle_listing.id"), default=None)
    # What makes two submissions "the same enquiry": the car, the listing or the model asked about.
    subject: Mapped[str] = mapped_column(String(128))
    # Phone numbers in the note are masked; the note as typed is sealed alongside (platform/pii).
    note: Mapped[str | None] = mapped_column(String(500), default=None)
    note_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    details: Mapped[dict] = mapped_column(default=dict)  # type-specific fields (mileage, loan amount ...)
    photos: Mapped[list] = mapped_column(default=list)
    location: Mapped[dict | None] = mapped_column(default=None)  # accident: address, latitude, longitude
    injuries: Mapped[bool | None] = mapped_column(default=None)
    drivable: Mapped[bool | None] = mapped_column(default=None)
    tow_requested: Mapped[bool] = mapped_column(default=False)
    repair_booking_requested: Mapped[bool] = mapped_column(default=False)
    preferred_time: Mapped[datetime | None] = mapped_column(default=None)
    contact_due_at: Mapped[datetime]
    contacted_at: Mapped[datetime | None] = mapped_column(default=None)
    appointment_at: Mapped[datetime | None] = mapped_column(default=None)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    lost_reason: Mapped[str | None] = mapped_column(String(255), default=None)
    escalated_at: Mapped[datetime | None] = mapped_column(default=None)
    version: Mapped[int] = mapped_column(default=1)


class LeadRouteCursor(Base):
    __tablename__ = "lead_route_cursor"
    __table_args__ = (UniqueConstraint("store_id", "role"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    role: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(default=0)
