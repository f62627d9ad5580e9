"""The periodic jobs: a lapsed offer passes to the next on the waitlist, reminders go out once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from backend.events import service
from backend.notices.models import SubscribeNotice
from backend.platform.db import commit, db, utcnow
from backend.platform.jobs import _PERIODIC, registered_jobs
from backend.touchpoints.models import Touchpoint
from tests.events.conftest import APP, cancel, create_event, event_row, sign_up


def _run(app: Any, fn: Any, now: Any) -> int:
    with app.app_context():
        s = db.session()
        done = fn(s, now)
        commit(s)
        return done


def test_a_lapsed_offer_passes_to_the_next_waiting_owner(
    app: Any, client: Any, db_session: Any, place: Any, make_owner: Any
) -> None:
    event = create_event(client, place.h(), capacity=1, max_party_size=1)
    first, second, third = (make_owner(place.unit) for _ in range(3))
    r1, r2, r3 = (sign_up(client, o, event["id"]).get_json() for o in (first, second, third))
    assert cancel(client, first, r1["id"]).status_code == 200
    offer = client.get(f"{APP}/me/event-registrations/{r2['id']}", headers=second.headers).get_json()
    assert offer["state"] == "offered"

    assert _run(app, service.expire_offers, utcnow()) == 0  # not yet
    lapse = utcnow() + timedelta(hours=25)  # EVENT_OFFER_HOURS = 24
    assert _run(app, service.expire_offers, lapse) == 1
    assert _run(app, service.expire_offers, lapse) == 0  # a second worker finds nothing to do
    states = [
        client.get(f"{APP}/me/event-registrations/{r['id']}", headers=o.headers).get_json()["state"]
        for o, r in ((second, r2), (third, r3))
    ]
    assert states == ["expired", "offered"]
    late = client.post(f"{APP}/me/event-registrations/{r2['id']}/accept", json={}, headers=second.headers)
    assert late.status_code == 409 and late.get_json()["code"] == "event.no_offer"
    row = event_row(db_session, event["id"])
    assert (row.seats_taken, row.waitlist_count) == (1, 0)
    offered = select(func.count()).select_from(Touchpoint).where(Touchpoint.kind == "event_seat_offered")
    assert db_session.scalar(offered) == 2


def test_reminders_once_per_event_to_confirmed_owners(
    app: Any, client: Any, db_session: Any, place: Any, make_owner: Any
) -> None:
    event = create_event(client, place.h(), capacity=1, max_party_size=1)
    going, waiting = make_owner(place.unit), make_owner(place.unit)
    reg = sign_up(client, going, event["id"]).get_json()
    sign_up(client, waiting, event["id"])
    assert _run(app, service.send_reminders, utcnow()) == 0  # three days ahead: too early
    soon = utcnow() + timedelta(days=2, hours=12)
    assert _run(app, service.send_reminders, soon) == 1
    assert _run(app, service.send_reminders, soon) == 0
    keys = db_session.scalars(
        select(SubscribeNotice.dedup_key).where(SubscribeNotice.dedup_key.like("%reminder"))
    ).all()
    assert keys == [f"event_reg:{reg['id']}:reminder"]


def test_jobs_are_registered_and_periodic() -> None:
    names = set(registered_jobs())
    assert {"events.expire_offers", "events.expire_holds", "events.remind", "events.mark_no_shows"} <= names
    assert "events.refund_fee" in names
    assert {p.name for p in _PERIODIC} >= {"events.expire_offers", "events.expire_holds", "events.remind"}
