"""Owner API of events (/api/app/v1/events, /api/app/v1/me/event-registrations).

A paid event (`fee_kind` cash) holds the seat for `EVENT_PAY_MINUTES`: pay it with
`POST /api/app/v1/payments/orders {"business_type": "event_fee", "business_id": "<registration id>"}`
(the amount comes from the sign-up); the sign-up is confirmed when WeChat Pay reports it paid.
"""

from __future__ import annotations

from typing import Any

from backend.customers.models import Customer
from backend.events import service
from backend.events.models import Event, EventRegistration
from backend.events.schemas import (
    EventNoBodySchema,
    OwnerEventListSchema,
    OwnerEventQuerySchema,
    OwnerEventSchema,
    QrSchema,
    RegistrationListSchema,
    RegistrationSchema,
    SignUpInSchema,
)
from backend.platform.api import Blueprint, current_member, self_only
from backend.platform.db import db
from backend.platform.errors import AppError
from backend.platform.idempotency import idempotent

blp = Blueprint("owner_events", __name__, url_prefix="/api/app/v1", audience="owner", description="活动 — events")

REGISTRATION_EXAMPLE = {
    "id": 812,
    "event_id": 31,
    "customer_id": 7,
    "state": "waitlisted",
    "party_size": 2,
    "waitlist_position": 3,
    "offer_expires_at": None,
    "hold_expires_at": None,
    "fee_points": 0,
    "fee_fen": 0,
    "payment_order_id": None,
    "created_at": "2026-12-02T08:00:00+00:00",
}


def registration_view(session: Any, reg: EventRegistration, positions: dict[int, int] | None = None) -> dict:
    view = {c: getattr(reg, c) for c in RegistrationSchema().fields if hasattr(reg, c)}
    if positions is None:
        view["waitlist_position"] = service.waitlist_position(session, reg)
    else:
        view["waitlist_position"] = positions.get(reg.id)
    return view


def _me() -> Customer:
    customer = db.session().get(Customer, current_member().customer_id)
    if customer is None:
        raise AppError("member.not_found", 404)
    return customer


def _event_view(session: Any, event: Event, mine: EventRegistration | None) -> dict[str, Any]:
    view = {c: getattr(event, c) for c in OwnerEventSchema().fields if hasattr(event, c)}
    view["my_registration"] = registration_view(session, mine) if mine is not None else None
    return view


@blp.route("/events")
@self_only
@blp.arguments(OwnerEventQuerySchema, location="query")
@blp.response(200, OwnerEventListSchema)
def list_events(args: dict[str, Any]) -> dict[str, Any]:
    """Published events not yet over, soonest first, each with my active sign-up if any."""
    session = db.session()
    events = service.open_events(session, store_id=args.get("store_id"))
    me = current_member().customer_id
    mine = service.active_registrations(session, me, [e.id for e in events])
    return {"items": [_event_view(session, e, mine.get(e.id)) for e in events]}


@blp.route("/events/<int:event_id>")
@self_only
@blp.response(200, OwnerEventSchema)
def get_event(event_id: int) -> dict[str, Any]:
    session = db.session()
    event = service.owner_event(session, event_id)
    return _event_view(session, event, service.active_registration(session, current_member().customer_id, event.id))


@blp.route("/events/<int:event_id>/registrations", methods=["POST"])
@self_only
@idempotent
@blp.arguments(SignUpInSchema, example={"party_size": 2})
@blp.response(201, RegistrationSchema, example=REGISTRATION_EXAMPLE)
def sign_up(data: dict[str, Any], event_id: int) -> dict[str, Any]:
    """Sign up for `party_size` seats (at most the event's `max_party_size`).

    A free seat: `confirmed` (a points fee is spent now), or `pending_payment` for a cash fee
    (pay before `hold_expires_at`). No seat: `waitlisted` with `waitlist_position`; a freed seat
    is then offered (`offered`, accept before `offer_expires_at`).

    Refusals: 409 `event.signup_not_open` / `event.signup_closed` / `event.already_signed_up` /
    `event.full` (waitlist full too) / `event.cancelled` / `points.insufficient`; 422
    `event.party_size_exceeded`; 403 `event.not_eligible` (`errors.reason` tier or segment)."""
    session = db.session()
    reg = service.sign_up(session, _me(), event_id, data["party_size"])
    return registration_view(session, reg)


@blp.route("/me/event-registrations")
@self_only
@blp.response(200, RegistrationListSchema)
def my_registrations() -> dict[str, Any]:
    """My sign-ups, newest first."""
    session = db.session()
    regs = service.member_registrations(session, current_member().customer_id)
    positions = service.waitlist_positions(session, regs)
    return {"items": [registration_view(session, r, positions) for r in regs]}


@blp.route("/me/event-registrations/<int:registration_id>")
@self_only
@blp.response(200, RegistrationSchema)
def my_registration(registration_id: int) -> dict[str, Any]:
    session = db.session()
    return registration_view(
        session, service.member_registration(session, current_member().customer_id, registration_id)
    )


@blp.route("/me/event-registrations/<int:registration_id>/cancel", methods=["POST"])
@self_only
@blp.arguments(EventNoBodySchema)
@blp.response(200, RegistrationSchema)
def cancel(_body: dict[str, Any], registration_id: int) -> dict[str, Any]:
    """Cancel my sign-up, decline an offered seat or leave the waitlist. A confirmed or unpaid
    seat can be given back only before the cancel cut-off (409 `event.cancel_cutoff_passed`);
    a points fee is restored, a paid fee refunded in full."""
    session = db.session()
    return registration_view(session, service.cancel(session, current_member().customer_id, registration_id))


@blp.route("/me/event-registrations/<int:registration_id>/accept", methods=["POST"])
@self_only
@blp.arguments(EventNoBodySchema)
@blp.response(200, RegistrationSchema)
def accept(_body: dict[str, Any], registration_id: int) -> dict[str, Any]:
    """Take the seat offered to me from the waitlist (409 `event.no_offer`, `event.offer_expired`)."""
    session = db.session()
    return registration_view(session, service.accept_offer(session, current_member().customer_id, registration_id))


@blp.route("/me/event-registrations/<int:registration_id>/qr")
@self_only
@blp.response(200, QrSchema)
def checkin_qr(registration_id: int) -> dict[str, Any]:
    """A rotating check-in token for my sign-up: show it as a QR and refresh it every minute."""
    return service.checkin_qr(db.session(), current_member().customer_id, registration_id)
