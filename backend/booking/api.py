"""Owner API of maintenance booking (/api/app/v1/booking/slots, /api/app/v1/bookings...).

Find a store (`GET /stores`), a service type (`GET /service-types`), the free slots for a car
(`GET /booking/slots`), then book with an Idempotency-Key (`POST /bookings`); reschedule and
cancel within the policy; show the rotating check-in code at the store.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import current_app

from backend.booking import service
from backend.booking.models import Booking
from backend.booking.schemas import (
    BookingInSchema,
    BookingListSchema,
    BookingSchema,
    CheckinCodeSchema,
    FreeSlotListSchema,
    MyBookingsQuerySchema,
    ReasonInSchema,
    RescheduleInSchema,
    SlotsQuerySchema,
)
from backend.platform.api import Blueprint, current_member, self_only
from backend.platform.db import db, utcnow
from backend.platform.idempotency import idempotent

blp = Blueprint(
    "owner_booking", __name__, url_prefix="/api/app/v1", audience="owner", description="维修保养预约 — booking"
)

# Examples in the OpenAPI document (the workbench reuses them). Answers carry times in UTC:
# 2026-12-05T01:00:00+00:00 is 09:00 in Guangzhou.
BOOKING_EXAMPLE = {
    "id": 88,
    "status": "booked",
    "customer_id": 7,
    "car_id": 12,
    "store_id": 3,
    "service_type_id": 1,
    "slot_id": 5121,
    "starts_at": "2026-12-05T01:00:00+00:00",
    "ends_at": "2026-12-05T02:00:00+00:00",
    "advisor_id": 15,
    "advisor_chosen": False,
    "bay_id": None,
    "note": "顺便检查胎压",
    "reschedule_count": 0,
    "version": 1,
    "cancel_reason": None,
    "cancelled_by": None,
    "cancelled_at": None,
    "arrived_at": None,
    "started_at": None,
    "completed_at": None,
    "no_show_at": None,
    "mileage_km": None,
    "work_done": None,
    "created_at": "2026-12-03T02:00:00+00:00",
}
RESCHEDULED_EXAMPLE = {
    **BOOKING_EXAMPLE,
    "slot_id": 5133,
    "starts_at": "2026-12-06T06:00:00+00:00",
    "ends_at": "2026-12-06T07:00:00+00:00",
    "reschedule_count": 1,
    "version": 2,
}
CANCELLED_EXAMPLE = {
    **BOOKING_EXAMPLE,
    "status": "cancelled",
    "version": 2,
    "cancel_reason": "行程有变",
    "cancelled_by": "owner",
    "cancelled_at": "2026-12-04T03:20:00+00:00",
}
COMPLETED_EXAMPLE = {
    **BOOKING_EXAMPLE,
    "id": 71,
    "status": "completed",
    "slot_id": 4870,
    "starts_at": "2026-09-12T02:00:00+00:00",
    "ends_at": "2026-09-12T03:00:00+00:00",
    "bay_id": 31,
    "note": None,
    "version": 4,
    "arrived_at": "2026-09-12T01:52:00+00:00",
    "started_at": "2026-09-12T02:05:00+00:00",
    "completed_at": "2026-09-12T03:10:00+00:00",
    "mileage_km": 30180,
    "work_done": ["更换机油机滤", "检查刹车片"],
    "created_at": "2026-09-08T12:30:00+00:00",
}
FREE_SLOTS_EXAMPLE = {
    "items": [
        {
            "slot_id": 5121,
            "day": "2026-12-05",
            "starts_at": "2026-12-05T01:00:00+00:00",
            "ends_at": "2026-12-05T02:00:00+00:00",
            "free": 2,
        },
        {
            "slot_id": 5122,
            "day": "2026-12-05",
            "starts_at": "2026-12-05T02:00:00+00:00",
            "ends_at": "2026-12-05T03:00:00+00:00",
            "free": 3,
        },
        {
            "slot_id": 5133,
            "day": "2026-12-06",
            "starts_at": "2026-12-06T06:00:00+00:00",
            "ends_at": "2026-12-06T07:00:00+00:00",
            "free": 1,
        },
    ]
}
CHECKIN_CODE_EXAMPLE = {
    "token": "eyJwIjoiYm9va2luZ19jaGVja2luIiwicyI6ODgsIm4iOiJjVXAwYURhMDd3TUUwWWlIIiwiaWF0Ijox"
    "Nzk2NDMxODAwLCJleHAiOjE3OTY0MzE4NjB9.WtqcBrBTbn2mr3kho0T6HZNn1otY1CKkbxAbgDM4fTo",
    "expires_at": "2026-12-05T00:51:00+00:00",
}


def own_first(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The booking must be mine before the body is validated: another owner's id answers 404."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        service.member_booking(db.session(), current_member(), kwargs["booking_id"])
        return fn(*args, **kwargs)

    return wrapper


@blp.route("/booking/slots")
@self_only
@blp.arguments(SlotsQuerySchema, location="query")
@blp.response(200, FreeSlotListSchema, example=FREE_SLOTS_EXAMPLE)
def free_slots(args: dict[str, Any]) -> dict[str, Any]:
    """Free slots of a store for my car and a service type over `days` local days from `start`:
    only slots with a place left, open, at least the minimum notice ahead and inside the horizon.
    A car not mine answers 422 `booking.car_invalid`; a store not serving its brand 422
    `booking.brand_not_served`."""
    items = service.free_slots(
        db.session(),
        current_member(),
        car_id=args["car_id"],
        store_id=args["store_id"],
        service_type_id=args["service_type_id"],
        first=args.get("start"),
        days=args["days"],
    )
    return {"items": items}


@blp.route("/bookings", methods=["POST"])
@self_only
@idempotent
@blp.arguments(BookingInSchema, example={"car_id": 12, "service_type_id": 1, "slot_id": 5121, "note": "顺便检查胎压"})
@blp.response(201, BookingSchema, example=BOOKING_EXAMPLE)
@blp.alt_response(
    409, description="booking.slot_full, booking.store_closed, booking.active_limit, booking.blocked_no_show"
)
@blp.alt_response(
    422,
    description="booking.slot_in_past, booking.too_soon, booking.beyond_horizon, booking.car_invalid, "
    "booking.brand_not_served, booking.slot_mismatch, booking.advisor_invalid",
)
def book(data: dict[str, Any]) -> Booking:
    """Book a slot for my car. The place is taken atomically: a full slot answers 409
    `booking.slot_full` and nothing is written. Send an Idempotency-Key: a retried tap answers
    the same booking. Without `advisor_id` the store's least-loaded service advisor is assigned."""
    return service.book(db.session(), current_member(), data)


@blp.route("/me/bookings")
@self_only
@blp.arguments(MyBookingsQuerySchema, location="query")
@blp.response(200, BookingListSchema, example={"items": [BOOKING_EXAMPLE, COMPLETED_EXAMPLE]})
def my_bookings(args: dict[str, Any]) -> dict[str, Any]:
    """My bookings, latest start first (`active=true`: booked, arrived, in service)."""
    return {"items": service.member_bookings(db.session(), current_member(), active_only=args["active"])}


@blp.route("/bookings/<int:booking_id>")
@self_only
@blp.response(200, BookingSchema, example=BOOKING_EXAMPLE)
def my_booking(booking_id: int) -> Booking:
    return service.member_booking(db.session(), current_member(), booking_id)


@blp.route("/bookings/<int:booking_id>/reschedule", methods=["POST"])
@self_only
@idempotent
@own_first
@blp.arguments(RescheduleInSchema, example={"slot_id": 5133, "reason": "临时出差"})
@blp.response(200, BookingSchema, example=RESCHEDULED_EXAMPLE)
@blp.alt_response(409, description="booking.slot_full, booking.reschedule_cutoff, booking.reschedule_limit")
def reschedule(data: dict[str, Any], booking_id: int) -> Booking:
    """Move my booking to another slot: the old place is given back and the new one taken in one
    transaction (the new slot full: 409 and the booking stays where it was)."""
    return service.reschedule(db.session(), current_member(), booking_id, data)


@blp.route("/bookings/<int:booking_id>/cancel", methods=["POST"])
@self_only
@idempotent
@own_first
@blp.arguments(ReasonInSchema, example={"reason": "行程有变"})
@blp.response(200, BookingSchema, example=CANCELLED_EXAMPLE)
@blp.alt_response(409, description="booking.cancel_cutoff, booking.invalid_state")
def cancel(data: dict[str, Any], booking_id: int) -> Booking:
    """Cancel my booking with a reason (not later than the cut-off before its start)."""
    return service.cancel(db.session(), current_member(), booking_id, data["reason"])


@blp.route("/bookings/<int:booking_id>/checkin-code")
@self_only
@blp.response(200, CheckinCodeSchema, example=CHECKIN_CODE_EXAMPLE)
def checkin_code(booking_id: int) -> dict[str, Any]:
    """A rotating signed code (valid 60 s) for the store to scan at arrival; refresh it in the app."""
    session = db.session()
    booking = service.member_booking(session, current_member(), booking_id)
    return service.checkin_code(current_app.config["SECRET_KEY"], current_member(), booking, utcnow())
