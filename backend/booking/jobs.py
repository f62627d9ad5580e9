"""Jobs of booking: capacity generated ahead from the weekly templates (hourly), reminders and
automatic no-shows (every five minutes). Each is safe to run twice at once: slots and day rows
are found by their unique keys, reminders claimed and no-shows taken by conditional updates."""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.booking import service
from backend.platform.jobs import job, periodic


@job("booking.generate_capacity", queue="low")
def generate_capacity(session: Session, slot: int | None = None) -> int:
    return service.generate_all(session)


@job("booking.send_reminders", queue="default")
def send_reminders(session: Session, slot: int | None = None) -> int:
    return service.send_reminders(session)


@job("booking.mark_no_shows", queue="default")
def mark_no_shows(session: Session, slot: int | None = None) -> int:
    return service.auto_no_shows(session)


periodic("booking.generate_capacity", 3600)
periodic("booking.send_reminders", 300)
periodic("booking.mark_no_shows", 300)
