"""Workbench API of events (/api/workbench/v1/events...).

Staff see the events organised in their subtree, those organised above them and those held at
their store; managers and marketing staff create, edit, publish and cancel the events of the
units they manage (a group event needs a group-level role). Staff of the venue store check
members in by scanning their rotating QR. An id outside the caller's scope answers 404.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import func, select

from backend.customers.models import Customer
from backend.events import service
from backend.events.api import registration_view
from backend.events.models import Event
from backend.events.schemas import (
    CheckInInSchema,
    EventCancelInSchema,
    EventInSchema,
    EventNoBodySchema,
    EventPatchSchema,
    RegistrationQuerySchema,
    StaffEventPageSchema,
    StaffEventQuerySchema,
    StaffEventSchema,
    StaffRegistrationListSchema,
    StaffRegistrationSchema,
)
from backend.org.scope import get_scoped_or_404
from backend.platform.api import Blueprint, current_staff, scoped
from backend.platform.db import db
from backend.platform.idempotency import idempotent
from workbench.scoping import scope_first

blp = Blueprint("wb_events", __name__, url_prefix="/api/workbench/v1", audience="staff", description="活动 — events")

EVENT_EXAMPLE = {
    "title": "冬季免费检测日",
    "place": "广州天河一汽-大众4S店 售后大厅",
    "starts_at": "2026-12-20T09:30:00+08:00",
    "ends_at": "2026-12-20T12:00:00+08:00",
    "signup_closes_at": "2026-12-19T20:00:00+08:00",
    "cancel_cutoff_at": "2026-12-19T12:00:00+08:00",
    "capacity": 30,
    "max_party_size": 2,
    "eligible_tiers": ["silver", "gold", "platinum"],
    "fee_kind": "points",
    "fee_points": 100,
    "attendance_points": 50,
}


@blp.route("/events")
class Events(MethodView):
    @scoped("event")
    @blp.arguments(StaffEventQuerySchema, location="query")
    @blp.response(200, StaffEventPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Events in my scope, soonest first, filtered by status and venue store."""
        session = db.session()
        stmt = service.staff_events_query(current_staff(), args)
        total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
        page, size = args["page"], args["page_size"]
        items = session.scalars(
            stmt.order_by(Event.starts_at.desc(), Event.id.desc()).limit(size).offset((page - 1) * size)
        ).all()
        return {"items": items, "total": total, "page": page, "page_size": size}

    @scoped("event")
    @idempotent
    @blp.arguments(EventInSchema, example=EVENT_EXAMPLE)
    @blp.response(201, StaffEventSchema)
    def post(self, data: dict[str, Any]) -> Event:
        """Create a draft event organised by `org_unit_id` (default: my unit), which I must manage."""
        return service.create_event(db.session(), current_staff(), data)


@blp.route("/events/<int:event_id>")
class EventItem(MethodView):
    @scoped("event")
    @blp.response(200, StaffEventSchema)
    def get(self, event_id: int) -> Event:
        return get_scoped_or_404(db.session(), current_staff(), "event", event_id)

    @scoped("event")
    @scope_first("event", "event_id")
    @blp.arguments(EventPatchSchema)
    @blp.response(200, StaffEventSchema)
    def patch(self, data: dict[str, Any], event_id: int) -> Event:
        """Edit a draft; a published event only its texts and a larger capacity (the new seats
        are offered to the waitlist at once)."""
        return service.update_event(db.session(), current_staff(), event_id, data)


@blp.route("/events/<int:event_id>/publish", methods=["POST"])
@scoped("event")
@scope_first("event", "event_id")
@blp.arguments(EventNoBodySchema)
@blp.response(200, StaffEventSchema)
def publish(_body: dict[str, Any], event_id: int) -> Event:
    """Open the event to owners (sign-up follows its window)."""
    return service.publish_event(db.session(), current_staff(), event_id)


@blp.route("/events/<int:event_id>/cancel", methods=["POST"])
@scoped("event")
@scope_first("event", "event_id")
@blp.arguments(EventCancelInSchema, example={"reason": "台风预警，活动取消"})
@blp.response(200, StaffEventSchema)
def cancel(data: dict[str, Any], event_id: int) -> Event:
    """Call the event off: every sign-up is cancelled, fees are given back, owners are told."""
    return service.cancel_event(db.session(), current_staff(), event_id, data["reason"])


@blp.route("/events/<int:event_id>/registrations")
@scoped("event")
@blp.arguments(RegistrationQuerySchema, location="query")
@blp.response(200, StaffRegistrationListSchema)
def registrations(args: dict[str, Any], event_id: int) -> dict[str, Any]:
    """The event's sign-ups (waitlisted ones with their position), in sign-up order: every one
    for the staff who run the event (its managers, the venue store), else those of the
    customers in my scope."""
    session = db.session()
    event = get_scoped_or_404(session, current_staff(), "event", event_id)
    states = [s.value for s in args.get("state") or []] or None
    regs = service.event_registrations(session, event.id, states, actor=current_staff())
    positions = service.waitlist_positions(session, regs)
    ids = {r.customer_id for r in regs}
    names = dict(session.execute(select(Customer.id, Customer.name).where(Customer.id.in_(ids))).all()) if ids else {}
    items = []
    for reg in regs:
        view = registration_view(session, reg, positions)
        view["customer_name"] = names.get(reg.customer_id)
        view["checked_in_by"] = reg.checked_in_by
        items.append(view)
    return {"items": items}


@blp.route("/events/<int:event_id>/check-ins", methods=["POST"])
@scoped("event")
@scope_first("event", "event_id")
@blp.arguments(CheckInInSchema)
@blp.response(200, StaffRegistrationSchema)
def check_in(data: dict[str, Any], event_id: int) -> dict[str, Any]:
    """Check a member in by the token of their QR, inside the check-in window.

    Refusals (409, stable codes): `event.checkin_wrong_event`, `event.checkin_cancelled`,
    `event.checkin_already`, `event.checkin_unpaid`, `event.checkin_not_confirmed`,
    `event.checkin_too_early`, `event.checkin_too_late`; a bad token 422 `qr.invalid`, an old one
    410 `qr.expired`. The same scan (token nonce) sent again answers the same result, and
    attendance points are earned once."""
    session = db.session()
    event = get_scoped_or_404(session, current_staff(), "event", event_id)
    reg = service.check_in(session, current_staff(), event, data["token"], data.get("store_id"))
    view = registration_view(session, reg, {})
    customer = session.get(Customer, reg.customer_id)
    view["customer_name"] = customer.name if customer else None
    view["checked_in_by"] = reg.checked_in_by
    return view
