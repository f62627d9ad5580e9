"""A service advisor who leaves hands their open bookings on: each goes to the store's
least-loaded service advisor that day, the owner's choice of the advisor who left included
(backend.org.open_work, as the WeCom directory sync and the staff import call it)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.booking.models import Booking
from backend.org.models import Staff, StaffStatus
from backend.org.open_work import staff_departed
from backend.platform.audit import AuditLog
from backend.platform.db import utcnow
from tests.booking.conftest import World, book, in_days, slot_id
from tests.wecom.helpers import run_due_jobs


def test_a_departed_service_advisors_bookings_go_to_the_store_s_other_advisor(
    app: Any, client: Any, db_session: Any, world: World
) -> None:
    leaving, staying = world.advisors
    sid = slot_id(app, world.store.id, in_days(world, 1), 10)
    assigned = book(client, world.owner, sid, world.service["basic_maintenance"]).get_json()
    chosen = book(client, world.make_owner(world.store), sid, world.service["tyres"], advisor_id=leaving.id).get_json()
    assert (assigned["advisor_id"], chosen["advisor_id"], chosen["advisor_chosen"]) == (leaving.id, leaving.id, True)

    with app.app_context():
        staff = db_session.get(Staff, leaving.id)
        staff.status, staff.resigned_at = StaffStatus.RESIGNED, utcnow()
        db_session.flush()
        staff_departed(db_session, staff, utcnow())  # its job runs after the commit
        db_session.commit()
    run_due_jobs(app)

    db_session.expire_all()
    rows = {b.id: (b.advisor_id, b.advisor_chosen) for b in db_session.scalars(select(Booking))}
    assert rows == {assigned["id"]: (staying.id, False), chosen["id"]: (staying.id, False)}
    audits = db_session.scalars(select(AuditLog).where(AuditLog.action == "booking.advisor_changed")).all()
    assert sorted(a.detail["to"] for a in audits) == [staying.id, staying.id]
    assert {a.detail["reason"] for a in audits} == {"departure"}
