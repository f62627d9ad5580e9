"""Owner API of stores (/api/app/v1/stores) and service types (/api/app/v1/service-types)."""

from __future__ import annotations

from typing import Any

from backend.platform.api import Blueprint, self_only
from backend.platform.db import db, utcnow
from backend.stores import service
from backend.stores.schemas import ServiceTypeListSchema, StoreDetailSchema, StoreListSchema, StoresQuerySchema

blp = Blueprint("owner_stores", __name__, url_prefix="/api/app/v1", audience="owner", description="门店 — stores")


@blp.route("/stores")
@self_only
@blp.arguments(StoresQuerySchema, location="query")
@blp.response(200, StoreListSchema)
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
@blp.response(200, StoreDetailSchema)
def store(org_unit_id: int) -> dict[str, Any]:
    """A store with its weekly hours and coming holidays / special days (a store not open for
    booking answers 404)."""
    return service.store_detail(db.session(), org_unit_id, service.local_day(utcnow()), owner=True)


@blp.route("/service-types")
@self_only
@blp.response(200, ServiceTypeListSchema)
def service_types() -> dict[str, Any]:
    """What can be booked: duration, labour and the kind of bay each needs."""
    return {"items": service.service_types(db.session())}
