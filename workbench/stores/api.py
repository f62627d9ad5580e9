"""Workbench API of stores: profile, weekly hours, holidays and special days, bays
(/api/workbench/v1/stores...). Managers edit the stores of their scope; advisors read theirs.
A store outside the caller's scope answers 404."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.org.models import OrgKind, OrgUnit
from backend.org.scope import scope_query
from backend.platform.api import Blueprint, current_staff, scoped
from backend.platform.db import db, utcnow
from backend.stores import service
from backend.stores.api import HOURS_EXAMPLE, OVERRIDE_EXAMPLE, PANYU, STORE_DETAIL_EXAMPLE, TIANHE
from backend.stores.models import StoreProfile
from backend.stores.schemas import (
    BayInSchema,
    BayListSchema,
    BaySchema,
    OverrideInSchema,
    OverrideSchema,
    ProfileInSchema,
    StoreDetailSchema,
    StoreListSchema,
    WeeklyHoursInSchema,
    WeeklyHoursSchema,
)
from workbench.scoping import scope_first

blp = Blueprint("wb_stores", __name__, url_prefix="/api/workbench/v1", audience="staff", description="门店 — stores")

FUTIAN = {
    "id": 5,
    "name": "深圳福田一汽-大众4S店",
    "code": "S03",
    "address": "深圳市福田区深南大道6008号",
    "latitude": 22.541,
    "longitude": 114.042,
    "phone": "0755-8888-1003",
    "brands": ["一汽-大众"],
    "bookable": True,
    "distance_km": None,
}
STORE_LIST_EXAMPLE = {"items": [{**TIANHE, "distance_km": None}, {**PANYU, "distance_km": None}, FUTIAN]}
PROFILE_EXAMPLE = {k: TIANHE[k] for k in ("address", "latitude", "longitude", "phone", "brands", "bookable")}
HOURS_IN_EXAMPLE = {
    "days": [
        {"weekday": day, "opens": "08:30", "closes": "17:00" if day == 6 else "18:00", "labour_cap_minutes": 4800}
        for day in range(7)
    ]
}
BAYS_EXAMPLE = {
    "items": [
        {"id": 31, "store_id": 3, "code": "Q1", "bay_type": "quick", "active": True},
        {"id": 32, "store_id": 3, "code": "Q2", "bay_type": "quick", "active": True},
        {"id": 33, "store_id": 3, "code": "G1", "bay_type": "general", "active": True},
        {"id": 34, "store_id": 3, "code": "B1", "bay_type": "body_paint", "active": True},
        {"id": 35, "store_id": 3, "code": "W1", "bay_type": "wash", "active": False},
    ]
}


def _detail(org_unit_id: int) -> dict[str, Any]:
    return service.store_detail(db.session(), org_unit_id, service.local_day(utcnow()), owner=False)


@blp.route("/stores")
@scoped("org_unit")
@blp.response(200, StoreListSchema, example=STORE_LIST_EXAMPLE)
def list_stores() -> dict[str, Any]:
    """The stores of my scope with their profiles."""
    session = db.session()
    stmt = scope_query(select(OrgUnit).where(OrgUnit.kind == OrgKind.STORE), current_staff(), "org_unit")
    units = list(session.scalars(stmt.order_by(OrgUnit.id).limit(1000)))
    profiles = {
        p.store_id: p
        for p in session.scalars(select(StoreProfile).where(StoreProfile.store_id.in_([u.id for u in units])))
    }
    empty = StoreProfile(address="", brands=[], bookable=False)
    return {"items": [service.store_view(u, profiles.get(u.id, empty)) for u in units]}


@blp.route("/stores/<int:org_unit_id>")
@scoped("org_unit")
@scope_first("org_unit", "org_unit_id")
@blp.response(200, StoreDetailSchema, example=STORE_DETAIL_EXAMPLE)
def get_store(org_unit_id: int) -> dict[str, Any]:
    return _detail(org_unit_id)


@blp.route("/stores/<int:org_unit_id>", methods=["PATCH"])
@scoped("org_unit")
@scope_first("org_unit", "org_unit_id")
@blp.arguments(ProfileInSchema, example=PROFILE_EXAMPLE)
@blp.response(200, StoreDetailSchema, example=STORE_DETAIL_EXAMPLE)
def patch_store(data: dict[str, Any], org_unit_id: int) -> dict[str, Any]:
    """Managers: address, coordinates, phone, brands served, open for online booking."""
    service.store_unit_or_404(db.session(), org_unit_id)
    service.update_profile(db.session(), current_staff(), org_unit_id, data)
    return _detail(org_unit_id)


@blp.route("/stores/<int:org_unit_id>/hours", methods=["PUT"])
@scoped("org_unit")
@scope_first("org_unit", "org_unit_id")
@blp.arguments(WeeklyHoursInSchema, example=HOURS_IN_EXAMPLE)
@blp.response(200, WeeklyHoursSchema, example={"days": HOURS_EXAMPLE})
def put_hours(data: dict[str, Any], org_unit_id: int) -> dict[str, Any]:
    """Managers: replace the weekly hours (weekdays not listed are closed); each day may carry a
    labour cap in minutes, applied to days generated from then on."""
    service.store_unit_or_404(db.session(), org_unit_id)
    return {"days": service.set_weekly_hours(db.session(), current_staff(), org_unit_id, data["days"])}


@blp.route("/stores/<int:org_unit_id>/overrides", methods=["POST"])
@scoped("org_unit")
@scope_first("org_unit", "org_unit_id")
@blp.arguments(OverrideInSchema, example={"day": "2027-01-01", "closed": True, "note": "元旦"})
@blp.response(200, OverrideSchema, example=OVERRIDE_EXAMPLE)
def put_override(data: dict[str, Any], org_unit_id: int) -> Any:
    """Managers: a holiday (closed) or other hours for one date (replaces that date's override).
    Slots of a closed day are not offered and cannot be booked; bookings already made stay."""
    service.store_unit_or_404(db.session(), org_unit_id)
    return service.put_override(db.session(), current_staff(), org_unit_id, data)


@blp.route("/stores/<int:org_unit_id>/overrides/<int:override_id>", methods=["DELETE"])
@scoped("org_unit")
@scope_first("org_unit", "org_unit_id")
@blp.response(204)
def delete_override(org_unit_id: int, override_id: int) -> None:
    service.delete_override(db.session(), current_staff(), org_unit_id, override_id)


@blp.route("/stores/<int:org_unit_id>/bays")
@scoped("org_unit")
@scope_first("org_unit", "org_unit_id")
@blp.response(200, BayListSchema, example=BAYS_EXAMPLE)
def list_bays(org_unit_id: int) -> dict[str, Any]:
    return {"items": service.bays(db.session(), org_unit_id)}


@blp.route("/stores/<int:org_unit_id>/bays", methods=["POST"])
@scoped("org_unit")
@scope_first("org_unit", "org_unit_id")
@blp.arguments(BayInSchema, example={"code": "Q3", "bay_type": "quick"})
@blp.response(201, BaySchema, example={"id": 36, "store_id": 3, "code": "Q3", "bay_type": "quick", "active": True})
def add_bay(data: dict[str, Any], org_unit_id: int) -> Any:
    service.store_unit_or_404(db.session(), org_unit_id)
    return service.add_bay(db.session(), current_staff(), org_unit_id, data)
