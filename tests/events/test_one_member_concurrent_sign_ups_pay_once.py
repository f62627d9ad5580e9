"""One owner's sign-up tapped at once on several phones (no shared Idempotency-Key), for an event
with a points fee: one sign-up, one seat, the fee spent once (real threads on MariaDB)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.events.models import Event, EventRegistration
from backend.platform.db import commit, db
from backend.points.models import PointsAccount, PointsLedger
from tests.events.conftest import APP, create_event
from tests.threads import run_threads

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def test_one_owner_signing_up_on_five_phones_at_once_holds_one_seat_and_pays_once(
    app: Any, place: Any, make_owner: Any
) -> None:
    from backend.points.service import earn

    client = app.test_client()
    event = create_event(client, place.h(), capacity=3, max_party_size=2, fee_kind="points", fee_points=100)
    owner = make_owner(place.unit)
    with app.app_context():
        s = db.session()
        earn(s, owner.id, 1000, key=f"probe-grant:{owner.id}", reason_code="test", operator="system:test")
        commit(s)
        db.session.remove()
    headers = owner.headers
    results = run_threads(
        5,
        lambda i: client.post(f"{APP}/events/{event['id']}/registrations", json={"party_size": 2}, headers=headers),
    )
    statuses = sorted(getattr(r, "status_code", repr(r)) for r in results)
    bodies = [r.get_json() if hasattr(r, "get_json") else repr(r) for r in results]
    assert statuses == [201, 409, 409, 409, 409], bodies
    assert {b["code"] for b in bodies if "code" in b and "state" not in b} == {"event.already_signed_up"}, bodies
    with app.app_context():
        s = db.session()
        try:
            row = s.get(Event, event["id"])
            regs = s.scalar(select(func.count()).select_from(EventRegistration))
            spends = s.scalars(select(PointsLedger.delta).where(PointsLedger.reason_code == "event_fee")).all()
            available = s.scalar(select(PointsAccount.available).where(PointsAccount.customer_id == owner.id))
        finally:
            db.session.remove()
    assert (row.seats_taken, row.waitlist_count, regs) == (2, 0, 1)
    assert spends == [-200] and available == 800
