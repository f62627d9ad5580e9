"""No overbooking, ever: real threads against MariaDB, each request with its own connection and
transaction, through the HTTP API."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.booking.models import Booking, BookingStatus, Slot
from backend.platform.db import db
from tests.booking.conftest import APP, World, book, slot_id, slot_row
from tests.threads import run_threads

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def _codes(results: list[Any]) -> Counter:
    return Counter(
        (r.status_code, (r.get_json() or {}).get("code")) if hasattr(r, "status_code") else repr(r) for r in results
    )


def _active_on(app: Any, sid: int) -> int:
    with app.app_context():
        s = db.session()
        n = s.scalar(
            select(func.count())
            .select_from(Booking)
            .where(Booking.slot_id == sid, Booking.status == BookingStatus.BOOKED)
        )
        s.rollback()
        return n


def _fill(app: Any, client: Any, world: World, sid: int, n: int) -> list[Any]:
    owners = [world.make_owner(world.store) for _ in range(n)]
    for o in owners:
        assert book(client, o, sid, world.service["basic_maintenance"]).status_code == 201
    return owners


def test_fifty_owners_on_the_last_five_places_make_exactly_five_bookings(
    app: Any, client: Any, live_world: World
) -> None:
    world = live_world
    day = world.today + timedelta(days=3)
    sid = slot_id(app, world.store.id, day, 10)
    with app.app_context():  # 5 places left of 8
        s = db.session()
        s.get(Slot, sid).capacity = 8
        s.commit()
    _fill(app, client, world, sid, 3)
    owners = [world.make_owner(world.store) for _ in range(50)]
    results = run_threads(
        50, lambda i: book(client, owners[i], sid, world.service["basic_maintenance"], key=f"race-{i}")
    )
    codes = _codes(results)
    assert codes == {(201, None): 5, (409, "booking.slot_full"): 45}, codes
    assert slot_row(app, sid) == (8, 8)
    assert _active_on(app, sid) == 8


def test_the_same_submit_twice_at_once_is_one_booking(app: Any, client: Any, live_world: World) -> None:
    world = live_world
    sid = slot_id(app, world.store.id, world.today + timedelta(days=3), 11)
    results = run_threads(
        6, lambda i: book(client, world.owner, sid, world.service["basic_maintenance"], key="double-tap")
    )
    assert {r.status_code for r in results} == {201}, _codes(results)
    assert len({r.get_json()["id"] for r in results}) == 1
    assert slot_row(app, sid) == (3, 1)


def test_concurrent_reschedules_and_cancellations_keep_capacity_exact(app: Any, client: Any, live_world: World) -> None:
    """20 owners booked on slot A (capacity 20) at once move to slot B (5 places), while 10
    others booked on B cancel... and 10 newcomers book B. B never goes above its capacity, A
    never below zero, and the counters equal the bookings that hold them."""
    world = live_world
    day = world.today + timedelta(days=4)
    a, b = slot_id(app, world.store.id, day, 13), slot_id(app, world.store.id, day, 14)
    with app.app_context():
        s = db.session()
        s.get(Slot, a).capacity = 20
        s.get(Slot, b).capacity = 15
        s.commit()
    movers = _fill(app, client, world, a, 20)
    leavers = _fill(app, client, world, b, 10)
    newcomers = [world.make_owner(world.store) for _ in range(10)]
    with app.app_context():
        ids = {
            o.customer_id: bid
            for o in movers + leavers
            for bid in db.session().scalars(select(Booking.id).where(Booking.customer_id == o.customer_id))
        }

    def act(i: int) -> Any:
        if i < 20:
            o = movers[i]
            return client.post(
                f"{APP}/bookings/{ids[o.customer_id]}/reschedule", json={"slot_id": b}, headers=o.headers
            )
        if i < 30:
            o = leavers[i - 20]
            return client.post(
                f"{APP}/bookings/{ids[o.customer_id]}/cancel", json={"reason": "并发取消"}, headers=o.headers
            )
        return book(client, newcomers[i - 30], b, world.service["basic_maintenance"])

    results = run_threads(40, act)
    codes = _codes(results)
    assert not [c for c in codes if isinstance(c, str) or c[0] >= 500], codes
    assert codes[(200, None)] >= 10  # every cancellation succeeds
    cap_a, booked_a = slot_row(app, a)
    cap_b, booked_b = slot_row(app, b)
    assert 0 <= booked_a <= cap_a and 0 <= booked_b <= cap_b
    assert booked_a == _active_on(app, a) and booked_b == _active_on(app, b)
    # 10 places freed + 5 free at the start = 15 taken by movers and newcomers, and B is full
    assert booked_b == 15
    moved = sum(1 for r in results[:20] if r.status_code == 200)
    booked = sum(1 for r in results[30:] if r.status_code == 201)
    assert moved + booked == 15 and booked_a == 20 - moved
    refused = Counter(r.get_json()["code"] for r in results if r.status_code == 409)
    assert set(refused) <= {"booking.slot_full"}, refused
