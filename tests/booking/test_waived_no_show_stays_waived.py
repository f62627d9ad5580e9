"""A no-show staff undid (waived) is not marked again by the automatic sweep, and a waived booking of a
day gone by does not count against the car's active bookings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from backend.booking import service
from backend.booking.models import Booking
from backend.platform.db import commit, db
from backend.touchpoints.models import Touchpoint
from tests.booking.conftest import NOW, WB, World, book, in_days, slot_id


def _run(app: Any, fn: Any) -> Any:
    with app.app_context():
        session = db.session()
        result = fn(session)
        commit(session)
        return result


def test_a_no_show_undone_by_staff_is_not_marked_again_by_the_sweep(
    app: Any, client: Any, world: World, clock: Any, monkeypatch: Any
) -> None:
    # The owner phoned: the store waives yesterday's automatic no-show (undo, audited). The next
    # sweeps must not mark it again, or the no-show rule blocks the owner once more.
    monkeypatch.setitem(app.config, "BOOKING_NO_SHOW_LIMIT", 1)
    svc = world.service["basic_maintenance"]
    booking = book(client, world.owner, slot_id(app, world.store.id, world.today, 10), svc).get_json()
    clock.move_to(NOW + timedelta(hours=2, minutes=31))
    assert _run(app, service.auto_no_shows) == 1
    clock.move_to(NOW + timedelta(days=1, hours=1))  # the next morning, 09:00 in Shanghai
    staff = world.headers(world.advisors[0])
    undone = client.post(f"{WB}/bookings/{booking['id']}/undo", json={"reason": "客户来电说明，免责"}, headers=staff)
    assert undone.status_code == 200, undone.get_json()
    assert _run(app, service.auto_no_shows) == 0
    clock.move_to(NOW + timedelta(days=1, hours=3))
    assert _run(app, service.auto_no_shows) == 0
    with app.app_context():
        s = db.session()
        assert s.get(Booking, booking["id"]).status != "no_show"
        kinds = s.scalars(select(Touchpoint.kind).where(Touchpoint.source == "booking").order_by(Touchpoint.id)).all()
    assert kinds == ["booking_created", "no_show", "booking_undone"]
    again = book(client, world.owner, slot_id(app, world.store.id, in_days(world, 2), 10), svc)
    assert again.status_code == 201, again.get_json()  # not blocked by the waived no-show
