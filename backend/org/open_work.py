"""Open work follows the customer when an advisor leaves or hands customers over.

An advisor holds open work for their customers — leads to follow up, consultations to answer,
bookings to receive.
When they resign (the WeCom directory sync or the staff import marks them resigned), that work
must not stay with someone who no longer logs in: a lead nobody contacts, an owner whose
messages reach nobody. When a WeCom handover moves a customer to another advisor, the customer's
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

from sqlalchemy.orm import Session

from backend.org.models import Staff, StaffStatus

log = logging.getLogger("dealerloop.org.open_work")

# mover(session, from_staff, to_staff, now, customer_ids, roles) -> how many items it moved.
# customer_ids None: every customer's; roles None: every role's.
Mover = Callable[[Session, Staff, Staff | None, datetime, "list[int] | None", "set[str] | None"], int]

_MOVERS: dict[str, Mover] = {}


def register_open_work(name: str, mover: Mover) -> None:
    _MOVERS[name] = mover


def move_open_work(
    session: Session,
    from_staff: Staff,
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
        log.info("open work of staff %s moved (%s): %s", from_staff.id, reason, moved)
    return moved


def staff_departed(session: Session, staff: Staff, now: datetime) -> dict[str, int]:
    """A resigned advisor's open work goes back to their stores' routing."""
    return move_open_work(session, staff, None, now, reason="resigned")


def may_take(staff: Staff | None, store_id: int, roles: set[str]) -> bool:
    """Whether `staff` can hold an item of this store needing one of these roles."""
    return (
        staff is not None
        and staff.status == StaffStatus.ACTIVE
        and staff.org_unit_id == store_id
        and bool({r.value for r in staff.roles} & roles)
    )
