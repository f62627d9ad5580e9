"""Models of a store's public face and its service calendar.

A store is an `org_unit` of kind store (the org tree owns it); `store_profile` adds what owners
need to find and visit it: address, coordinates, phone, brands served. `store_hours` is the
weekly plan (one row per open weekday, local China time) with an optional labour-hours cap for
the day; `store_day_override` is a holiday (closed) or a day with other hours. `service_type`
is what can be booked: a duration, the labour it takes and the kind of bay it needs; `bay` is a
working place (工位) of one kind, given to a booking at check-in.
"""

from __future__ import annotations

import enum
from datetime import date, time

from sqlalchemy import Float, ForeignKey, String, Time, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.platform.db import Base, BigId, StrEnumType, TimestampMixin


class BayType(enum.StrEnum):
    """The kind of bay a service needs; capacity is planned per store, block and bay type."""

    QUICK = "quick"  # quick service: oil, filters, tyres, inspection
    GENERAL = "general"  # general repair and major maintenance
    BODY_PAINT = "body_paint"
    WASH = "wash"


class StoreProfile(Base, TimestampMixin):
    __tablename__ = "store_profile"

    store_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"), primary_key=True)
    address: Mapped[str] = mapped_column(String(255), default="")
    latitude: Mapped[float | None] = mapped_column(Float, default=None)
    longitude: Mapped[float | None] = mapped_column(Float, default=None)
    # The store's public service line (a business number, not personal data).
    phone: Mapped[str | None] = mapped_column(String(32), default=None)
    brands: Mapped[list] = mapped_column(default=list)  # brand names served; empty = every brand
    bookable: Mapped[bool] = mapped_column(default=True)


class StoreHours(Base):
    __tablename__ = "store_hours"
    __table_args__ = (UniqueConstraint("store_id", "weekday"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    weekday: Mapped[int]  # 0 = Monday
    opens: Mapped[time] = mapped_column(Time)
    closes: Mapped[time] = mapped_column(Time)
    labour_cap_minutes: Mapped[int | None] = mapped_column(default=None)


class StoreDayOverride(Base, TimestampMixin):
    __tablename__ = "store_day_override"
    __table_args__ = (UniqueConstraint("store_id", "day"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    day: Mapped[date]
    closed: Mapped[bool] = mapped_column(default=True)
    opens: Mapped[time | None] = mapped_column(Time, default=None)
    closes: Mapped[time | None] = mapped_column(Time, default=None)
    note: Mapped[str | None] = mapped_column(String(128), default=None)


class ServiceType(Base, TimestampMixin):
    __tablename__ = "service_type"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    duration_minutes: Mapped[int]
    labour_minutes: Mapped[int]
    bay_type: Mapped[BayType] = mapped_column(StrEnumType(BayType, 16))
    active: Mapped[bool] = mapped_column(default=True)
    sort_order: Mapped[int] = mapped_column(default=0)


class Bay(Base, TimestampMixin):
    __tablename__ = "bay"
    __table_args__ = (UniqueConstraint("store_id", "code"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    code: Mapped[str] = mapped_column(String(16))
    bay_type: Mapped[BayType] = mapped_column(StrEnumType(BayType, 16))
    active: Mapped[bool] = mapped_column(default=True)
