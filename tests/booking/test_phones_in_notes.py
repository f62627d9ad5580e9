"""Phone numbers typed into a booking's remark and into a cancellation reason (by the owner or
the store): stored masked with the text as typed sealed alongside, shown masked to the owner and
the store (and in the timeline, the audit detail and the owner's notice), revealed only through
the audited read."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from backend.booking.models import Booking
from tests.booking.conftest import APP, WB, book, in_days, slot_id
from tests.pii_helpers import clear_copies, reveals

TYPED = "到店前打我电话+86 186-0000-1234，或者(021)62345678"
SHOWN = "到店前打我电话186****1234，或者021-****5678"


def _row(db_session: Any, booking_id: int) -> Booking:
    db_session.expire_all()
    return db_session.scalars(select(Booking).where(Booking.id == booking_id)).one()


def _book(app: Any, client: Any, world: Any, note: str, key: str | None = None) -> dict[str, Any]:
    sid = slot_id(app, world.store.id, in_days(world, 1), 10)
    resp = book(client, world.owner, sid, world.service["basic_maintenance"], key=key, note=note)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_numbers_in_a_booking_note_are_sealed_masked_and_revealed_with_audit(
    app: Any, client: Any, world: Any, db_session: Any, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    booking = _book(app, client, world, TYPED, key="bk-phone-1")
    assert booking["note"] == SHOWN

    assert clear_copies(db_session, caplog, "18600001234", "62345678") == {}
    row = _row(db_session, booking["id"])
    assert row.note == SHOWN and row.note_sealed is not None
    assert client.get(f"{APP}/bookings/{booking['id']}", headers=world.owner.headers).get_json()["note"] == SHOWN
    advisor = next(a for a in world.advisors if a.id == booking["advisor_id"])
    assert client.get(f"{WB}/bookings/{booking['id']}", headers=world.headers(advisor)).get_json()["note"] == SHOWN

    revealed = client.get(f"{WB}/bookings/{booking['id']}/note", headers=world.headers(advisor))
    assert revealed.status_code == 200, revealed.get_json()
    assert revealed.get_json() == {"text": TYPED}
    assert reveals(db_session, "booking.note") == [(str(advisor.id), "booking.note", str(booking["id"]))]


def test_a_booking_note_reveal_outside_the_scope_is_404(app: Any, client: Any, world: Any, db_session: Any) -> None:
    booking = _book(app, client, world, TYPED)
    resp = client.get(f"{WB}/bookings/{booking['id']}/note", headers=world.headers(world.far_advisor))
    assert resp.status_code == 404 and resp.get_json()["code"] == "booking.not_found"
    assert reveals(db_session, "booking.note") == []


def test_a_booking_note_without_a_number_is_stored_as_typed(app: Any, client: Any, world: Any, db_session: Any) -> None:
    booking = _book(app, client, world, "顺便看下空调，10:30到")
    row = _row(db_session, booking["id"])
    assert (row.note, row.note_sealed) == ("顺便看下空调，10:30到", None)


def test_numbers_in_a_cancellation_reason_are_sealed_masked_and_revealed_with_audit(
    app: Any, client: Any, world: Any, db_session: Any, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    by_owner = _book(app, client, world, "保养")
    done = client.post(
        f"{APP}/bookings/{by_owner['id']}/cancel",
        json={"reason": "临时出差，改期请打13500001111"},
        headers=world.owner.headers,
    )
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["cancel_reason"] == "临时出差，改期请打135****1111"
    by_store = world.make_owner(world.store)
    sid = slot_id(app, world.store.id, in_days(world, 2), 11)
    other = book(client, by_store, sid, world.service["basic_maintenance"]).get_json()
    cancelled = client.post(
        f"{WB}/bookings/{other['id']}/cancel",
        json={"reason": "技师请假，已打客户电话 152 2222 3333 改期"},
        headers=world.headers(world.manager),
    )
    assert cancelled.status_code == 200, cancelled.get_json()

    assert clear_copies(db_session, caplog, "13500001111", "15222223333") == {}
    assert _row(db_session, other["id"]).cancel_reason == "技师请假，已打客户电话 152****3333 改期"
    url = f"{WB}/bookings/{by_owner['id']}/cancel-reason"
    assert client.get(url, headers=world.headers(world.far_advisor)).status_code == 404
    revealed = client.get(url, headers=world.headers(world.manager))
    assert revealed.get_json() == {"text": "临时出差，改期请打13500001111"}
    assert reveals(db_session, "booking.cancel_reason") == [
        (str(world.manager.id), "booking.cancel_reason", str(by_owner["id"]))
    ]
