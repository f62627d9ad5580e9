"""Probe: an event sign-up of a member whom staff are merging into one signed up for it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import Customer
from backend.platform.db import db, utcnow
from tests.threads import attempt, held_merge

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def test_signup_racing_a_merge_keeps_one_seat_on_the_survivor(app: Any, db_session: Any, tree: Any) -> None:
    from backend.events.models import Event, EventRegistration, EventStatus
    from backend.events.service import sign_up

    now = utcnow()
    store = tree.stores[0]
    event = Event(
        org_unit_id=store.id,
        store_id=store.id,
        title="试驾日",
        place="门店",
        status=EventStatus.PUBLISHED,
        starts_at=now + timedelta(days=2),
        ends_at=now + timedelta(days=2, hours=2),
        signup_opens_at=now - timedelta(hours=1),
        signup_closes_at=now + timedelta(days=1),
        cancel_cutoff_at=now + timedelta(days=1),
        checkin_opens_at=now + timedelta(days=2),
        checkin_closes_at=now + timedelta(days=2, hours=2),
        capacity=5,
    )
    a, b = Customer(name="甲"), Customer(name="乙")
    db_session.add_all([event, a, b])
    db_session.commit()
    sid, tid, event_id = a.id, b.id, event.id
    with app.app_context():
        s = db.session()
        sign_up(s, s.get(Customer, tid), event_id)
        s.commit()
        db.session.remove()
    with held_merge(app, sid, tid):
        outcome = attempt(app, lambda s: sign_up(s, s.get(Customer, sid), event_id))  # resolved before the merge
    with app.app_context():
        s = db.session()
        holders = s.scalars(select(EventRegistration.customer_id)).all()
        seats = s.get(Event, event_id).seats_taken
        db.session.remove()
    assert (outcome, holders, seats) == ("event.already_signed_up", [tid], 1)
