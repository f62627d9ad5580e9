"""The seat counter and the waitlist under real concurrency: threads on MariaDB, each request
with its own connection and transaction."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.events.models import Event, EventRegistration
from backend.platform.db import db
from backend.platform.tokens import issue_access_token
from backend.touchpoints.models import Touchpoint
from tests.events.conftest import APP, create_event
from tests.test_concurrency import run_threads

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]

N, SEATS = 100, 20


def _owners(app: Any, store_id: int, n: int) -> list[dict[str, str]]:
    from backend.customers.models import Customer

    with app.app_context():
        s = db.session()
        customers = [Customer(name=f"抢位车主{i}", home_store_id=store_id) for i in range(n)]
        s.add_all(customers)
        s.commit()
        ids = [c.id for c in customers]
    return [
        {"Authorization": f"Bearer {issue_access_token(app.config['SECRET_KEY'], 'owner', cid, 900)}"} for cid in ids
    ]


def _count(app: Any, *where: Any, model: Any = EventRegistration) -> int:
    with app.app_context():
        return db.session().scalar(select(func.count()).select_from(model).where(*where))


def _event(app: Any, event_id: int) -> Event:
    with app.app_context():
        return db.session().get(Event, event_id)


def test_100_sign_ups_for_20_seats_then_concurrent_cancels_offer_in_order_once(
    app: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    client = app.test_client()
    manager = make_staff(tree.stores[0], "store_manager", userid="race.manager")
    event = create_event(client, staff_headers(manager), capacity=SEATS, max_party_size=1)
    owners = _owners(app, tree.stores[0].id, N)

    def sign_up(i: int) -> Any:
        headers = {**owners[i], "Idempotency-Key": f"race-{i}"}
        return client.post(f"{APP}/events/{event['id']}/registrations", json={"party_size": 1}, headers=headers)

    results = run_threads(N, sign_up)
    statuses = [getattr(r, "status_code", repr(r)) for r in results]
    assert statuses == [201] * N, [r.get_json() for r in results if getattr(r, "status_code", 0) != 201][:3]
    bodies = [r.get_json() for r in results]
    states = Counter(b["state"] for b in bodies)
    assert states == {"confirmed": SEATS, "waitlisted": N - SEATS}
    positions = sorted(b["waitlist_position"] for b in bodies if b["state"] == "waitlisted")
    assert positions == list(range(1, N - SEATS + 1))  # each position handed out once
    row = _event(app, event["id"])
    assert (row.seats_taken, row.waitlist_count, row.waitlist_seq) == (SEATS, N - SEATS, N - SEATS)
    # The order of the waitlist is the order of joining: the position answered at sign-up is the
    # position of that ticket now.
    by_reg = {b["id"]: b for b in bodies}
    with app.app_context():
        s = db.session()
        waiting = s.scalars(
            select(EventRegistration)
            .where(EventRegistration.event_id == event["id"], EventRegistration.state == "waitlisted")
            .order_by(EventRegistration.waitlist_seq)
        ).all()
        assert [by_reg[w.id]["waitlist_position"] for w in waiting] == list(range(1, N - SEATS + 1))
        assert [w.waitlist_seq for w in waiting] == list(range(1, N - SEATS + 1))
        confirmed_ids = [b["id"] for b in bodies if b["state"] == "confirmed"]
        owner_of = {b["id"]: i for i, b in enumerate(bodies)}
        first_waiters = [w.id for w in waiting[:12]]
    kinds = Counter(
        k for k in _kinds(app, event["id"]) if k in ("event_signed_up", "event_waitlisted", "event_seat_offered")
    )
    assert kinds == {"event_signed_up": SEATS, "event_waitlisted": N - SEATS}

    # Ten confirmed owners cancel at once, two of them tapping twice: exactly ten seats free,
    # offered to the first ten on the waitlist, once each.
    cancelling = confirmed_ids[:10]
    taps = cancelling + cancelling[:2]

    def cancel(i: int) -> Any:
        reg_id = taps[i]
        return client.post(f"{APP}/me/event-registrations/{reg_id}/cancel", json={}, headers=owners[owner_of[reg_id]])

    results = run_threads(len(taps), cancel)
    assert [getattr(r, "status_code", repr(r)) for r in results] == [200] * len(taps), [
        r.get_json() for r in results if getattr(r, "status_code", 0) != 200
    ]
    row = _event(app, event["id"])
    assert (row.seats_taken, row.waitlist_count) == (SEATS, N - SEATS - 10)
    with app.app_context():
        s = db.session()
        offered = s.scalars(
            select(EventRegistration.id)
            .where(EventRegistration.event_id == event["id"], EventRegistration.state == "offered")
            .order_by(EventRegistration.waitlist_seq)
        ).all()
    assert offered == first_waiters[:10]
    offers = Counter(r for k, r in _kinds_refs(app, event["id"]) if k == "event_seat_offered")
    assert sorted(offers) == sorted(f"event_reg:{i}:offered" for i in first_waiters[:10])
    assert set(offers.values()) == {1}
    assert _count(app, Touchpoint.kind == "event_cancelled", model=Touchpoint) == 10

    # The positions left are 1..70, in ticket order.
    mine = client.get(f"{APP}/me/event-registrations/{first_waiters[10]}", headers=owners[owner_of[first_waiters[10]]])
    assert mine.get_json()["waitlist_position"] == 1


def _kinds(app: Any, event_id: int) -> list[str]:
    return [k for k, _ in _kinds_refs(app, event_id)]


def _kinds_refs(app: Any, event_id: int) -> list[tuple[str, str]]:
    with app.app_context():
        rows = db.session().execute(
            select(Touchpoint.kind, Touchpoint.source_ref).where(Touchpoint.source == "events").order_by(Touchpoint.id)
        )
        return [(r.kind, r.source_ref) for r in rows]
