"""The store's side over HTTP: today's arrivals, check-in by the owner's rotating code or by
search, bay, start, completion (car mileage and last service date), no-show, undo with audit,
cancellation by the store, capacity and calendar edits — all scoped to the caller's stores."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import select

from backend.booking.models import Booking
from backend.customers.models import Car
from backend.notices.models import SubscribeNotice
from backend.platform.audit import AuditLog
from backend.platform.db import db
from backend.stores.models import Bay
from backend.touchpoints.models import Touchpoint
from tests.booking.conftest import APP, NOW, WB, World, book, in_days, slot_id, slot_row


def _today_booking(
    app: Any, client: Any, world: World, clock: Any, hour: int = 10, service: str = "basic_maintenance"
) -> dict[str, Any]:
    """A booking for today at `hour`, made the day before."""
    clock.move_to(NOW - timedelta(days=1))
    sid = slot_id(app, world.store.id, world.today, hour, "general" if service == "repair" else "quick")
    resp = book(client, world.owner, sid, world.service[service])
    clock.move_to(NOW)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def _bay(app: Any, store_id: int, code: str) -> int:
    with app.app_context():
        return db.session().scalars(select(Bay.id).where(Bay.store_id == store_id, Bay.code == code)).one()


def test_arrival_by_qr_bay_start_complete(app: Any, client: Any, world: World, clock: Any) -> None:
    booking = _today_booking(app, client, world, clock)
    advisor = world.headers(world.advisors[0])
    arrivals = client.get(f"{WB}/bookings", headers=advisor).get_json()
    assert [b["id"] for b in arrivals["items"]] == [booking["id"]]
    assert arrivals["items"][0]["plate"].startswith("沪B") and arrivals["items"][0]["service_name"] == "常规保养"
    code = client.get(f"{APP}/bookings/{booking['id']}/checkin-code", headers=world.owner.headers).get_json()
    scanned = client.post(f"{WB}/bookings/checkin", json={"token": code["token"]}, headers=advisor)
    assert scanned.status_code == 200, scanned.get_json()
    assert scanned.get_json()["status"] == "arrived"
    twice = client.post(f"{WB}/bookings/checkin", json={"token": code["token"]}, headers=advisor)
    assert (twice.status_code, twice.get_json()["code"]) == (409, "booking.already_arrived")
    by_search = client.post(f"{WB}/bookings/{booking['id']}/checkin", headers=advisor)
    assert (by_search.status_code, by_search.get_json()["code"]) == (409, "booking.already_arrived")
    wrong_bay = client.post(
        f"{WB}/bookings/{booking['id']}/bay", json={"bay_id": _bay(app, world.store.id, "G1")}, headers=advisor
    )
    assert (wrong_bay.status_code, wrong_bay.get_json()["code"]) == (422, "booking.bay_invalid")
    bay = client.post(
        f"{WB}/bookings/{booking['id']}/bay", json={"bay_id": _bay(app, world.store.id, "Q1")}, headers=advisor
    )
    assert bay.status_code == 200 and bay.get_json()["bay_id"] == _bay(app, world.store.id, "Q1")
    assert client.post(f"{WB}/bookings/{booking['id']}/start", headers=advisor).get_json()["status"] == "in_service"
    lower = client.post(
        f"{WB}/bookings/{booking['id']}/complete", json={"mileage_km": 9000, "work_done": ["换机油"]}, headers=advisor
    )
    assert (lower.status_code, lower.get_json()["code"]) == (422, "booking.mileage_invalid")
    done = client.post(
        f"{WB}/bookings/{booking['id']}/complete",
        json={"mileage_km": 15230, "work_done": ["更换机油机滤", "检查刹车片"]},
        headers=advisor,
    )
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["status"] == "completed" and done.get_json()["mileage_km"] == 15230
    with app.app_context():
        car = db.session().get(Car, world.owner.car_id)
        assert (car.mileage_km, car.last_service_date) == (15230, world.today)
    detail = client.get(f"{WB}/bookings/{booking['id']}", headers=advisor).get_json()
    assert [h["kind"] for h in detail["history"]] == [
        "booking_created",
        "arrived",
        "booking_started",
        "service_completed",
    ]
    assert detail["history"][1]["payload"]["by_qr"] is True
    # the owner sees it completed; the slot stays used
    mine = client.get(f"{APP}/bookings/{booking['id']}", headers=world.owner.headers).get_json()
    assert mine["status"] == "completed" and mine["work_done"] == ["更换机油机滤", "检查刹车片"]


def test_checkin_refuses_expired_codes_other_days_and_other_stores(
    app: Any, client: Any, world: World, clock: Any
) -> None:
    booking = _today_booking(app, client, world, clock)
    code = client.get(f"{APP}/bookings/{booking['id']}/checkin-code", headers=world.owner.headers).get_json()
    far = client.post(f"{WB}/bookings/checkin", json={"token": code["token"]}, headers=world.headers(world.far_advisor))
    assert (far.status_code, far.get_json()["code"]) == (404, "booking.not_found")
    clock.tick(timedelta(seconds=61))
    late = client.post(
        f"{WB}/bookings/checkin", json={"token": code["token"]}, headers=world.headers(world.advisors[0])
    )
    assert (late.status_code, late.get_json()["code"]) == (410, "qr.expired")
    tomorrow = book(
        client,
        world.make_owner(world.store),
        slot_id(app, world.store.id, in_days(world, 1), 10),
        world.service["tyres"],
    ).get_json()
    early = client.post(f"{WB}/bookings/{tomorrow['id']}/checkin", headers=world.headers(world.advisors[0]))
    assert (early.status_code, early.get_json()["code"]) == (409, "booking.not_today")
    # another store's staff cannot even see it
    seen = client.get(f"{WB}/bookings/{booking['id']}", headers=world.headers(world.far_advisor))
    assert seen.status_code == 404


def test_no_show_and_undo_are_audited(app: Any, client: Any, world: World, clock: Any) -> None:
    booking = _today_booking(app, client, world, clock)
    h = world.headers(world.advisors[1])
    too_early = client.post(f"{WB}/bookings/{booking['id']}/no-show", headers=h)
    assert (too_early.status_code, too_early.get_json()["code"]) == (409, "booking.too_early_for_no_show")
    clock.move_to(NOW + timedelta(hours=2, minutes=10))  # 10:10, the 10:00 booking has not come
    h = world.headers(world.advisors[1])  # a fresh token at the new time
    marked = client.post(f"{WB}/bookings/{booking['id']}/no-show", headers=h)
    assert marked.status_code == 200 and marked.get_json()["status"] == "no_show"
    assert client.post(f"{WB}/bookings/{booking['id']}/undo", json={}, headers=h).status_code == 422
    undone = client.post(f"{WB}/bookings/{booking['id']}/undo", json={"reason": "客户其实已到店"}, headers=h)
    assert undone.status_code == 200 and undone.get_json()["status"] == "booked"
    assert client.post(f"{WB}/bookings/{booking['id']}/checkin", headers=h).get_json()["status"] == "arrived"
    assert (
        client.post(f"{WB}/bookings/{booking['id']}/undo", json={"reason": "误点"}, headers=h).get_json()["status"]
        == "booked"
    )
    with app.app_context():
        audits = (
            db.session()
            .scalars(select(AuditLog).where(AuditLog.action == "booking.undone").order_by(AuditLog.id))
            .all()
        )
        assert [a.detail["undone"] for a in audits] == ["no_show", "arrived"]
        assert audits[0].detail["reason"] == "客户其实已到店" and audits[0].actor_id == str(world.advisors[1].id)
        kinds = (
            db.session()
            .scalars(select(Touchpoint.kind).where(Touchpoint.source == "booking").order_by(Touchpoint.id))
            .all()
        )
    assert kinds == ["booking_created", "no_show", "booking_undone", "arrived", "booking_undone"]
    cancelled = client.post(f"{WB}/bookings/{booking['id']}/cancel", json={"reason": "技师请假"}, headers=h)
    assert cancelled.status_code == 200 and cancelled.get_json()["cancelled_by"] == "store"
    final = client.post(f"{WB}/bookings/{booking['id']}/undo", json={"reason": "x"}, headers=h)
    assert (final.status_code, final.get_json()["code"]) == (409, "booking.cannot_undo")
    with app.app_context():
        settings = db.session().scalars(select(SubscribeNotice.template_setting).order_by(SubscribeNotice.id)).all()
    assert settings[-1] == "SUBSCRIBE_TEMPLATE_BOOKING_CANCELLED"


def test_capacity_edits_and_template_generation(app: Any, client: Any, world: World) -> None:
    manager, advisor = world.headers(world.manager), world.headers(world.advisors[0])
    sid = slot_id(app, world.store.id, in_days(world, 1), 10)
    for _ in range(2):
        book(client, world.make_owner(world.store), sid, world.service["basic_maintenance"])
    below = client.patch(f"{WB}/booking-slots/{sid}", json={"capacity": 1}, headers=advisor)
    assert (below.status_code, below.get_json()["code"]) == (409, "booking.capacity_below_booked")
    assert client.patch(f"{WB}/booking-slots/{sid}", json={"capacity": 6}, headers=advisor).get_json()["capacity"] == 6
    assert slot_row(app, sid) == (6, 2)
    # the template: a manager's job; generation is idempotent
    rows = [{"weekday": d, "block_start": "09:30", "bay_type": "wash", "capacity": 2} for d in range(7)]
    assert (
        client.put(f"{WB}/stores/{world.store.id}/capacity-template", json={"rows": rows}, headers=advisor).status_code
        == 403
    )
    put = client.put(f"{WB}/stores/{world.store.id}/capacity-template", json={"rows": rows}, headers=manager)
    assert put.status_code == 200 and len(put.get_json()["rows"]) == 7
    made = client.post(f"{WB}/stores/{world.store.id}/capacity/generate", json={"days": 3}, headers=manager).get_json()
    again = client.post(f"{WB}/stores/{world.store.id}/capacity/generate", json={"days": 3}, headers=manager).get_json()
    assert (made["created"], again["created"]) == (3, 0)
    slots = client.get(f"{WB}/stores/{world.store.id}/slots?days=3&bay_type=wash", headers=advisor).get_json()["items"]
    assert [s["starts_at"][11:16] for s in slots] == ["01:30"] * 3
    far = client.patch(
        f"{WB}/booking-slots/{slot_id(app, world.far_store.id, in_days(world, 1), 10)}",
        json={"capacity": 9},
        headers=manager,
    )
    assert far.status_code == 404


def test_hours_and_overrides_are_edited_by_managers_of_the_store(client: Any, world: World) -> None:
    manager, advisor = world.headers(world.manager), world.headers(world.advisors[0])
    days = [{"weekday": d, "opens": "08:30", "closes": "17:30", "labour_cap_minutes": 1200} for d in range(6)]
    assert client.put(f"{WB}/stores/{world.store.id}/hours", json={"days": days}, headers=advisor).status_code == 403
    bad = client.put(
        f"{WB}/stores/{world.store.id}/hours",
        json={"days": [{"weekday": 0, "opens": "18:00", "closes": "08:00"}]},
        headers=manager,
    )
    assert (bad.status_code, bad.get_json()["code"]) == (422, "store.hours_invalid")
    put = client.put(f"{WB}/stores/{world.store.id}/hours", json={"days": days}, headers=manager)
    assert put.status_code == 200 and [d["weekday"] for d in put.get_json()["days"]] == [0, 1, 2, 3, 4, 5]
    special = client.post(
        f"{WB}/stores/{world.store.id}/overrides",
        json={"day": "2026-12-31", "closed": False, "opens": "09:00", "closes": "15:00", "note": "跨年提前下班"},
        headers=manager,
    ).get_json()
    detail = client.get(f"{WB}/stores/{world.store.id}", headers=advisor).get_json()
    assert [o["day"] for o in detail["overrides"]] == ["2026-12-31"] and detail["overrides"][0]["closes"] == "15:00:00"
    assert client.delete(f"{WB}/stores/{world.store.id}/overrides/{special['id']}", headers=manager).status_code == 204
    assert client.patch(f"{WB}/stores/{world.far_store.id}", json={"phone": "1"}, headers=manager).status_code == 404
    patched = client.patch(f"{WB}/stores/{world.store.id}", json={"brands": ["大众", "奥迪"]}, headers=manager)
    assert patched.get_json()["brands"] == ["大众", "奥迪"]
    assert date.fromisoformat("2026-12-31")  # the override day used above is a date


def test_labour_cap_limits_a_day(app: Any, client: Any, world: World) -> None:
    """A day with a labour cap of 300 minutes takes one 240-minute repair and refuses the next."""
    from backend.booking.models import BookingDay

    day = in_days(world, 2)
    with app.app_context():
        s = db.session()
        row = s.scalars(select(BookingDay).where(BookingDay.store_id == world.store.id, BookingDay.day == day)).one()
        row.labour_cap = 300
        s.commit()
    repair = world.service["repair"]
    first = book(client, world.make_owner(world.store), slot_id(app, world.store.id, day, 9, "general"), repair)
    assert first.status_code == 201
    second = book(client, world.make_owner(world.store), slot_id(app, world.store.id, day, 10, "general"), repair)
    assert (second.status_code, second.get_json()["code"]) == (409, "booking.labour_full")
    assert slot_row(app, slot_id(app, world.store.id, day, 10, "general"))[1] == 0
    with app.app_context():
        assert (
            db.session().scalar(
                select(Booking.id).where(Booking.slot_id == slot_id(app, world.store.id, day, 10, "general"))
            )
            is None
        )


def test_a_store_cancellation_before_the_start_gives_the_place_back(app: Any, client: Any, world: World) -> None:
    sid = slot_id(app, world.store.id, in_days(world, 1), 10)
    booking = book(client, world.owner, sid, world.service["basic_maintenance"]).get_json()
    assert slot_row(app, sid) == (3, 1)
    h = world.headers(world.advisors[0])
    assert client.post(f"{WB}/bookings/{booking['id']}/cancel", json={}, headers=h).status_code == 422
    done = client.post(f"{WB}/bookings/{booking['id']}/cancel", json={"reason": "技师请假"}, headers=h)
    assert done.status_code == 200 and done.get_json()["cancel_reason"] == "技师请假"
    assert slot_row(app, sid) == (3, 0)
    far = client.post(
        f"{WB}/bookings/{booking['id']}/cancel", json={"reason": "x"}, headers=world.headers(world.far_advisor)
    )
    assert far.status_code == 404
    with app.app_context():
        s = db.session()
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "booking.cancelled")).one()
        notice = s.scalars(select(SubscribeNotice).order_by(SubscribeNotice.id.desc())).first()
        assert audit.object_id == str(booking["id"]) and audit.actor_id == str(world.advisors[0].id)
        assert notice.template_setting == "SUBSCRIBE_TEMPLATE_BOOKING_CANCELLED"
        assert notice.data["thing5"]["value"] == "技师请假"
