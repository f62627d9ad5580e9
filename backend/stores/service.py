"""Stores (门店) as owners see them, and their service calendar.

A store is an org unit of kind store; its profile (address, coordinates, phone, brands) and its
calendar (weekly hours, holidays and other overrides) live here. "Stores near me" orders the
bookable stores by great-circle distance from the owner's point; the number of stores of a
dealer group is small (hundreds), so the distance is computed over the profiles in memory.

The calendar of a day: an override of that date wins (closed, or other hours), else the
weekday's hours; no row for the weekday means closed. All hours are local China time.

Staff edit hours and overrides of the stores in their scope (managers; an advisor's store
manager does it for them), audited.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from backend.org.models import OrgKind, OrgUnit
from backend.platform.actors import StaffActor
from backend.platform.audit import write_audit
from backend.platform.db import utcnow
from backend.platform.errors import AppError, register_messages
from backend.platform.upsert import upsert
from backend.stores.models import Bay, BayType, ServiceType, StoreDayOverride, StoreHours, StoreProfile

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
EDIT_ROLES = ("store_manager", "region_manager", "division_manager", "group_admin")
EARTH_RADIUS_KM = 6371.0088

# code, name, duration (min), labour (min), bay type
DEFAULT_SERVICE_TYPES = (
    ("basic_maintenance", "常规保养", 60, 60, BayType.QUICK),
    ("major_maintenance", "大保养", 180, 180, BayType.GENERAL),
    ("repair", "维修", 240, 240, BayType.GENERAL),
    ("body_paint", "钣金喷漆", 480, 480, BayType.BODY_PAINT),
    ("tyres", "轮胎服务", 45, 45, BayType.QUICK),
    ("wash", "洗车美容", 60, 30, BayType.WASH),
    ("inspection", "车辆检测", 45, 45, BayType.QUICK),
)

register_messages(
    {
        "store.not_found": ("门店不存在", "Store not found"),
        "store.hours_invalid": ("营业时间有误", "Opening hours are invalid"),
        "store.override_not_found": ("特殊营业日不存在", "Calendar override not found"),
        "service_type.not_found": ("服务项目不存在", "Service type not found"),
        "store.bay_exists": ("工位编号已存在", "This bay code is already used at the store"),
    }
)


def ensure_service_types(session: Session) -> int:
    """The standard service types, created once (found by code); answers how many exist."""
    for order, (code, name, duration, labour, bay) in enumerate(DEFAULT_SERVICE_TYPES):
        upsert(
            session,
            ServiceType,
            {
                "code": code,
                "name": name,
                "duration_minutes": duration,
                "labour_minutes": labour,
                "bay_type": bay.value,
                "active": True,
                "sort_order": order,
                "created_at": utcnow(),
                "updated_at": utcnow(),
            },
            ["code"],
            lambda new: [("code", ServiceType.__table__.c.code)],  # keep what is there
        )
    return len(DEFAULT_SERVICE_TYPES)


def service_types(session: Session) -> list[ServiceType]:
    stmt = select(ServiceType).where(ServiceType.active.is_(True)).order_by(ServiceType.sort_order, ServiceType.id)
    return list(session.scalars(stmt))


def service_type_or_404(session: Session, service_type_id: int) -> ServiceType:
    st = session.get(ServiceType, service_type_id)
    if st is None or not st.active:
        raise AppError("service_type.not_found", 404)
    return st


# ---------------------------------------------------------------------------------------------
# Reading a store


def store_unit_or_404(session: Session, store_id: int) -> OrgUnit:
    unit = session.get(OrgUnit, store_id)
    if unit is None or unit.kind != OrgKind.STORE:
        raise AppError("store.not_found", 404)
    return unit


def profile_of(session: Session, store_id: int) -> StoreProfile:
    """The profile row, created empty on first need (a store of the org tree always has one)."""
    profile = session.get(StoreProfile, store_id)
    if profile is None:
        upsert(
            session,
            StoreProfile,
            {
                "store_id": store_id,
                "address": "",
                "brands": [],
                "bookable": True,
                "created_at": utcnow(),
                "updated_at": utcnow(),
            },
            ["store_id"],
            lambda new: [("store_id", StoreProfile.__table__.c.store_id)],
        )
        profile = session.get(StoreProfile, store_id)
        assert profile is not None
    return profile


def weekly_hours(session: Session, store_id: int) -> list[StoreHours]:
    return list(session.scalars(select(StoreHours).where(StoreHours.store_id == store_id).order_by(StoreHours.weekday)))


def overrides(session: Session, store_id: int, since: date | None = None) -> list[StoreDayOverride]:
    stmt = select(StoreDayOverride).where(StoreDayOverride.store_id == store_id)
    if since is not None:
        stmt = stmt.where(StoreDayOverride.day >= since)
    return list(session.scalars(stmt.order_by(StoreDayOverride.day)))


@dataclass(frozen=True)
class DayHours:
    opens: time
    closes: time
    labour_cap: int | None


class Calendar:
    """A store's calendar over a range of days, read with two queries."""

    def __init__(self, session: Session, store_id: int, first: date, last: date) -> None:
        self.weekly = {h.weekday: h for h in weekly_hours(session, store_id)}
        stmt = select(StoreDayOverride).where(
            StoreDayOverride.store_id == store_id, StoreDayOverride.day >= first, StoreDayOverride.day <= last
        )
        self.overrides = {o.day: o for o in session.scalars(stmt)}

    def hours(self, day: date) -> DayHours | None:
        """None when the store is closed that day."""
        weekly = self.weekly.get(day.weekday())
        override = self.overrides.get(day)
        if override is not None:
            if override.closed or override.opens is None or override.closes is None:
                return None
            return DayHours(override.opens, override.closes, weekly.labour_cap_minutes if weekly else None)
        if weekly is None:
            return None
        return DayHours(weekly.opens, weekly.closes, weekly.labour_cap_minutes)

    def is_open_at(self, start: datetime, end: datetime) -> bool:
        local_start, local_end = start.astimezone(CHINA), end.astimezone(CHINA)
        hours = self.hours(local_start.date())
        if hours is None:
            return False
        return hours.opens <= local_start.time() and (local_end.time() <= hours.closes or local_end.time() == time(0))


def local_day(moment: datetime) -> date:
    return moment.astimezone(CHINA).date()


def at_local(day: date, clock: time) -> datetime:
    return datetime.combine(day, clock, CHINA)


# ---------------------------------------------------------------------------------------------
# Stores near me


def distance_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Haversine great-circle distance."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def stores_near(
    session: Session,
    *,
    latitude: float | None,
    longitude: float | None,
    brand: str | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    rows = session.execute(
        select(OrgUnit, StoreProfile)
        .join(StoreProfile, StoreProfile.store_id == OrgUnit.id)
        .where(OrgUnit.kind == OrgKind.STORE, StoreProfile.bookable.is_(True))
    ).all()
    out = []
    for unit, profile in rows:
        if brand and profile.brands and brand not in profile.brands:
            continue
        distance = None
        if None not in (latitude, longitude, profile.latitude, profile.longitude):
            distance = round(distance_km(latitude, longitude, profile.latitude, profile.longitude), 2)  # type: ignore[arg-type]
        out.append(store_view(unit, profile, distance))
    out.sort(key=lambda s: (s["distance_km"] is None, s["distance_km"] or 0, s["id"]))
    return out[:limit]


def store_view(unit: OrgUnit, profile: StoreProfile, distance: float | None = None) -> dict[str, Any]:
    return {
        "id": unit.id,
        "name": unit.name,
        "code": unit.code,
        "address": profile.address,
        "latitude": profile.latitude,
        "longitude": profile.longitude,
        "phone": profile.phone,
        "brands": list(profile.brands or []),
        "bookable": profile.bookable,
        "distance_km": distance,
    }


def store_detail(session: Session, store_id: int, today: date, *, owner: bool) -> dict[str, Any]:
    """Owners see bookable stores only (404 otherwise); staff get the profile created on demand."""
    unit = store_unit_or_404(session, store_id)
    profile = session.get(StoreProfile, store_id) if owner else profile_of(session, store_id)
    if profile is None or (owner and not profile.bookable):
        raise AppError("store.not_found", 404)
    return {
        **store_view(unit, profile),
        "hours": weekly_hours(session, store_id),
        "overrides": overrides(session, store_id, since=today),
    }


# ---------------------------------------------------------------------------------------------
# Staff edits (the store has been looked up through the actor's scope by the view)


def _can_edit(actor: StaffActor) -> None:
    if not actor.has_role(*EDIT_ROLES):
        raise AppError("auth.forbidden", 403)


def update_profile(session: Session, actor: StaffActor, store_id: int, data: dict[str, Any]) -> StoreProfile:
    _can_edit(actor)
    profile = profile_of(session, store_id)
    for key, value in data.items():
        setattr(profile, key, value)
    session.flush()
    write_audit(session, actor, "store.profile_updated", "org_unit", store_id, _jsonable(data))
    return profile


def set_weekly_hours(
    session: Session, actor: StaffActor, store_id: int, days: list[dict[str, Any]]
) -> list[StoreHours]:
    """Replace the weekly plan: the weekdays listed are open, the others closed."""
    _can_edit(actor)
    weekdays = [d["weekday"] for d in days]
    if len(set(weekdays)) != len(weekdays):
        raise AppError("store.hours_invalid", 422, errors={"json": {"days": ["a weekday appears twice"]}})
    for d in days:
        if d["opens"] >= d["closes"]:
            raise AppError("store.hours_invalid", 422, errors={"json": {"days": ["opens must be before closes"]}})
    session.execute(delete(StoreHours).where(StoreHours.store_id == store_id))
    for d in sorted(days, key=lambda d: d["weekday"]):
        session.add(StoreHours(store_id=store_id, **d))
    session.flush()
    write_audit(session, actor, "store.hours_set", "org_unit", store_id, {"days": _jsonable(days)})
    return weekly_hours(session, store_id)


def put_override(session: Session, actor: StaffActor, store_id: int, data: dict[str, Any]) -> StoreDayOverride:
    """A holiday (`closed`) or other hours for one date; a second one for the date replaces it."""
    _can_edit(actor)
    closed = data.get("closed", True)
    if not closed and (data.get("opens") is None or data.get("closes") is None or data["opens"] >= data["closes"]):
        raise AppError("store.hours_invalid", 422, errors={"json": {"opens": ["open days need opens < closes"]}})
    existing = session.scalars(
        select(StoreDayOverride).where(StoreDayOverride.store_id == store_id, StoreDayOverride.day == data["day"])
    ).one_or_none()
    row = existing or StoreDayOverride(store_id=store_id, day=data["day"])
    row.closed = closed
    row.opens = None if closed else data.get("opens")
    row.closes = None if closed else data.get("closes")
    row.note = data.get("note")
    session.add(row)
    session.flush()
    write_audit(session, actor, "store.override_set", "org_unit", store_id, _jsonable(data))
    return row


def delete_override(session: Session, actor: StaffActor, store_id: int, override_id: int) -> None:
    _can_edit(actor)
    row = session.scalars(
        select(StoreDayOverride).where(StoreDayOverride.id == override_id, StoreDayOverride.store_id == store_id)
    ).one_or_none()
    if row is None:
        raise AppError("store.override_not_found", 404)
    write_audit(session, actor, "store.override_deleted", "org_unit", store_id, {"day": row.day.isoformat()})
    session.delete(row)
    session.flush()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, date | time):
        return value.isoformat()
    return value


# ---------------------------------------------------------------------------------------------
# Bays (工位)


def bays(session: Session, store_id: int) -> list[Bay]:
    return list(session.scalars(select(Bay).where(Bay.store_id == store_id).order_by(Bay.bay_type, Bay.code)))


def add_bay(session: Session, actor: StaffActor, store_id: int, data: dict[str, Any]) -> Bay:
    _can_edit(actor)
    from backend.platform.db import DuplicateKey, unique_savepoint

    bay = Bay(store_id=store_id, code=data["code"], bay_type=data["bay_type"], active=data.get("active", True))
    try:
        with unique_savepoint(session):
            session.add(bay)
    except DuplicateKey:
        raise AppError("store.bay_exists", 409, errors={"json": {"code": ["already used at this store"]}}) from None
    write_audit(session, actor, "store.bay_added", "org_unit", store_id, {"code": bay.code, "bay_type": bay.bay_type})
    return bay
