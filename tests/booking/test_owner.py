"""Owner side over HTTP: stores near me, free slots, booking, bad input refused with nothing
written, reschedule and cancel within policy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from backend.booking.models import Booking
from backend.notices.models import SubscribeNotice
from backend.platform.db import db
from backend.touchpoints.models import Touchpoint
from tests.booking.conftest import APP, WB, World, book, in_days, slot_id, slot_row


def _count(app: Any, model: Any, *where: Any) -> int:
    with app.app_context():
        s = db.session()
        n = s.scalar(select(func.count()).select_from(model).where(*where))
        s.rollback()
        return n


def test_stores_near_me_nearest_first_and_by_brand(client: Any, world: World) -> None:
    h = world.owner.headers
    # from Beijing the Beijing store comes first
    near = client.get(f"{APP}/stores?latitude=39.9&longitude=116.4", headers=h).get_json()["items"]
    assert [s["id"] for s in near] == [world.far_store.id, world.store.id]
    assert near[0]["distance_km"] < 5 < 1000 < near[1]["distance_km"]
    vw = client.get(f"{APP}/stores?latitude=39.9&longitude=116.4&brand=大众", headers=h).get_json()["items"]
    assert [s["id"] for s in vw] == [world.store.id]
    detail = client.get(f"{APP}/stores/{world.store.id}", headers=h).get_json()
    assert len(detail["hours"]) == 7 and detail["brands"] == ["大众"]
    types = client.get(f"{APP}/service-types", headers=h).get_json()["items"]
    assert {t["code"] for t in types} == {
        "basic_maintenance",
        "major_maintenance",
        "repair",
        "body_paint",
        "tyres",
        "wash",
        "inspection",
    }
    assert {t["bay_type"] for t in types} == {"quick", "general", "body_paint", "wash"}


def _free(client: Any, world: World, service: str = "basic_maintenance", **q: Any) -> list[dict[str, Any]]:
    params = {
        "store_id": world.store.id,
        "service_type_id": world.service[service],
        "car_id": world.owner.car_id,
        **q,
    }
    resp = client.get(f"{APP}/booking/slots", query_string=params, headers=world.owner.headers)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["items"]


def test_free_slots_respect_notice_hours_closed_days_and_fullness(app: Any, client: Any, world: World) -> None:
    items = _free(client, world, days=3)
    # now is 08:00 Monday, minimum notice 2 h: today from 10:00; 8 blocks a day after that
    today = [i for i in items if i["day"] == world.today.isoformat()]
    assert [i["starts_at"][11:16] for i in today] == ["02:00", "03:00", "04:00", "05:00", "06:00", "07:00", "08:00"]
    assert len(items) == 7 + 8 + 8 and all(i["free"] == 3 for i in items)
    # a holiday set by the manager: nothing offered that day
    holiday = in_days(world, 1)
    resp = client.post(
        f"{WB}/stores/{world.store.id}/overrides",
        json={"day": holiday.isoformat(), "closed": True, "note": "店庆休息"},
        headers=world.headers(world.manager),
    )
    assert resp.status_code == 200, resp.get_json()
    assert not [i for i in _free(client, world, days=3) if i["day"] == holiday.isoformat()]
    # a full slot is not offered
    sid = slot_id(app, world.store.id, in_days(world, 2), 9)
    for _ in range(3):
        other = world.make_owner(world.store)
        assert book(client, other, sid, world.service["basic_maintenance"]).status_code == 201
    assert sid not in {i["slot_id"] for i in _free(client, world, days=3)}


def test_book_assigns_least_loaded_advisor_and_replays_on_the_same_key(app: Any, client: Any, world: World) -> None:
    sid = slot_id(app, world.store.id, in_days(world, 1), 10)
    first = book(client, world.owner, sid, world.service["basic_maintenance"], key="bk-1", note="顺便看下空调")
    assert first.status_code == 201, first.get_json()
    body = first.get_json()
    assert body["status"] == "booked" and body["advisor_id"] == world.advisors[0].id and not body["advisor_chosen"]
    assert body["ends_at"] > body["starts_at"]
    again = book(client, world.owner, sid, world.service["basic_maintenance"], key="bk-1", note="顺便看下空调")
    assert again.status_code == 201 and again.get_json()["id"] == body["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert slot_row(app, sid) == (3, 1)
    # the next owner gets the other advisor (fewest active bookings that day)
    second = book(client, world.make_owner(world.store), sid, world.service["basic_maintenance"])
    assert second.get_json()["advisor_id"] == world.advisors[1].id
    # a preferred advisor is honoured
    third = book(
        client, world.make_owner(world.store), sid, world.service["tyres"], advisor_id=world.advisors[1].id
    ).get_json()
    assert third["advisor_id"] == world.advisors[1].id and third["advisor_chosen"]
    assert slot_row(app, sid) == (3, 3)
    kinds = _count(app, Touchpoint, Touchpoint.kind == "booking_created")
    assert kinds == 3
    notices = _count(app, SubscribeNotice, SubscribeNotice.template_setting == "SUBSCRIBE_TEMPLATE_BOOKING_CONFIRMED")
    assert notices == 3
    mine = client.get(f"{APP}/me/bookings?active=true", headers=world.owner.headers).get_json()["items"]
    assert [b["id"] for b in mine] == [body["id"]]


def test_bad_bookings_are_refused_with_stable_codes_and_nothing_written(app: Any, client: Any, world: World) -> None:
    svc = world.service["basic_maintenance"]
    full = slot_id(app, world.store.id, in_days(world, 1), 9)
    others = [world.make_owner(world.store) for _ in range(3)]
    for o in others:
        assert book(client, o, full, svc).status_code == 201
    past = slot_id(app, world.store.id, world.today, 9)  # 09:00 today, now 08:00: within notice
    closed_day = in_days(world, 2)
    client.post(
        f"{WB}/stores/{world.store.id}/overrides",
        json={"day": closed_day.isoformat(), "closed": True},
        headers=world.headers(world.manager),
    )
    stranger = world.make_owner(world.far_store, brand="丰田")
    far_slot = slot_id(app, world.far_store.id, in_days(world, 1), 10)
    before = (_count(app, Booking), _count(app, Touchpoint), _count(app, SubscribeNotice))
    cases = [
        (book(client, world.owner, full, svc), 409, "booking.slot_full"),
        (book(client, world.owner, past, svc), 422, "booking.too_soon"),
        (book(client, world.owner, slot_id(app, world.store.id, closed_day, 10), svc), 409, "booking.store_closed"),
        (
            book(client, world.owner, slot_id(app, world.store.id, in_days(world, 1), 10), svc, car_id=stranger.car_id),
            422,
            "booking.car_invalid",
        ),
        (book(client, world.owner, far_slot, svc), 422, "booking.brand_not_served"),
        (
            book(client, world.owner, slot_id(app, world.store.id, in_days(world, 1), 10, "general"), svc),
            422,
            "booking.slot_mismatch",
        ),
        (
            book(
                client,
                world.owner,
                slot_id(app, world.store.id, in_days(world, 1), 11),
                svc,
                advisor_id=world.manager.id,
            ),
            422,
            "booking.advisor_invalid",
        ),
    ]
    for resp, status, code in cases:
        assert (resp.status_code, resp.get_json()["code"]) == (status, code), resp.get_json()
    assert (_count(app, Booking), _count(app, Touchpoint), _count(app, SubscribeNotice)) == before
    assert slot_row(app, full) == (3, 3)


def test_past_and_beyond_horizon_slots_are_refused(app: Any, client: Any, world: World, clock: Any) -> None:
    svc = world.service["basic_maintenance"]
    early = slot_id(app, world.store.id, world.today, 9)
    late = slot_id(app, world.store.id, in_days(world, 9), 9)
    clock.move_to(world_now(world) + timedelta(hours=3))  # 11:00: the 09:00 block is over
    resp = book(client, world.owner, early, svc)
    assert (resp.status_code, resp.get_json()["code"]) == (422, "booking.slot_in_past")
    app.config["BOOKING_HORIZON_DAYS"], saved = 7, app.config["BOOKING_HORIZON_DAYS"]
    try:
        resp = book(client, world.owner, late, svc)
        assert (resp.status_code, resp.get_json()["code"]) == (422, "booking.beyond_horizon")
    finally:
        app.config["BOOKING_HORIZON_DAYS"] = saved
    assert _count(app, Booking) == 0 and slot_row(app, early)[1] == 0 and slot_row(app, late)[1] == 0


def world_now(world: World) -> Any:
    from tests.booking.conftest import NOW

    return NOW


def test_active_bookings_per_car_are_limited(app: Any, client: Any, world: World) -> None:
    svc = world.service["basic_maintenance"]
    assert book(client, world.owner, slot_id(app, world.store.id, in_days(world, 1), 10), svc).status_code == 201
    resp = book(client, world.owner, slot_id(app, world.store.id, in_days(world, 2), 10), svc)
    assert (resp.status_code, resp.get_json()["code"]) == (409, "booking.active_limit")


def test_reschedule_moves_the_place_within_limits(app: Any, client: Any, world: World, clock: Any) -> None:
    svc = world.service["basic_maintenance"]
    a = slot_id(app, world.store.id, in_days(world, 1), 10)
    b = slot_id(app, world.store.id, in_days(world, 2), 10)
    c = slot_id(app, world.store.id, in_days(world, 3), 10)
    d = slot_id(app, world.store.id, in_days(world, 3), 11)
    h = world.owner.headers
    booking = book(client, world.owner, a, svc).get_json()
    url = f"{APP}/bookings/{booking['id']}/reschedule"
    moved = client.post(url, json={"slot_id": b, "reason": "出差"}, headers=h)
    assert moved.status_code == 200, moved.get_json()
    assert moved.get_json()["slot_id"] == b and moved.get_json()["reschedule_count"] == 1
    assert slot_row(app, a) == (3, 0) and slot_row(app, b) == (3, 1)
    # the target full: 409 and the booking stays where it was
    for _ in range(3):
        book(client, world.make_owner(world.store), c, svc)
    full = client.post(url, json={"slot_id": c}, headers=h)
    assert (full.status_code, full.get_json()["code"]) == (409, "booking.slot_full")
    assert slot_row(app, b) == (3, 1) and slot_row(app, c) == (3, 3)
    assert client.post(url, json={"slot_id": d}, headers=h).status_code == 200
    third = client.post(url, json={"slot_id": b}, headers=h)
    assert (third.status_code, third.get_json()["code"]) == (409, "booking.reschedule_limit")
    assert _count(app, Touchpoint, Touchpoint.kind == "booking_rescheduled") == 2
    # too close to the start
    other = world.make_owner(world.store)
    soon = book(client, other, slot_id(app, world.store.id, in_days(world, 1), 12), svc).get_json()
    clock.move_to(world_now(world) + timedelta(days=1, hours=3, minutes=30))  # 11:30 that day, start 12:00
    late = client.post(f"{APP}/bookings/{soon['id']}/reschedule", json={"slot_id": b}, headers=other.headers)
    assert (late.status_code, late.get_json()["code"]) == (409, "booking.reschedule_cutoff")


def test_cancel_gives_the_place_back_unless_too_late(app: Any, client: Any, world: World, clock: Any) -> None:
    svc = world.service["basic_maintenance"]
    a = slot_id(app, world.store.id, in_days(world, 1), 10)
    h = world.owner.headers
    booking = book(client, world.owner, a, svc).get_json()
    url = f"{APP}/bookings/{booking['id']}/cancel"
    assert client.post(url, json={}, headers=h).status_code == 422  # a reason is required
    done = client.post(url, json={"reason": "行程有变"}, headers=h)
    assert done.status_code == 200 and done.get_json()["status"] == "cancelled"
    assert done.get_json()["cancelled_by"] == "owner"
    assert slot_row(app, a) == (3, 0)
    again = client.post(url, json={"reason": "再取消一次"}, headers=h)
    assert (again.status_code, again.get_json()["code"]) == (409, "booking.invalid_state")
    # cancelled bookings do not count against the car: book again, then too late to cancel
    second = book(client, world.owner, a, svc).get_json()
    clock.move_to(world_now(world) + timedelta(days=1, hours=1))  # 09:00, start 10:00, cut-off 2 h
    late = client.post(f"{APP}/bookings/{second['id']}/cancel", json={"reason": "晚了"}, headers=world.owner.headers)
    assert (late.status_code, late.get_json()["code"]) == (409, "booking.cancel_cutoff")
    assert slot_row(app, a) == (3, 1)


def test_another_owners_booking_answers_404(app: Any, client: Any, world: World) -> None:
    svc = world.service["basic_maintenance"]
    booking = book(client, world.owner, slot_id(app, world.store.id, in_days(world, 1), 10), svc).get_json()
    other = world.make_owner(world.store)
    for method, path in (
        ("GET", ""),
        ("POST", "/cancel"),
        ("POST", "/reschedule"),
        ("GET", "/checkin-code"),
    ):
        resp = client.open(
            f"{APP}/bookings/{booking['id']}{path}",
            method=method,
            headers=other.headers,
            json={} if method == "POST" else None,
        )
        assert (resp.status_code, resp.get_json()["code"]) == (404, "booking.not_found")
