"""The demo booking data: stores set up with hours and capacity, bookings in every state that
the workbench and the owner API show; a second seed run adds nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.booking.models import Booking, BookingStatus, Slot
from backend.customers.models import CustomerIdentity
from backend.org.models import Staff
from backend.platform.tokens import issue_access_token
from backend.seed import DEMO_MANAGER, seed_demo
from backend.stores.models import StoreHours, StoreProfile

pytestmark = [pytest.mark.usefixtures("app_ctx")]


def test_seed_sets_up_stores_and_bookings_in_every_state_once(
    app: Any, db_session: Any, client: Any, staff_headers: Any
) -> None:
    report = seed_demo(customers=40)
    assert "booking: 6 stores set up" in report and "8 bookings" in report, report
    assert db_session.scalar(select(func.count()).select_from(StoreProfile)) == 6
    assert db_session.scalar(select(func.count()).select_from(StoreHours)) == 42
    bookings = db_session.scalars(select(Booking)).all()
    assert {b.status for b in bookings} == set(BookingStatus)
    assert {b.cancelled_by for b in bookings if b.status == BookingStatus.CANCELLED} == {"owner", "store"}
    # every place counted equals the bookings holding it
    for slot in db_session.scalars(select(Slot).where(Slot.booked > 0)):
        holding = [b for b in bookings if b.slot_id == slot.id and b.status != BookingStatus.CANCELLED]
        assert slot.booked == len(holding) <= slot.capacity
    again = seed_demo(customers=40)
    assert "booking: 0 stores set up, 0 slots, 0 bookings" in again, again
    assert db_session.scalar(select(func.count()).select_from(Booking)) == 8
    # shown through both APIs
    manager = db_session.scalars(select(Staff).where(Staff.wecom_userid == DEMO_MANAGER)).one()
    h = staff_headers(manager)
    stores = client.get("/api/workbench/v1/stores", headers=h).get_json()["items"]
    assert [s["brands"] for s in stores] == [["一汽-大众"]]
    page = client.get("/api/workbench/v1/bookings?days=1", headers=h).get_json()
    today_at_store = [b for b in bookings if b.store_id == manager.org_unit_id and _today(b)]
    assert page["total"] == len(today_at_store) > 0
    owner = bookings[0]
    token = issue_access_token(app.config["SECRET_KEY"], "owner", owner.customer_id, 900)
    assert db_session.scalar(select(CustomerIdentity.id).where(CustomerIdentity.customer_id == owner.customer_id))
    mine = client.get("/api/app/v1/me/bookings", headers={"Authorization": f"Bearer {token}"}).get_json()["items"]
    assert [b["id"] for b in mine] == [owner.id]


def _today(booking: Booking) -> bool:
    from backend.platform.db import utcnow
    from backend.stores.service import local_day

    return local_day(booking.starts_at) == local_day(utcnow())
