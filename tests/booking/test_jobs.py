"""The periodic jobs of booking: capacity generated ahead, day-before and two-hours-before
reminders by subscribe message (once each, through the sandbox), automatic no-shows after the
grace period and the no-show rule that follows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from backend.booking import service
from backend.booking.models import Booking, Slot
from backend.notices.models import SubscribeNotice
from backend.platform.db import commit, db
from backend.touchpoints.models import Touchpoint
from tests.booking.conftest import APP, NOW, WB, World, book, in_days, slot_id

CONFIRMED, REMINDER, CHANGED = "TPL_BOOKING_OK", "TPL_BOOKING_REMIND", "TPL_BOOKING_CHANGED"


def _run(app: Any, fn: Any) -> Any:
    with app.app_context():
        session = db.session()
        result = fn(session)
        commit(session)
        return result


def test_reminders_go_once_per_booked_time(
    app: Any, client: Any, world: World, clock: Any, sandbox_reset: Any, monkeypatch: Any
) -> None:
    for setting, template in (
        ("SUBSCRIBE_TEMPLATE_BOOKING_CONFIRMED", CONFIRMED),
        ("SUBSCRIBE_TEMPLATE_BOOKING_REMINDER", REMINDER),
        ("SUBSCRIBE_TEMPLATE_BOOKING_CHANGED", CHANGED),
    ):
        monkeypatch.setitem(app.config, setting, template)
    state = sandbox_reset.state
    openid = "o-booking-owner"
    for template, count in ((CONFIRMED, 1), (REMINDER, 3), (CHANGED, 1)):
        state.set_subscribe_grants(openid, template, count)
    for template in (CONFIRMED, REMINDER, REMINDER, REMINDER, CHANGED):
        granted = client.post(
            f"{APP}/notices/grants", json={"results": {template: "accept"}}, headers=world.owner.headers
        )
        assert granted.status_code == 200, granted.get_json()
    svc = world.service["basic_maintenance"]
    booking = book(client, world.owner, slot_id(app, world.store.id, in_days(world, 1), 10), svc).get_json()
    assert _run(app, service.send_reminders) == 0  # 26 hours ahead
    clock.move_to(NOW + timedelta(hours=3))  # 23 h before
    assert _run(app, service.send_reminders) == 1
    assert _run(app, service.send_reminders) == 0
    # a reschedule is a new time: told as a change, reminded again
    moved = client.post(
        f"{APP}/bookings/{booking['id']}/reschedule",
        json={"slot_id": slot_id(app, world.store.id, in_days(world, 2), 10)},
        headers=world.owner.headers,
    )
    assert moved.status_code == 200
    clock.move_to(NOW + timedelta(days=1, hours=3))
    assert _run(app, service.send_reminders) == 1  # the day before the new time
    clock.move_to(NOW + timedelta(days=2, hours=0, minutes=30))  # 08:30, start 10:00
    assert _run(app, service.send_reminders) == 1  # two hours before
    assert _run(app, service.send_reminders) == 0
    sent = [(m["template_id"], m["page"]) for m in state.subscribe_messages]
    page = f"pages/booking/detail?id={booking['id']}"
    assert sent == [(CONFIRMED, page), (REMINDER, page), (CHANGED, page), (REMINDER, page), (REMINDER, page)]
    assert state.subscribe_messages[0]["data"]["thing1"]["value"] == "常规保养"
    assert state.subscribe_messages[0]["data"]["time2"]["value"] == f"{in_days(world, 1).isoformat()} 10:00"


def test_a_booking_made_shortly_before_gets_no_day_before_reminder(
    app: Any, client: Any, world: World, clock: Any
) -> None:
    svc = world.service["basic_maintenance"]
    book(client, world.owner, slot_id(app, world.store.id, world.today, 16), svc)  # 8 h ahead
    assert _run(app, service.send_reminders) == 0
    clock.move_to(NOW + timedelta(hours=6, minutes=30))  # 14:30, start 16:00
    assert _run(app, service.send_reminders) == 1
    with app.app_context():
        kinds = db.session().scalars(select(SubscribeNotice.template_setting).order_by(SubscribeNotice.id)).all()
    assert kinds == ["SUBSCRIBE_TEMPLATE_BOOKING_CONFIRMED", "SUBSCRIBE_TEMPLATE_BOOKING_REMINDER"]


def test_no_shows_are_marked_after_the_grace_period_once_and_block_online_booking(
    app: Any, client: Any, world: World, clock: Any, monkeypatch: Any
) -> None:
    monkeypatch.setitem(app.config, "BOOKING_NO_SHOW_LIMIT", 1)
    svc = world.service["basic_maintenance"]
    booking = book(client, world.owner, slot_id(app, world.store.id, world.today, 10), svc).get_json()
    clock.move_to(NOW + timedelta(hours=2, minutes=20))  # 10:20: within the 30-minute grace
    assert _run(app, service.auto_no_shows) == 0
    clock.move_to(NOW + timedelta(hours=2, minutes=31))
    assert _run(app, service.auto_no_shows) == 1
    assert _run(app, service.auto_no_shows) == 0
    mine = client.get(f"{APP}/bookings/{booking['id']}", headers=world.owner.headers).get_json()
    assert mine["status"] == "no_show"
    with app.app_context():
        tp = db.session().scalars(select(Touchpoint).where(Touchpoint.kind == "no_show")).one()
        assert tp.payload["automatic"] is True and tp.channel == "system"
    blocked = book(client, world.owner, slot_id(app, world.store.id, in_days(world, 1), 10), svc)
    assert (blocked.status_code, blocked.get_json()["code"]) == (409, "booking.blocked_no_show")
    # undone by staff (the owner had come after all): booking online works again
    undone = client.post(
        f"{WB}/bookings/{booking['id']}/undo", json={"reason": "客户已到店"}, headers=world.headers(world.advisors[0])
    )
    assert undone.status_code == 200
    assert (
        client.post(f"{WB}/bookings/{booking['id']}/checkin", headers=world.headers(world.advisors[0])).status_code
        == 200
    )


def test_capacity_is_generated_ahead_once_and_skips_closed_days(
    app: Any, client: Any, world: World, clock: Any
) -> None:
    with app.app_context():
        before = db.session().scalar(select(func.count()).select_from(Slot).where(Slot.store_id == world.store.id))
    closed = in_days(world, 12)
    client.post(
        f"{WB}/stores/{world.store.id}/overrides",
        json={"day": closed.isoformat(), "closed": True, "note": "盘点"},
        headers=world.headers(world.manager),
    )
    made = _run(app, service.generate_all)
    # 31 days ahead from today; 10 were made by the fixture, one is closed: 20 days x 16 blocks, both stores
    assert made == 2 * 21 * 16 - 16
    assert _run(app, service.generate_all) == 0
    with app.app_context():
        s = db.session()
        after = s.scalar(select(func.count()).select_from(Slot).where(Slot.store_id == world.store.id))
        assert after == before + 20 * 16
        assert (
            s.scalar(select(func.count()).select_from(Slot).where(Slot.day == closed, Slot.store_id == world.store.id))
            == 0
        )
        assert s.scalar(select(func.count()).select_from(Booking)) == 0
