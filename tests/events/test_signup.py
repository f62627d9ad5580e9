"""Sign-up, waitlist, cancel, offers and accept through HTTP; bad input refused with stable
codes and nothing written."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from freezegun import freeze_time
from sqlalchemy import func, select

from backend.events.models import EventRegistration
from backend.notices.models import SubscribeNotice
from backend.platform.db import utcnow
from backend.touchpoints.models import Touchpoint
from tests.events.conftest import APP, WB, cancel, create_event, event_row, sign_up


def _kinds(db_session: Any, customer_id: int) -> list[str]:
    db_session.expire_all()
    return list(
        db_session.scalars(
            select(Touchpoint.kind)
            .where(Touchpoint.customer_id == customer_id, Touchpoint.source == "events")
            .order_by(Touchpoint.id)
        )
    )


def _notices(db_session: Any, customer_id: int) -> list[str]:
    return list(
        db_session.scalars(
            select(SubscribeNotice.dedup_key)
            .where(SubscribeNotice.customer_id == customer_id)
            .order_by(SubscribeNotice.id)
        )
    )


def test_seats_then_waitlist_then_a_cancel_offers_the_seat_and_accept_confirms(
    client: Any, db_session: Any, place: Any, make_owner: Any
) -> None:
    event = create_event(client, place.h(), capacity=3, max_party_size=2)
    a, b, c, d = (make_owner(place.unit) for _ in range(4))
    ra = sign_up(client, a, event["id"], party_size=2)
    assert ra.status_code == 201, ra.get_json()
    ra = ra.get_json()
    assert ra["state"] == "confirmed" and ra["party_size"] == 2 and ra["waitlist_position"] is None
    rb = sign_up(client, b, event["id"], party_size=2).get_json()  # 1 seat left, party of 2: waits
    assert rb["state"] == "waitlisted" and rb["waitlist_position"] == 1
    # Somebody waits: a single seat is not taken past them.
    rc = sign_up(client, c, event["id"]).get_json()
    assert rc["state"] == "waitlisted" and rc["waitlist_position"] == 2
    row = event_row(db_session, event["id"])
    assert (row.seats_taken, row.waitlist_count, row.waitlist_seq) == (2, 2, 2)

    # The same owner again: refused, naming the sign-up.
    again = sign_up(client, b, event["id"])
    assert again.status_code == 409 and again.get_json()["code"] == "event.already_signed_up"
    assert again.get_json()["errors"]["registration_id"] == rb["id"]

    # A cancels: 3 seats free, offered in order to B (2) and then C (1).
    out = cancel(client, a, ra["id"])
    assert out.status_code == 200 and out.get_json()["state"] == "cancelled"
    mine = client.get(f"{APP}/me/event-registrations/{rb['id']}", headers=b.headers).get_json()
    assert mine["state"] == "offered" and mine["offer_expires_at"]
    assert client.get(f"{APP}/me/event-registrations/{rc['id']}", headers=c.headers).get_json()["state"] == "offered"
    row = event_row(db_session, event["id"])
    assert (row.seats_taken, row.waitlist_count) == (3, 0)
    # The event is now full of held seats: D waits.
    rd = sign_up(client, d, event["id"]).get_json()
    assert rd["state"] == "waitlisted" and rd["waitlist_position"] == 1

    accepted = client.post(f"{APP}/me/event-registrations/{rb['id']}/accept", json={}, headers=b.headers)
    assert accepted.status_code == 200 and accepted.get_json()["state"] == "confirmed"
    twice = client.post(f"{APP}/me/event-registrations/{rb['id']}/accept", json={}, headers=b.headers)
    assert twice.status_code == 200 and twice.get_json()["state"] == "confirmed"
    no_offer = client.post(f"{APP}/me/event-registrations/{rd['id']}/accept", json={}, headers=d.headers)
    assert no_offer.status_code == 409 and no_offer.get_json()["code"] == "event.no_offer"

    # C declines the offer: the seat goes to D.
    assert cancel(client, c, rc["id"]).get_json()["state"] == "cancelled"
    assert client.get(f"{APP}/me/event-registrations/{rd['id']}", headers=d.headers).get_json()["state"] == "offered"

    assert _kinds(db_session, a.id) == ["event_signed_up", "event_cancelled"]
    assert _kinds(db_session, b.id) == ["event_waitlisted", "event_seat_offered", "event_signed_up"]
    assert _kinds(db_session, c.id) == ["event_waitlisted", "event_seat_offered", "event_cancelled"]
    assert _notices(db_session, b.id) == [
        f"event_reg:{rb['id']}:waitlisted",
        f"event_reg:{rb['id']}:offered",
        f"event_reg:{rb['id']}:signed_up",
    ]
    # The owner's view of the event shows the seats and my sign-up.
    shown = client.get(f"{APP}/events/{event['id']}", headers=b.headers).get_json()
    assert shown["seats_left"] == 0 and shown["my_registration"]["state"] == "confirmed"
    listed = client.get(f"{APP}/events", headers=d.headers).get_json()["items"]
    assert [e["my_registration"]["state"] for e in listed if e["id"] == event["id"]] == ["offered"]
    # Staff see every sign-up with the waitlist positions.
    regs = client.get(f"{WB}/events/{event['id']}/registrations", headers=place.h()).get_json()["items"]
    assert [r["state"] for r in regs] == ["cancelled", "confirmed", "cancelled", "offered"]


def test_sign_up_replays_with_its_idempotency_key_and_a_cancelled_owner_may_sign_up_again(
    client: Any, db_session: Any, place: Any, make_owner: Any
) -> None:
    event = create_event(client, place.h(), capacity=5)
    owner = make_owner(place.unit)
    first = sign_up(client, owner, event["id"], key="ev-1")
    second = sign_up(client, owner, event["id"], key="ev-1")
    assert second.headers.get("Idempotent-Replayed") == "true" and second.get_json() == first.get_json()
    assert cancel(client, owner, first.get_json()["id"]).status_code == 200
    assert cancel(client, owner, first.get_json()["id"]).get_json()["state"] == "cancelled"  # a repeated tap
    again = sign_up(client, owner, event["id"], key="ev-2")
    assert again.status_code == 201 and again.get_json()["id"] != first.get_json()["id"]
    assert event_row(db_session, event["id"]).seats_taken == 1


def _written(db_session: Any) -> tuple[int, int, int]:
    db_session.expire_all()
    return (
        db_session.scalar(select(func.count()).select_from(EventRegistration)),
        db_session.scalar(select(func.count()).select_from(Touchpoint).where(Touchpoint.source == "events")),
        db_session.scalar(select(func.count()).select_from(SubscribeNotice)),
    )


def test_bad_sign_ups_are_refused_with_stable_codes_and_write_nothing(
    client: Any, db_session: Any, place: Any, make_owner: Any
) -> None:
    from backend.segments.models import Segment

    now = utcnow()
    owner = make_owner(place.unit)  # standard tier, no car
    not_yet = create_event(client, place.h(), signup_opens_at=now + timedelta(hours=2))
    closed = create_event(
        client, place.h(), signup_opens_at=now - timedelta(hours=3), signup_closes_at=now - timedelta(hours=1)
    )
    gold_only = create_event(client, place.h(), eligible_tiers=["gold", "platinum"])
    segment = Segment(name="有车车主", owner_unit_id=place.unit.id, filters={"has_car": True})
    db_session.add(segment)
    db_session.commit()
    car_owners = create_event(client, place.h(), segment_id=segment.id)
    normal = create_event(client, place.h(), max_party_size=2)
    draft = create_event(client, place.h(), publish=False)
    before = _written(db_session)
    cases = [
        (not_yet, 1, 409, "event.signup_not_open"),
        (closed, 1, 409, "event.signup_closed"),
        (gold_only, 1, 403, "event.not_eligible"),
        (car_owners, 1, 403, "event.not_eligible"),
        (normal, 3, 422, "event.party_size_exceeded"),
        (draft, 1, 404, "event.not_found"),
    ]
    for event, party, status, code in cases:
        resp = sign_up(client, owner, event["id"], party_size=party)
        assert (resp.status_code, resp.get_json()["code"]) == (status, code), (event["title"], resp.get_json())
    assert sign_up(client, owner, gold_only["id"]).get_json()["errors"]["reason"] == "tier"
    assert sign_up(client, owner, car_owners["id"]).get_json()["errors"]["reason"] == "segment"
    zero = client.post(f"{APP}/events/{normal['id']}/registrations", json={"party_size": 0}, headers=owner.headers)
    assert zero.status_code == 422 and zero.get_json()["code"] == "request.invalid"
    assert _written(db_session) == before
    for event in (not_yet, closed, gold_only, car_owners, normal):
        assert event_row(db_session, event["id"]).seats_taken == 0

    # Eligible owners pass the same checks.
    gold = make_owner(place.unit, tier="gold")
    assert sign_up(client, gold, gold_only["id"]).status_code == 201


def test_cancel_after_the_cut_off_is_refused_and_changes_nothing(
    client: Any, db_session: Any, place: Any, make_owner: Any
) -> None:
    now = utcnow()
    event = create_event(client, place.h(), capacity=1, max_party_size=1, cancel_cutoff_at=now + timedelta(hours=1))
    owner, waiting = make_owner(place.unit), make_owner(place.unit)
    reg = sign_up(client, owner, event["id"]).get_json()
    queued = sign_up(client, waiting, event["id"]).get_json()
    before = _written(db_session)
    with freeze_time(now + timedelta(hours=2)):
        late = cancel(client, owner, reg["id"])
        assert late.status_code == 409 and late.get_json()["code"] == "event.cancel_cutoff_passed"
        # Leaving the waitlist is always possible before the start (nothing is held).
        assert cancel(client, waiting, queued["id"]).get_json()["state"] == "cancelled"
    assert client.get(f"{APP}/me/event-registrations/{reg['id']}", headers=owner.headers).get_json()["state"] == (
        "confirmed"
    )
    row = event_row(db_session, event["id"])
    assert (row.seats_taken, row.waitlist_count) == (1, 0)
    assert _written(db_session)[1] == before[1] + 1  # only the waitlist leave's touchpoint


def test_staff_scope_and_who_manages(client: Any, place: Any, make_owner: Any, db_session: Any) -> None:
    store_event = create_event(client, place.h(), title="门店活动")
    # A store manager cannot organise a group event; group marketing can, and every store sees it.
    refused = client.post(
        f"{WB}/events",
        json={**_body(), "org_unit_id": _group_id(db_session, place)},
        headers=place.h(),
    )
    assert refused.status_code == 422 and refused.get_json()["code"] == "event.unit_invalid"
    group_event = create_event(client, place.h(place.marketing), title="集团自驾游")
    assert group_event["store_id"] is None
    seen = {e["id"] for e in client.get(f"{WB}/events", headers=place.h()).get_json()["items"]}
    assert seen == {store_event["id"], group_event["id"]}
    far = {e["id"] for e in client.get(f"{WB}/events", headers=place.h(place.other_manager)).get_json()["items"]}
    assert far == {group_event["id"]}
    assert client.get(f"{WB}/events/{store_event['id']}", headers=place.h(place.other_manager)).status_code == 404
    # Seeing a group event is not managing it.
    publish = client.post(f"{WB}/events/{group_event['id']}/cancel", json={"reason": "x"}, headers=place.h())
    assert publish.status_code == 403
    # The region manager manages the store's event.
    edited = client.patch(
        f"{WB}/events/{store_event['id']}", json={"capacity": 25}, headers=place.h(place.region_manager)
    )
    assert edited.status_code == 200 and edited.get_json()["capacity"] == 25
    shrink = client.patch(f"{WB}/events/{store_event['id']}", json={"capacity": 5}, headers=place.h())
    assert shrink.status_code == 422


def _body() -> dict[str, Any]:
    from tests.events.conftest import event_body

    return event_body()


def _group_id(db_session: Any, place: Any) -> int:
    from backend.org.models import OrgUnit

    store = db_session.get(OrgUnit, place.unit.id)
    return int(store.path.strip("/").split("/")[0])


def test_the_store_cancels_the_event(client: Any, db_session: Any, place: Any, make_owner: Any) -> None:
    event = create_event(client, place.h(), capacity=1, max_party_size=1)
    owners = [make_owner(place.unit) for _ in range(2)]
    regs = [sign_up(client, o, event["id"]).get_json() for o in owners]
    assert [r["state"] for r in regs] == ["confirmed", "waitlisted"]
    out = client.post(f"{WB}/events/{event['id']}/cancel", json={"reason": "台风预警"}, headers=place.h())
    assert out.status_code == 200 and out.get_json()["status"] == "cancelled"
    for owner, reg in zip(owners, regs, strict=True):
        mine = client.get(f"{APP}/me/event-registrations/{reg['id']}", headers=owner.headers).get_json()
        assert mine["state"] == "cancelled" and mine["cancelled_by"] == "store"
        assert f"event_reg:{reg['id']}:cancelled_by_store" in _notices(db_session, owner.id)
    row = event_row(db_session, event["id"])
    assert (row.seats_taken, row.waitlist_count) == (0, 0)
    late = sign_up(client, make_owner(place.unit), event["id"])
    assert late.status_code == 409 and late.get_json()["code"] == "event.cancelled"
