"""Workbench API of maintenance booking (/api/workbench/v1/bookings..., capacity under
/api/workbench/v1/stores/<id>/... and /booking-slots/<id>).

Service advisors work their store's bookings (today's arrivals, check-in by the owner's QR or by
search, bay, start, complete, no-show, undo); managers those of their stores, and edit capacity.
An id outside the caller's scope answers 404.
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import func, select

from backend.booking import service
from backend.booking.api import BOOKING_EXAMPLE, CHECKIN_CODE_EXAMPLE, COMPLETED_EXAMPLE
from backend.booking.models import Booking
from backend.booking.schemas import (
    BookingBayInSchema,
    CapacityTemplateInSchema,
    CapacityTemplateSchema,
    CompleteInSchema,
    GeneratedSchema,
    GenerateInSchema,
    ReasonInSchema,
    ScanInSchema,
    SlotListSchema,
    SlotPatchSchema,
    SlotSchema,
    StaffBookingDetailSchema,
    StaffBookingPageSchema,
    StaffBookingQuerySchema,
    StaffBookingSchema,
    StepInSchema,
    StoreSlotsQuerySchema,
)
from backend.customers.models import Car, Customer
from backend.org.scope import get_scoped_or_404
from backend.platform.api import Blueprint, current_staff, role_required, scoped
from backend.platform.db import db, utcnow
from backend.stores.models import ServiceType
from backend.stores.service import local_day
from workbench.scoping import scope_first

blp = Blueprint("wb_booking", __name__, url_prefix="/api/workbench/v1", audience="staff", description="预约 — booking")

MANAGERS = ("store_manager", "region_manager", "division_manager", "group_admin")

# Examples in the OpenAPI document: booking 88 of 陈志强 at 广州天河 (store 3) on 2026-12-05,
# 09:00 local (01:00 UTC); answers carry times in UTC.
STAFF_BOOKING_EXAMPLE = {
    **BOOKING_EXAMPLE,
    "customer_name": "陈志强",
    "plate": "粤A·3K8M2",
    "service_name": "常规保养",
}
ARRIVED_EXAMPLE = {
    **STAFF_BOOKING_EXAMPLE,
    "status": "arrived",
    "version": 2,
    "arrived_at": "2026-12-05T00:52:00+00:00",
}
WITH_BAY_EXAMPLE = {**ARRIVED_EXAMPLE, "bay_id": 31, "version": 3}
STARTED_EXAMPLE = {**WITH_BAY_EXAMPLE, "status": "in_service", "version": 4, "started_at": "2026-12-05T01:03:00+00:00"}
COMPLETED_STAFF_EXAMPLE = {
    **STARTED_EXAMPLE,
    "status": "completed",
    "version": 5,
    "completed_at": "2026-12-05T02:05:00+00:00",
    "mileage_km": 35210,
    "work_done": ["更换机油机滤", "检查刹车片"],
}
NO_SHOW_EXAMPLE = {
    **STAFF_BOOKING_EXAMPLE,
    "status": "no_show",
    "version": 2,
    "no_show_at": "2026-12-05T01:35:00+00:00",
}
STORE_CANCELLED_EXAMPLE = {
    **STAFF_BOOKING_EXAMPLE,
    "status": "cancelled",
    "version": 2,
    "cancel_reason": "技师临时请假，已电话沟通改期",
    "cancelled_by": "store",
    "cancelled_at": "2026-12-04T09:10:00+00:00",
}
UNDONE_EXAMPLE = {**STAFF_BOOKING_EXAMPLE, "version": 3}
BOOKING_PAGE_EXAMPLE = {
    "items": [
        ARRIVED_EXAMPLE,
        {
            **COMPLETED_EXAMPLE,
            "id": 90,
            "customer_id": 9,
            "car_id": 17,
            "service_type_id": 5,
            "slot_id": 5123,
            "starts_at": "2026-12-05T03:00:00+00:00",
            "ends_at": "2026-12-05T03:45:00+00:00",
            "advisor_id": 16,
            "status": "booked",
            "bay_id": None,
            "version": 1,
            "arrived_at": None,
            "started_at": None,
            "completed_at": None,
            "mileage_km": None,
            "work_done": None,
            "created_at": "2026-12-01T11:40:00+00:00",
            "customer_name": "林晓敏",
            "plate": "粤A·D52817",
            "service_name": "轮胎服务",
        },
    ],
    "total": 2,
    "page": 1,
    "page_size": 50,
}
BOOKING_DETAIL_EXAMPLE = {
    **ARRIVED_EXAMPLE,
    "history": [
        {
            "kind": "booking_created",
            "occurred_at": "2026-12-03T02:00:00+00:00",
            "channel": "miniprogram",
            "payload": {
                "booking_id": 88,
                "car_id": 12,
                "status": "booked",
                "starts_at": "2026-12-05T01:00:00+00:00",
                "service": "basic_maintenance",
            },
        },
        {
            "kind": "arrived",
            "occurred_at": "2026-12-05T00:52:00+00:00",
            "channel": "store",
            "payload": {
                "booking_id": 88,
                "car_id": 12,
                "status": "arrived",
                "starts_at": "2026-12-05T01:00:00+00:00",
                "from": "booked",
                "by": 15,
                "by_qr": True,
            },
        },
    ],
}
SLOTS_EXAMPLE = {
    "items": [
        {
            "id": 5121,
            "store_id": 3,
            "day": "2026-12-05",
            "starts_at": "2026-12-05T01:00:00+00:00",
            "ends_at": "2026-12-05T02:00:00+00:00",
            "bay_type": "quick",
            "capacity": 3,
            "booked": 1,
        },
        {
            "id": 5129,
            "store_id": 3,
            "day": "2026-12-05",
            "starts_at": "2026-12-05T01:00:00+00:00",
            "ends_at": "2026-12-05T02:00:00+00:00",
            "bay_type": "general",
            "capacity": 2,
            "booked": 2,
        },
    ]
}
TEMPLATE_EXAMPLE = {
    "rows": [
        {"weekday": 0, "block_start": "09:00:00", "block_minutes": 60, "bay_type": "quick", "capacity": 3},
        {"weekday": 0, "block_start": "10:00:00", "block_minutes": 60, "bay_type": "quick", "capacity": 3},
        {"weekday": 0, "block_start": "09:00:00", "block_minutes": 60, "bay_type": "general", "capacity": 2},
        {"weekday": 0, "block_start": "13:00:00", "block_minutes": 240, "bay_type": "body_paint", "capacity": 1},
    ]
}
# The same rows as sent: block starts as HH:MM.
TEMPLATE_IN_EXAMPLE = {"rows": [{**row, "block_start": row["block_start"][:5]} for row in TEMPLATE_EXAMPLE["rows"]]}


def _views(session: Any, bookings: list[Booking]) -> list[dict[str, Any]]:
    """Bookings with the customer's name, the plate and the service name: three queries in all."""
    customer_ids = {b.customer_id for b in bookings}
    car_ids = {b.car_id for b in bookings}
    names = (
        dict(session.execute(select(Customer.id, Customer.name).where(Customer.id.in_(customer_ids))).all())
        if customer_ids
        else {}
    )
    plates = dict(session.execute(select(Car.id, Car.plate).where(Car.id.in_(car_ids))).all()) if car_ids else {}
    services = dict(session.execute(select(ServiceType.id, ServiceType.name)).all()) if bookings else {}
    out = []
    for b in bookings:
        view = {c: getattr(b, c) for c in StaffBookingSchema().fields if hasattr(b, c)}
        view.update(
            customer_name=names.get(b.customer_id),
            plate=plates.get(b.car_id),
            service_name=services.get(b.service_type_id),
        )
        out.append(view)
    return out


def _one(booking: Booking) -> dict[str, Any]:
    return _views(db.session(), [booking])[0]


@blp.route("/bookings")
@scoped("booking")
@blp.arguments(StaffBookingQuerySchema, location="query")
@blp.response(200, StaffBookingPageSchema, example=BOOKING_PAGE_EXAMPLE)
def list_bookings(args: dict[str, Any]) -> dict[str, Any]:
    """Bookings of my stores for a local day (default today: the day's arrivals), by start time;
    filter by status, store, `mine` (my bookings as their advisor) and part of the plate."""
    session = db.session()
    stmt = service.staff_query(current_staff(), args)
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    page, size = args["page"], args["page_size"]
    rows = list(session.scalars(stmt.order_by(Booking.starts_at, Booking.id).limit(size).offset((page - 1) * size)))
    return {"items": _views(session, rows), "total": total, "page": page, "page_size": size}


@blp.route("/bookings/<int:booking_id>")
@scoped("booking")
@blp.response(200, StaffBookingDetailSchema, example=BOOKING_DETAIL_EXAMPLE)
def get_booking(booking_id: int) -> dict[str, Any]:
    """A booking with its history (created, rescheduled, arrived, started, completed, undone ...)."""
    session = db.session()
    booking = get_scoped_or_404(session, current_staff(), "booking", booking_id)
    return {**_one(booking), "history": service.history(session, booking.id)}


@blp.route("/bookings/checkin", methods=["POST"])
@scoped("booking")
@blp.arguments(ScanInSchema, example={"token": CHECKIN_CODE_EXAMPLE["token"]})
@blp.response(200, StaffBookingSchema, example=ARRIVED_EXAMPLE)
@blp.alt_response(409, description="booking.already_arrived, booking.not_today, booking.invalid_state")
def scan_checkin(data: dict[str, Any]) -> dict[str, Any]:
    """Check in by scanning the owner's rotating code (410 `qr.expired`: ask for a refresh).
    A booking of another store answers 404; scanning it twice 409 `booking.already_arrived`."""
    session = db.session()
    booking = service.check_in_by_code(session, current_staff(), current_app.config["SECRET_KEY"], data["token"])
    return _one(booking)


@blp.route("/bookings/<int:booking_id>/checkin", methods=["POST"])
@scoped("booking")
@scope_first("booking", "booking_id")
@blp.arguments(StepInSchema, example={})
@blp.response(200, StaffBookingSchema, example={**ARRIVED_EXAMPLE, "arrived_at": "2026-12-05T00:55:00+00:00"})
def checkin(data: dict[str, Any], booking_id: int) -> dict[str, Any]:
    """Check in a booking found by search (plate, name)."""
    return _one(service.check_in(db.session(), current_staff(), booking_id))


@blp.route("/bookings/<int:booking_id>/bay", methods=["POST"])
@scoped("booking")
@scope_first("booking", "booking_id")
@blp.arguments(BookingBayInSchema, example={"bay_id": 31})
@blp.response(200, StaffBookingSchema, example=WITH_BAY_EXAMPLE)
def assign_bay(data: dict[str, Any], booking_id: int) -> dict[str, Any]:
    """Give an arrived booking a bay of the kind its service needs (audited)."""
    return _one(service.assign_bay(db.session(), current_staff(), booking_id, data["bay_id"]))


@blp.route("/bookings/<int:booking_id>/start", methods=["POST"])
@scoped("booking")
@scope_first("booking", "booking_id")
@blp.arguments(StepInSchema, example={})
@blp.response(200, StaffBookingSchema, example=STARTED_EXAMPLE)
def start(data: dict[str, Any], booking_id: int) -> dict[str, Any]:
    return _one(service.start(db.session(), current_staff(), booking_id))


@blp.route("/bookings/<int:booking_id>/complete", methods=["POST"])
@scoped("booking")
@scope_first("booking", "booking_id")
@blp.arguments(CompleteInSchema, example={"mileage_km": 35210, "work_done": ["更换机油机滤", "检查刹车片"]})
@blp.response(200, StaffBookingSchema, example=COMPLETED_STAFF_EXAMPLE)
def complete(data: dict[str, Any], booking_id: int) -> dict[str, Any]:
    """Complete with the mileage read and the work done: the car's mileage and last service date
    are updated, and campaigns hear of a `booking_completed` action."""
    return _one(service.complete(db.session(), current_staff(), booking_id, data))


@blp.route("/bookings/<int:booking_id>/no-show", methods=["POST"])
@scoped("booking")
@scope_first("booking", "booking_id")
@blp.arguments(StepInSchema, example={})
@blp.response(200, StaffBookingSchema, example=NO_SHOW_EXAMPLE)
def no_show(data: dict[str, Any], booking_id: int) -> dict[str, Any]:
    """Mark a booking whose start has passed as a no-show (a job does it after the grace period)."""
    return _one(service.mark_no_show(db.session(), current_staff(), booking_id))


@blp.route("/bookings/<int:booking_id>/cancel", methods=["POST"])
@scoped("booking")
@scope_first("booking", "booking_id")
@blp.arguments(ReasonInSchema, example={"reason": "技师临时请假，已电话沟通改期"})
@blp.response(200, StaffBookingSchema, example=STORE_CANCELLED_EXAMPLE)
def store_cancel(data: dict[str, Any], booking_id: int) -> dict[str, Any]:
    """Cancel on the store's side (the owner gets a subscribe message); audited."""
    return _one(service.store_cancel(db.session(), current_staff(), booking_id, data["reason"]))


@blp.route("/bookings/<int:booking_id>/undo", methods=["POST"])
@scoped("booking")
@scope_first("booking", "booking_id")
@blp.arguments(ReasonInSchema, example={"reason": "误点签到"})
@blp.response(200, StaffBookingSchema, example=UNDONE_EXAMPLE)
def undo(data: dict[str, Any], booking_id: int) -> dict[str, Any]:
    """Step back one status: arrived → booked, in service → arrived, no-show → booked (audited)."""
    return _one(service.undo(db.session(), current_staff(), booking_id, data["reason"]))


# ---------------------------------------------------------------------------------------------
# Capacity


@blp.route("/stores/<int:org_unit_id>/slots")
@scoped("org_unit")
@scope_first("org_unit", "org_unit_id")
@blp.arguments(StoreSlotsQuerySchema, location="query")
@blp.response(200, SlotListSchema, example=SLOTS_EXAMPLE)
def store_slots(args: dict[str, Any], org_unit_id: int) -> dict[str, Any]:
    """The store's capacity per block and bay type, with places booked."""
    first = args.get("day") or local_day(utcnow())
    bay_type = args["bay_type"].value if args.get("bay_type") else None
    return {"items": service.store_slots(db.session(), org_unit_id, first, args["days"], bay_type)}


@blp.route("/booking-slots/<int:slot_id>", methods=["PATCH"])
@scoped("booking_slot")
@scope_first("booking_slot", "slot_id")
@blp.arguments(SlotPatchSchema, example={"capacity": 6})
@blp.response(200, SlotSchema, example={**SLOTS_EXAMPLE["items"][0], "capacity": 6})
@blp.alt_response(409, description="booking.capacity_below_booked")
def patch_slot(data: dict[str, Any], slot_id: int) -> Any:
    """Change a slot's places (never below those booked)."""
    return service.set_slot_capacity(db.session(), current_staff(), slot_id, data["capacity"])


@blp.route("/stores/<int:org_unit_id>/capacity-template")
@scoped("org_unit")
@scope_first("org_unit", "org_unit_id")
@blp.response(200, CapacityTemplateSchema, example=TEMPLATE_EXAMPLE)
def get_template(org_unit_id: int) -> dict[str, Any]:
    return {"rows": service.template_of(db.session(), org_unit_id)}


@blp.route("/stores/<int:org_unit_id>/capacity-template", methods=["PUT"])
@scoped("org_unit")
@scope_first("org_unit", "org_unit_id")
@role_required(*MANAGERS)
@blp.arguments(CapacityTemplateInSchema, example=TEMPLATE_IN_EXAMPLE)
@blp.response(200, CapacityTemplateSchema, example=TEMPLATE_EXAMPLE)
def put_template(data: dict[str, Any], org_unit_id: int) -> dict[str, Any]:
    """Managers: the weekly template the capacity job generates slots from (days ahead are made
    hourly; days already made keep their slots — edit those per slot)."""
    return {"rows": service.set_template(db.session(), current_staff(), org_unit_id, data["rows"])}


@blp.route("/stores/<int:org_unit_id>/capacity/generate", methods=["POST"])
@scoped("org_unit")
@scope_first("org_unit", "org_unit_id")
@role_required(*MANAGERS)
@blp.arguments(GenerateInSchema, example={"start": "2026-12-07", "days": 14})
@blp.response(200, GeneratedSchema, example={"created": 358})
def generate(data: dict[str, Any], org_unit_id: int) -> dict[str, Any]:
    """Managers: make the slots of the coming days now (the job does it too); idempotent."""
    first = data.get("start") or local_day(utcnow())
    return {"created": service.generate_store(db.session(), org_unit_id, first, data["days"])}
