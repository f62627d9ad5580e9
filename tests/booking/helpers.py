"""Out-of-scope booking objects for tests/test_scope_enumeration.py."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any


def foreign_booking_ids(session: Any, store: Any, customer: Any, car: Any) -> dict[str, int]:
    """A slot, a booking and a calendar override of another division's store (404 to the
    store-0 manager; the booking is another owner's, so 404 to the owner too)."""
    from backend.booking.models import Booking, Slot
    from backend.platform.db import utcnow
    from backend.stores.models import StoreDayOverride
    from backend.stores.service import ensure_service_types, service_types

    ensure_service_types(session)
    start = utcnow() + timedelta(days=2)
    slot = Slot(
        store_id=store.id,
        day=start.date(),
        starts_at=start,
        ends_at=start + timedelta(hours=1),
        bay_type="quick",
        capacity=1,
        booked=1,
    )
    session.add(slot)
    session.flush()
    booking = Booking(
        customer_id=customer.id,
        car_id=car.id,
        store_id=store.id,
        service_type_id=service_types(session)[0].id,
        slot_id=slot.id,
        starts_at=start,
        ends_at=start + timedelta(hours=1),
        scheduled_at=utcnow(),
    )
    override = StoreDayOverride(store_id=store.id, day=date(2030, 1, 1), closed=True)
    session.add_all([booking, override])
    session.flush()
    return {"booking_id": booking.id, "slot_id": slot.id, "override_id": override.id}
