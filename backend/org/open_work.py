"""Open work follows the customer when an advisor leaves or hands customers over.

An advisor holds open work for their customers — leads to follow up, consultations to answer,
bookings to receive.
When they resign (the WeCom directory sync or the staff import marks them resigned), that work
must not stay with someone who no longer logs in: a lead nobody contacts, an owner whose
messages reach nobody. When they move to another store or lose a role, the work they can no
longer see or do (the old store's, the old role's) goes back to its store too.
When a WeCom handover moves a customer to another advisor, the customer's
open work in the role that moved goes with them.

Each feature registers a mover (`register_open_work`) that takes the open items `from_staff`
holds (of the given customers and roles, or all of them) and gives each to `to_staff` when they
may take it — active, of the item's store, holding its role — or else back to the store's own
routing (a lead is routed again, a consultation goes back to the store's queue, a booking goes
to the least-loaded service advisor of its day). Movers write
their touchpoints and notify the new holders; they do not commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.org.models import Staff, StaffStatus
from backend.platform.db import utcnow
from backend.platform.jobs import enqueue, job

log = logging.getLogger("dealerloop.org.open_work")

# mover(session, from_staff, to_staff, now, customer_ids, roles) -> how many items it moved.
# customer_ids None: every customer's; roles None: every role's. from_staff None: the items
# nobody holds (a store's queue, unassigned), which go to `to_staff` where they may take them
# and otherwise stay where they are.
Mover = Callable[[Session, Staff | None, Staff | None, datetime, "list[int] | None", "set[str] | None"], int]

_MOVERS: dict[str, Mover] = {}


def register_open_work(name: str, mover: Mover) -> None:
    _MOVERS[name] = mover


def held_by(column: Any, staff: Staff | None) -> Any:
    """The condition on an item's holder column for a mover's `from_staff` (None: nobody)."""
    return column.is_(None) if staff is None else column == staff.id


def move_open_work(
    session: Session,
    from_staff: Staff | None,
    to_staff: Staff | None,
    now: datetime,
    *,
    customer_ids: list[int] | None = None,
    roles: set[str] | None = None,
    reason: str,
) -> dict[str, int]:
    """Every feature's open items held by `from_staff` to `to_staff` (or the store's routing);
    returns how many each feature moved. `reason` names why, for the log."""
    moved = {name: mover(session, from_staff, to_staff, now, customer_ids, roles) for name, mover in _MOVERS.items()}
    if any(moved.values()):
        log.info("open work of %s moved (%s): %s", f"staff {from_staff.id}" if from_staff else "nobody", reason, moved)
    return moved


DEPARTED_JOB = "org.open_work.departed"


def staff_departed(session: Session, staff: Staff, now: datetime) -> None:
    """A resigned advisor's open work goes back to their stores' routing — in a job of its own,
    after the resignation is committed: every move then sees everyone who left in the same sync
    as gone, and no request waiting on the staff row's lock (an owner's message naming the
    advisor) is held up by moves that wait on that request's rows."""
    # No dedup key: one job per resignation (called on the active → resigned change), and the
    # job moves only what they still hold, so a second run finds nothing.
    enqueue(session, DEPARTED_JOB, {"staff_id": staff.id})


def staff_moved(session: Session, staff: Staff, now: datetime) -> None:
    """An advisor on duty moved to another store or lost a role (directory sync, staff import):
    the open work they may no longer hold (another store's, another role's) goes to its store's
    routing, by the same job after the change commits; what they may still hold stays."""
    enqueue(session, DEPARTED_JOB, {"staff_id": staff.id})


@job(DEPARTED_JOB, queue="default")
def move_departed_work(session: Session, staff_id: int) -> dict[str, int]:
    """The open work `staff_id` may no longer hold: all of it once they have resigned; on duty,
    what is not of their store and roles now (each mover keeps what `may_take` allows). Run
    again, or after they came back, it finds nothing to move."""
    staff = session.get(Staff, staff_id)
    if staff is None:
        return {}
    reason = "resigned" if staff.status == StaffStatus.RESIGNED else "moved"
    return move_open_work(session, staff, None, utcnow(), reason=reason)


def lock_active(session: Session, staff_id: int) -> bool:
    """Whether the staff member is active, read under a shared lock on their row: a sync
    resigning them waits for the caller's commit, or the caller for the sync's — so work given
    to someone leaving is either refused or given before the resignation, and then moved."""
    status = session.scalar(select(Staff.status).where(Staff.id == staff_id).with_for_update(read=True))
    return status == StaffStatus.ACTIVE


def may_take(staff: Staff | None, store_id: int, roles: set[str]) -> bool:
    """Whether `staff` can hold an item of this store needing one of these roles."""
    return (
        staff is not None
        and staff.status == StaffStatus.ACTIVE
        and staff.org_unit_id == store_id
        and bool({r.value for r in staff.roles} & roles)
    )
