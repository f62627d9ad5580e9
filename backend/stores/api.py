"""Owner API of stores (/api/app/v1/stores) and service types (/api/app/v1/service-types)."""

from __future__ import annotations

from typing import Any

from backend.platform.api import Blueprint, self_only
from backend.platform.db import db, utcnow
from backend.stores import service
from backend.stores.schemas import ServiceTypeListSchema, StoreDetailSchema, StoreListSchema, StoresQuerySchema

blp = Blueprint("owner_stores", __name__, url_prefix="/api/app/v1", audience="owner", description="门店 — stores")

# Examples in the OpenAPI document (the workbench reuses them). Times of day are local (+08:00).
TIANHE = {
    "id": 3,
    "name": "广州天河一汽-大众4S店",
    "code": "S01",
    "address": "广州市天河区黄埔大道西668号",
    "latitude": 23.1291,
    "longitude": 113.354,
    "phone": "020-3888-1001",
    "brands": ["一汽-大众"],
    "bookable": True,
    "distance_km": 1.8,
}
PANYU = {
    "id": 4,
    "name": "广州番禺一汽-大众4S店",
    "code": "S02",
    "address": "广州市番禺区迎宾路168号",
    "latitude": 22.99,
    "longitude": 113.353,
    "phone": "020-3888-1002",
    "brands": ["一汽-大众"],
    "bookable": True,
    "distance_km": 16.3,
}
STORE_LIST_EXAMPLE = {"items": [TIANHE, PANYU]}
HOURS_EXAMPLE = [
    {"weekday": day, "opens": "08:30:00", "closes": "17:00:00" if day == 6 else "18:00:00", "labour_cap_minutes": 4800}
    for day in range(7)
]
OVERRIDE_EXAMPLE = {"id": 21, "day": "2027-01-01", "closed": True, "opens": None, "closes": None, "note": "元旦"}
STORE_DETAIL_EXAMPLE = {
    **TIANHE,
    "distance_km": None,
    "hours": HOURS_EXAMPLE,
    "overrides": [
        {
            "id": 20,
            "day": "2026-12-24",
            "closed": False,
            "opens": "09:00:00",
            "closes": "16:00:00",
            "note": "平安夜提前打烊",
        },
        OVERRIDE_EXAMPLE,
    ],
}
SERVICE_TYPES_EXAMPLE = {
    "items": [
        {
            "id": 1,
            "code": "basic_maintenance",
            "name": "常规保养",
            "duration_minutes": 60,
            "labour_minutes": 60,
            "bay_type": "quick",
        },
        {
            "id": 2,
            "code": "major_maintenance",
            "name": "大保养",
            "duration_minutes": 180,
            "labour_minutes": 180,
            "bay_type": "general",
        },
        {"id": 6, "code": "wash", "name": "洗车美容", "duration_minutes": 60, "labour_minutes": 30, "bay_type": "wash"},
    ]
}


@blp.route("/stores")
@self_only
@blp.arguments(StoresQuerySchema, location="query")
@blp.response(200, StoreListSchema, example=STORE_LIST_EXAMPLE)
def stores(args: dict[str, Any]) -> dict[str, Any]:
    """Stores near me: bookable stores, nearest first from `latitude`/`longitude` (without a
    point: in id order, `distance_km` null); `brand` keeps the stores serving that brand."""
    return {
        "items": service.stores_near(
            db.session(),
            latitude=args.get("latitude"),
            longitude=args.get("longitude"),
            brand=args.get("brand"),
            limit=args["limit"],
        )
    }


@blp.route("/stores/<int:org_unit_id>")
@self_only
@blp.response(200, StoreDetailSchema, example=STORE_DETAIL_EXAMPLE)
def store(org_unit_id: int) -> dict[str, Any]:
    """A store with its weekly hours and coming holidays / special days (a store not open for
    booking answers 404)."""
    return service.store_detail(db.session(), org_unit_id, service.local_day(utcnow()), owner=True)


@blp.route("/service-types")
@self_only
@blp.response(200, ServiceTypeListSchema, example=SERVICE_TYPES_EXAMPLE)
def service_types() -> dict[str, Any]:
    """What can be booked: duration, labour and the kind of bay each needs."""
    return {"items": service.service_types(db.session())}
