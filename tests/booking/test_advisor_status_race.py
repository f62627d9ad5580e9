"""A booking is never left with an advisor who has gone, when the owner books while a directory
sync resigns that advisor (real threads on MariaDB, each with its own connection).

The booking confirms its advisor under a shared lock on the staff row (`lock_active`): either the
booking commits first and the resignation's departure job, which runs after, moves it; or the
resignation commits first and the booking takes the next advisor (an owner who chose the leaver
is told to choose again). Before, the advisor's status was read without a lock: a booking that
read "active", then committed after the departure job had looked for the leaver's bookings, stayed
with someone who had left, and nobody would receive the car."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import select

from backend.booking import service as booking_service
from backend.booking.models import Booking
from backend.org.models import Staff, StaffStatus
from backend.org.open_work import staff_departed
from backend.platform.db import commit, db, utcnow
from tests.booking.conftest import World, book, in_days, slot_id
from tests.threads import lock_wait_seen
from tests.wecom.helpers import run_due_jobs

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def resign(app: Any, staff_id: int, before_commit: Any = None) -> None:
    """What the directory sync does for a leaver: the status change and the departure job,
    committed; the job (it moves the leaver's open bookings) runs right after the commit."""
    with app.app_context():
        session = db.session()
        try:
            staff = session.get(Staff, staff_id)
            staff.status, staff.resigned_at = StaffStatus.RESIGNED, utcnow()
            session.flush()  # the row's exclusive lock is held from here to the commit
            if before_commit is not None:
                before_commit()
            staff_departed(session, staff, utcnow())
            commit(session)  # its jobs run now, as a worker would run them at once
        finally:
            db.session.remove()


def in_thread(results: dict[str, Any], name: str, fn: Any) -> threading.Thread:
    def target() -> None:
        try:
            results[name] = fn()
        except Exception as exc:  # surfaced in the assertions
            results[name] = exc
        finally:
            db.session.remove()

    thread = threading.Thread(target=target, name=name)
    thread.start()
    return thread


def bookings(app: Any) -> dict[int, int | None]:
    with app.app_context():
        try:
            return dict(db.session().execute(select(Booking.id, Booking.advisor_id)).all())
        finally:
            db.session.remove()


def test_a_booking_that_chose_the_leaver_before_the_resignation_is_moved_by_the_departure_job(
    app: Any, live_world: World, monkeypatch: Any
) -> None:
    """The booking has picked the least-loaded advisor, who is leaving, and has not committed yet
    when the sync resigns him: the resignation waits for the booking's commit, so its departure
    job finds the booking and hands it to the store's other advisor."""
    world = live_world
    leaving, staying = world.advisors
    sid = slot_id(app, world.store.id, in_days(world, 1), 10)
    chosen, go, resigned = threading.Event(), threading.Event(), threading.Event()
    original = booking_service._advisor

    def pausing_advisor(*args: Any) -> Any:
        picked = original(*args)
        chosen.set()
        go.wait(15)
        return picked

    monkeypatch.setattr(booking_service, "_advisor", pausing_advisor)
    results: dict[str, Any] = {}
    owner = in_thread(
        results, "owner", lambda: book(app.test_client(), world.owner, sid, world.service["basic_maintenance"])
    )
    assert chosen.wait(15), "the booking never chose its advisor"
    sync = in_thread(results, "sync", lambda: (resign(app, leaving.id), resigned.set()))
    waited = lock_wait_seen(6.0, until=resigned)
    go.set()
    owner.join(30)
    sync.join(30)
    run_due_jobs(app)

    response = results["owner"]
    assert not isinstance(response, Exception), response
    assert response.status_code == 201, response.get_json()
    assert not isinstance(results["sync"], Exception), results["sync"]
    assert waited, "the resignation did not wait for the booking's lock on the advisor"
    assert bookings(app) == {response.get_json()["id"]: staying.id}


@pytest.mark.parametrize("owner_chose_him", [False, True])
def test_a_booking_made_while_the_resignation_is_uncommitted_waits_and_does_not_take_the_leaver(
    app: Any, live_world: World, owner_chose_him: bool
) -> None:
    """The sync has changed the leaver's row and not committed: the booking waits for it and then
    sees him gone — the store's other advisor takes it, or, when the owner chose the leaver, the
    owner is told to choose a service advisor of the store (422), and nothing is booked."""
    world = live_world
    leaving, staying = world.advisors
    sid = slot_id(app, world.store.id, in_days(world, 1), 10)
    resigning, go = threading.Event(), threading.Event()

    def hold() -> None:
        resigning.set()
        go.wait(15)

    results: dict[str, Any] = {}
    sync = in_thread(results, "sync", lambda: resign(app, leaving.id, before_commit=hold))
    assert resigning.wait(15), "the sync never changed the leaver's row"
    extra = {"advisor_id": leaving.id} if owner_chose_him else {}
    owner = in_thread(
        results, "owner", lambda: book(app.test_client(), world.owner, sid, world.service["basic_maintenance"], **extra)
    )
    waited = lock_wait_seen(6.0)
    go.set()
    sync.join(30)
    owner.join(30)
    run_due_jobs(app)
    print(results, getattr(results.get("owner"), "get_json", lambda: None)())

    assert not isinstance(results["sync"], Exception), results["sync"]
    response = results["owner"]
    assert not isinstance(response, Exception), response
    assert waited, "the booking did not wait for the resignation's lock on the advisor"
    if owner_chose_him:
        assert response.status_code == 422, response.get_json()
        assert response.get_json()["code"] == "booking.advisor_invalid"
        assert bookings(app) == {}
    else:
        assert response.status_code == 201, response.get_json()
        assert bookings(app) == {response.get_json()["id"]: staying.id}
