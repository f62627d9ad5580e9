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
from tests.threads import run_threads

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


def test_the_same_scan_from_several_devices_at_once_is_one_check_in_and_points_once(
    app: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    """Eight scans of one QR at once (two staff phones retrying) and, at the same moment, four
    scans of a refreshed QR of the same sign-up. One of the two QRs checks the owner in: all its
    scans answer the check-in; all scans of the other answer `event.checkin_already`. One scan row
    per QR, one check-in, attendance points earned once."""
    from datetime import timedelta

    from backend.events.models import EventCheckinScan
    from backend.platform.db import utcnow
    from backend.points.models import PointsLedger
    from tests.events.conftest import WB

    client = app.test_client()
    manager = make_staff(tree.stores[0], "store_manager", userid="scan.manager")
    advisor = make_staff(tree.stores[0], "sales_advisor", userid="scan.advisor")
    # Before any request: the staff rows belong to the fixtures' session, which the first request's
    # teardown closes (a later read through them would leave a transaction open).
    scanners = [staff_headers(manager), staff_headers(advisor)]
    event = create_event(
        client,
        scanners[0],
        capacity=5,
        max_party_size=1,
        checkin_opens_at=utcnow() - timedelta(minutes=5),
        attendance_points=30,
    )
    (owner,) = _owners(app, tree.stores[0].id, 1)
    reg = client.post(f"{APP}/events/{event['id']}/registrations", json={"party_size": 1}, headers=owner).get_json()
    qr_url = f"{APP}/me/event-registrations/{reg['id']}/qr"
    first = client.get(qr_url, headers=owner).get_json()["token"]
    refreshed = client.get(qr_url, headers=owner).get_json()["token"]
    assert first != refreshed
    tokens = [first] * 8 + [refreshed] * 4

    def scan(i: int) -> Any:
        return client.post(f"{WB}/events/{event['id']}/check-ins", json={"token": tokens[i]}, headers=scanners[i % 2])

    results = run_threads(len(tokens), scan)
    answers = [(getattr(r, "status_code", repr(r)), (r.get_json() or {}).get("code")) for r in results]
    by_qr = {"first": set(answers[:8]), "refreshed": set(answers[8:])}
    checked_in, already = (200, None), (409, "event.checkin_already")
    assert by_qr in ({"first": {checked_in}, "refreshed": {already}}, {"first": {already}, "refreshed": {checked_in}})
    assert {(r.get_json()["id"], r.get_json()["state"]) for r in results if r.status_code == 200} == {
        (reg["id"], "checked_in")
    }
    assert _count(app, EventCheckinScan.event_id == event["id"], model=EventCheckinScan) == 2  # one per QR
    assert _count(app, EventRegistration.id == reg["id"], EventRegistration.state == "checked_in") == 1
    earned = _count(app, PointsLedger.idempotency_key.like(f"event_checkin:{event['id']}:%"), model=PointsLedger)
    assert earned == 1
    assert Counter(_kinds(app, event["id"]))["event_checked_in"] == 1
