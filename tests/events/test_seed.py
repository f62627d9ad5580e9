"""The demo events: live events at the demo store, one full with a waitlist, a past one with
check-ins and a no-show; shown through both APIs; a second seed run adds nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.events.models import Event, EventRegistration
from backend.org.models import Staff
from backend.seed import DEMO_MANAGER, demo_openid, seed_demo

pytestmark = [pytest.mark.usefixtures("app_ctx")]


def test_seed_makes_live_events_with_a_waitlist_once(
    app: Any, db_session: Any, client: Any, staff_headers: Any, member_headers: Any
) -> None:
    report = seed_demo(customers=20)
    assert "events: 4 events" in report
    events = {e.title: e for e in db_session.scalars(select(Event))}
    full = events["冬季免费检测日"]
    assert full.seats_taken == full.capacity == 8 and full.waitlist_count == 3
    states = db_session.scalars(select(EventRegistration.state).where(EventRegistration.event_id == full.id)).all()
    assert sorted(s.value for s in states) == ["confirmed"] * 5 + ["waitlisted"] * 3
    past = events["亲子DIY活动"]
    assert {
        s.value
        for s in db_session.scalars(select(EventRegistration.state).where(EventRegistration.event_id == past.id))
    } == {"checked_in", "no_show"}

    again = seed_demo(customers=20)
    assert "events: 0 events, 0 sign-ups" in again
    assert db_session.scalar(select(func.count()).select_from(Event)) == 4

    manager = db_session.scalars(select(Staff).where(Staff.wecom_userid == DEMO_MANAGER)).one()
    listed = client.get("/api/workbench/v1/events", headers=staff_headers(manager)).get_json()
    assert listed["total"] == 4  # the store's, the region's and the group's
    regs = client.get(f"/api/workbench/v1/events/{full.id}/registrations", headers=staff_headers(manager)).get_json()
    assert [r["waitlist_position"] for r in regs["items"] if r["state"] == "waitlisted"] == [1, 2, 3]
    from backend.customers.models import CustomerIdentity

    owner_id = db_session.scalar(select(CustomerIdentity.customer_id).where(CustomerIdentity.value == demo_openid(1)))
    from types import SimpleNamespace

    owner_h = member_headers(SimpleNamespace(id=owner_id))
    open_events = client.get("/api/app/v1/events", headers=owner_h).get_json()["items"]
    assert {e["title"] for e in open_events} == {"冬季免费检测日", "新车品鉴会", "车主自驾游 · 从化温泉"}
    # Demo owner #1 can try it: the full event puts them on the waitlist, fourth.
    joined = client.post(f"/api/app/v1/events/{full.id}/registrations", json={}, headers=owner_h).get_json()
    assert joined["state"] == "waitlisted" and joined["waitlist_position"] == 4
