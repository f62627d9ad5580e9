"""Out-of-scope event objects for tests/test_scope_enumeration.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any


def foreign_event_ids(session: Any, store: Any, customer: Any) -> dict[str, int]:
    """A draft event of another division's store (404 to the store-0 manager, and to owners:
    drafts are not shown) and another owner's sign-up for it."""
    from backend.events.models import Event, EventRegistration, RegistrationState
    from backend.platform.db import utcnow

    now = utcnow()
    event = Event(
        org_unit_id=store.id,
        store_id=store.id,
        title="scope",
        place="scope",
        starts_at=now + timedelta(days=2),
        ends_at=now + timedelta(days=2, hours=2),
        signup_opens_at=now,
        signup_closes_at=now + timedelta(days=1),
        cancel_cutoff_at=now + timedelta(days=1),
        checkin_opens_at=now + timedelta(days=2),
        checkin_closes_at=now + timedelta(days=2, hours=2),
        capacity=5,
    )
    session.add(event)
    session.flush()
    reg = EventRegistration(
        event_id=event.id,
        customer_id=customer.id,
        active_customer_id=customer.id,
        state=RegistrationState.CONFIRMED,
    )
    session.add(reg)
    session.flush()
    return {"event_id": event.id, "registration_id": reg.id}
