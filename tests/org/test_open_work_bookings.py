"""Review probes of `move_open_bookings` (backend/booking/service.py), the bookings' mover of
backend.org.open_work, through the real departure job (`staff_departed` → outbox →
`org.open_work.departed`) and the real WeCom directory sync, on the booking harness' store
(two service advisors 服务0 / 服务1, a manager; a far store with its own service advisor).

Written as review probes: a booking moved off a leaver left no touchpoint (now one, with its own
version), and a service advisor moved to another store kept the old store's bookings (now moved
by `staff_moved`). The others held.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from backend.booking.models import Booking, BookingStatus
from backend.booking.service import history
from backend.org.models import Staff, StaffStatus
from backend.org.open_work import move_departed_work, staff_departed
from backend.platform.audit import AuditLog
from backend.platform.db import utcnow
from backend.touchpoints.models import Touchpoint
from integrations.sandbox import wecom_ops
from tests.booking import conftest as booking_fixtures
from tests.booking.conftest import World, book, clock, in_days, make_owner, slot_id  # noqa: F401 - the booking tests' fixtures
from tests.consult.test_advisor_departure_cases import sync
from tests.wecom.helpers import run_due_jobs

bworld = booking_fixtures.world  # the booking tests' world, as a fixture here


def resign(app: Any, db_session: Any, staff_id: int) -> None:
    """What the directory sync and the staff import do on active → resigned; then the jobs."""
    with app.app_context():
        staff = db_session.get(Staff, staff_id)
        staff.status, staff.resigned_at = StaffStatus.RESIGNED, utcnow()
        db_session.flush()
        staff_departed(db_session, staff, utcnow())
        db_session.commit()
    run_due_jobs(app)
    db_session.expire_all()


def advisor_changes(db_session: Any) -> list[AuditLog]:
    return list(db_session.scalars(select(AuditLog).where(AuditLog.action == "booking.advisor_changed")))


def test_a_booking_moved_off_a_departed_advisor_is_on_the_booking_s_history_and_timeline(
    app: Any, client: Any, db_session: Any, bworld: World
) -> None:
    """服务0 leaves; 陈先生's booking tomorrow goes to 服务1. The booking room's own rule is
    "every change writes one touchpoint keyed by the booking's version" (and the touchpoint
    spine: every change that touches a customer is on their timeline, in the same transaction):
    the manager opening the booking (its history) or the customer's timeline must see that its
    advisor changed, from whom to whom and why; and the booking's version must move, so the
    change is its own. The lead and consultation movers do this (lead_assigned,
    consult_transferred); the booking mover writes only an audit row."""
    world = bworld
    leaving, staying = world.advisors
    sid = slot_id(app, world.store.id, in_days(world, 1), 10)
    booked = book(client, world.owner, sid, world.service["basic_maintenance"]).get_json()
    assert booked["advisor_id"] == leaving.id
    before_version = db_session.get(Booking, booked["id"]).version
    before_history = len(history(db_session, booked["id"]))
    before_timeline = db_session.scalar(
        select(Touchpoint.id).where(Touchpoint.customer_id == world.owner.customer_id).order_by(Touchpoint.id.desc())
    )

    resign(app, db_session, leaving.id)

    row = db_session.get(Booking, booked["id"])
    assert row.advisor_id == staying.id
    assert len(advisor_changes(db_session)) == 1  # the audit row is there
    new_touchpoints = db_session.scalars(
        select(Touchpoint).where(
            Touchpoint.customer_id == world.owner.customer_id, Touchpoint.id > (before_timeline or 0)
        )
    ).all()
    assert len(history(db_session, booked["id"])) == before_history + 1, (
        f"no touchpoint of the advisor change in the booking's history; new touchpoints of the "
        f"customer: {[t.kind for t in new_touchpoints]}; version {before_version} → {row.version}"
    )


def test_finished_and_cancelled_bookings_keep_their_advisor(
    app: Any, client: Any, db_session: Any, bworld: World
) -> None:
    """Passing probe. Completed, cancelled and no-show bookings are history: who served them
    stays on record (performance figures are by advisor); only the open one moves."""
    world = bworld
    leaving, staying = world.advisors
    ids = {}
    for n, status in enumerate(
        (BookingStatus.COMPLETED, BookingStatus.CANCELLED, BookingStatus.NO_SHOW, BookingStatus.BOOKED)
    ):
        owner = world.make_owner(world.store)
        sid = slot_id(app, world.store.id, in_days(world, 1), 10 + n)
        ids[status] = book(client, owner, sid, world.service["basic_maintenance"], advisor_id=leaving.id).get_json()[
            "id"
        ]
        if status != BookingStatus.BOOKED:
            db_session.execute(update(Booking).where(Booking.id == ids[status]).values(status=status))
    db_session.commit()

    resign(app, db_session, leaving.id)

    got = {s: db_session.get(Booking, i).advisor_id for s, i in ids.items()}
    assert got == {
        BookingStatus.COMPLETED: leaving.id,
        BookingStatus.CANCELLED: leaving.id,
        BookingStatus.NO_SHOW: leaving.id,
        BookingStatus.BOOKED: staying.id,
    }


def test_the_departure_job_run_again_moves_nothing_twice(app: Any, client: Any, db_session: Any, bworld: World) -> None:
    """Passing probe. The job has no dedup key; a second run (a retry after a crash that
    committed, a second RQ delivery) must move nothing again: one audit row per booking."""
    world = bworld
    leaving, staying = world.advisors
    sid = slot_id(app, world.store.id, in_days(world, 2), 9)
    booked = book(client, world.owner, sid, world.service["basic_maintenance"]).get_json()
    resign(app, db_session, leaving.id)
    with app.app_context():
        assert move_departed_work(db_session, leaving.id) == {"leads": 0, "consultations": 0, "bookings": 0}
        db_session.commit()
    assert db_session.get(Booking, booked["id"]).advisor_id == staying.id
    assert len(advisor_changes(db_session)) == 1


def test_a_service_advisor_moved_to_another_store_leaves_the_old_store_s_bookings(
    app: Any, client: Any, db_session: Any, bworld: World, sandbox_reset: Any, tree: Any
) -> None:
    """服务0 has a booking at store 0 tomorrow. WeCom moves 服务0 to the far store's department
    (a transfer, not a resignation); the directory sync follows. The car still arrives at store 0
    tomorrow: the booking must go to store 0's other service advisor (服务1), as when 服务0
    resigns — not stay with an advisor who now works at a store 1,000 km away (`may_take`:
    an item is held by an advisor "of the item's store")."""
    world = bworld
    leaving, staying = world.advisors
    sid = slot_id(app, world.store.id, in_days(world, 1), 10)
    booked = book(client, world.owner, sid, world.service["basic_maintenance"]).get_json()
    assert booked["advisor_id"] == leaving.id

    st = sandbox_reset.state
    wecom_ops.add_department(st, 2, tree.stores[0].name)
    wecom_ops.add_department(st, 3, tree.stores[3].name)
    for staff in db_session.scalars(select(Staff)):
        wecom_ops.place_member(st, staff.wecom_userid, [2 if staff.org_unit_id == tree.stores[0].id else 3])
    wecom_ops.place_member(st, leaving.userid, [3])
    assert sync(app, db_session)["deactivated"] == 0

    db_session.expire_all()
    assert db_session.get(Staff, leaving.id).org_unit_id == world.far_store.id
    row = db_session.get(Booking, booked["id"])
    assert row.advisor_id == staying.id, f"store 0's booking stays with advisor {row.advisor_id}, now of the far store"
