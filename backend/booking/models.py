"""Models of maintenance booking (维修保养预约).

`booking_slot` is the capacity of one store, time block and bay type: `capacity` places of
which `booked` are taken. `booked` only moves by a conditional UPDATE
(`booked = booked + 1 WHERE booked < capacity`), and CHECK constraints make "negative" and
"above capacity" impossible even for a bug. `booking_day` carries the optional labour cap of a
store's day (`labour_booked <= labour_cap`, the same conditional update). Both are generated
ahead from `booking_capacity_template` (per weekday, block and bay type) by a job.

`booking` is one owner's appointment: a car, a service type, the slot it holds, the service
advisor, and its life: booked → arrived → in_service → completed, or cancelled / no_show.
`version` counts its changes (touchpoints and notices are keyed by it); `reschedule_count`
limits moves.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time

from sqlalchemy import CheckConstraint, ForeignKey, Index, LargeBinary, String, Time, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.platform.db import Base, BigId, StrEnumType, TimestampMixin
from backend.stores.models import BayType


class CapacityTemplate(Base, TimestampMixin):
    __tablename__ = "booking_capacity_template"
    __table_args__ = (UniqueConstraint("store_id", "weekday", "block_start", "bay_type"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    weekday: Mapped[int]  # 0 = Monday
    block_start: Mapped[time] = mapped_column(Time)  # local (China) time
    block_minutes: Mapped[int] = mapped_column(default=60)
    bay_type: Mapped[BayType] = mapped_column(StrEnumType(BayType, 16))
    capacity: Mapped[int]


class Slot(Base):
    __tablename__ = "booking_slot"
    __table_args__ = (
        UniqueConstraint("store_id", "bay_type", "starts_at"),
        Index("ix_booking_slot_store_day", "store_id", "day", "bay_type"),
        CheckConstraint("booked >= 0", name="booked_not_negative"),
        CheckConstraint("booked <= capacity", name="booked_within_capacity"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    day: Mapped[date]  # local date of the block
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    bay_type: Mapped[BayType] = mapped_column(StrEnumType(BayType, 16))
    capacity: Mapped[int]
    booked: Mapped[int] = mapped_column(default=0)


class BookingDay(Base):
    __tablename__ = "booking_day"
    __table_args__ = (
        UniqueConstraint("store_id", "day"),
        CheckConstraint("labour_booked >= 0", name="labour_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    day: Mapped[date]
    labour_cap: Mapped[int | None] = mapped_column(default=None)  # minutes; None = no cap
    labour_booked: Mapped[int] = mapped_column(default=0)


class BookingStatus(enum.StrEnum):
    BOOKED = "booked"
    ARRIVED = "arrived"
    IN_SERVICE = "in_service"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"


# Bookings that hold a place and count against the per-car limit.
ACTIVE_STATUSES = (BookingStatus.BOOKED, BookingStatus.ARRIVED, BookingStatus.IN_SERVICE)


class Booking(Base, TimestampMixin):
    __tablename__ = "booking"
    __table_args__ = (
        Index("ix_booking_store_start", "store_id", "starts_at"),
        Index("ix_booking_car_status", "car_id", "status"),
        Index("ix_booking_customer", "customer_id", "id"),
        Index("ix_booking_status_start", "status", "starts_at"),
        Index("ix_booking_advisor_start", "advisor_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    car_id: Mapped[int] = mapped_column(ForeignKey("car.id"))
    store_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    service_type_id: Mapped[int] = mapped_column(ForeignKey("service_type.id"))
    slot_id: Mapped[int] = mapped_column(ForeignKey("booking_slot.id"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    labour_minutes: Mapped[int] = mapped_column(default=0)
    status: Mapped[BookingStatus] = mapped_column(StrEnumType(BookingStatus, 16), default=BookingStatus.BOOKED)
    advisor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
    advisor_chosen: Mapped[bool] = mapped_column(default=False)  # picked by the owner, not assigned
    bay_id: Mapped[int | None] = mapped_column(ForeignKey("bay.id"), default=None)
    # Phone numbers in the note are masked; the note as typed is sealed alongside (platform/pii).
    note: Mapped[str | None] = mapped_column(String(500), default=None)
    note_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    reschedule_count: Mapped[int] = mapped_column(default=0)
    version: Mapped[int] = mapped_column(default=1)
    # When the owner last chose the time (booked or rescheduled): reminders are planned from it.
    scheduled_at: Mapped[datetime]
    reminded_day_at: Mapped[datetime | None] = mapped_column(default=None)
    reminded_soon_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_reason: Mapped[str | None] = mapped_column(String(255), default=None)  # masked, as `note`
    cancel_reason_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    cancelled_by: Mapped[str | None] = mapped_column(String(16), default=None)  # owner | store | system
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)
    arrived_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    no_show_at: Mapped[datetime | None] = mapped_column(default=None)
    # Staff undid its no-show (the owner had a reason): the automatic sweep leaves it alone.
    no_show_waived_at: Mapped[datetime | None] = mapped_column(default=None)
    mileage_km: Mapped[int | None] = mapped_column(default=None)
    work_done: Mapped[list | None] = mapped_column(default=None)
    checkin_nonce: Mapped[str | None] = mapped_column(String(32), default=None)
