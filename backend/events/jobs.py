"""Jobs of events, and the payments hooks they register (business type "event_fee").

Periodic: lapsed offers pass to the next on the waitlist (every minute), unpaid holds with no
order in flight are released (every 5 minutes), reminders before the start and no-shows after
the check-in window (every 5 minutes). Each takes its rows under the event's lock or by a
conditional update, so two workers running it at once do the work once.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.events import service
from backend.payments.effects import BusinessEffect, register_effect
from backend.platform.jobs import job, periodic


@job("events.expire_offers", queue="default")
def expire_offers(session: Session, slot: int | None = None) -> int:
    return service.expire_offers(session)


@job("events.expire_holds", queue="low")
def expire_holds(session: Session, slot: int | None = None) -> int:
    return service.expire_holds(session)


@job("events.remind", queue="low")
def remind(session: Session, slot: int | None = None) -> int:
    return service.send_reminders(session)


@job("events.mark_no_shows", queue="low")
def mark_no_shows(session: Session, slot: int | None = None) -> int:
    return service.mark_no_shows(session)


@job(service.REFUND_JOB, queue="default")
def refund_fee(session: Session, registration_id: int) -> bool:
    return service.refund_fee(session, registration_id)


periodic("events.expire_offers", 60)
periodic("events.expire_holds", 300)
periodic("events.remind", 300)
periodic("events.mark_no_shows", 300)

register_effect(
    service.BUSINESS_TYPE,
    BusinessEffect(on_paid=service.on_paid, on_closed=service.on_closed, quote=service.quote),
)
