"""Maintenance booking (维修保养预约): capacity, owner booking within policy, the store's
arrival-to-completion flow, reminders and no-shows.

Capacity. A `booking_slot` row holds `capacity` places of one store, time block and bay type.
A place is taken only by `UPDATE booking_slot SET booked = booked + 1 WHERE id = ? AND booked <
capacity` (rowcount 1 or the slot is full) in the booking's own transaction, and given back by
the mirror update; the day's labour cap, when the store has one, is taken the same way on its
`booking_day` row. Nothing is ever checked and then inserted, so no interleaving of requests
can overbook, and the CHECK constraints stop a bug from doing it.

Lock order of every booking write (owner or staff, request or job), so no two can deadlock:
the customer row (shared, as every touchpoint write takes it; a customer merge holds it
exclusively), then the car row (serialises one car's bookings: the active-bookings limit is
counted under it), then the booking row, then slots in id order, then day rows in (store, day)
order. A reschedule moves both places in that one transaction.

Policy (settings, read per call): minimum notice, booking horizon, cancel and reschedule
cut-offs, active bookings per car, reschedules per booking and the no-show rule (N no-shows in
a window block online booking for some days).

Advisor: the owner's choice (an active service advisor of the store) or the store's service
advisor with the fewest active bookings that day (ties: lowest id). Two bookings at the same
moment may both pick the same advisor; it is a balance, not a limit.

Every change writes one touchpoint keyed by the booking's version, and the owner is told by a
subscribe message (confirmed, changed, cancelled by the store, reminders) through
backend.notices.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, Select, false, func, or_, select, true, update
from sqlalchemy.orm import Session

from backend.booking.models import (
    ACTIVE_STATUSES,
    Booking,
    BookingDay,
    BookingStatus,
    CapacityTemplate,
    Slot,
)
from backend.customers.models import Car
from backend.customers.service import vault
from backend.org.models import OrgUnit, Role, Staff, StaffRole, StaffStatus
from backend.org.open_work import held_by, lock_active, may_take, register_open_work
from backend.org.scope import register_scope, store_filter
from backend.platform.actors import MemberActor, StaffActor, SystemActor
from backend.platform.audit import write_audit
from backend.platform.db import utcnow
from backend.platform.errors import AppError, register_messages
from backend.platform.pii import register_sealed_text, seal_into
from backend.platform.upsert import upsert
from backend.stores.models import Bay, ServiceType, StoreProfile
from backend.stores.service import CHINA, Calendar, at_local, local_day, service_type_or_404
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import live_customer_id, record

log = logging.getLogger("dealerloop.booking")

SOURCE = "booking"
QR_PURPOSE = "booking_checkin"
STAFF_ROLES = ("service_advisor", "store_manager", "region_manager", "division_manager", "group_admin")
STATUS_LABELS = {
    BookingStatus.BOOKED: "已预约",
    BookingStatus.ARRIVED: "已到店",
    BookingStatus.IN_SERVICE: "服务中",
    BookingStatus.COMPLETED: "已完成",
    BookingStatus.CANCELLED: "已取消",
    BookingStatus.NO_SHOW: "未到店",
}

register_messages(
    {
        "booking.not_found": ("预约不存在", "Booking not found"),
        "booking.slot_not_found": ("该时段不存在", "Slot not found"),
        "booking.slot_full": ("该时段已约满，请选择其他时间", "This slot is full"),
        "booking.labour_full": ("当天工时已约满，请选择其他日期", "The store's labour hours for that day are taken"),
        "booking.slot_in_past": ("该时段已过去", "This slot is in the past"),
        "booking.too_soon": ("距离预约时间太近，请选择更晚的时段", "Too short notice for this slot"),
        "booking.beyond_horizon": ("超出可预约的日期范围", "This slot is beyond the booking horizon"),
        "booking.store_closed": ("门店当天不营业", "The store is closed at that time"),
        "booking.slot_mismatch": ("该时段不提供此项服务", "This slot does not serve this service type"),
        "booking.car_invalid": ("请选择您名下的车辆", "Choose one of your cars"),
        "booking.brand_not_served": ("该门店不服务此品牌车辆", "This store does not serve the car's brand"),
        "booking.store_not_bookable": ("该门店暂不支持在线预约", "This store takes no online bookings"),
        "booking.active_limit": ("该车辆已有进行中的预约", "This car already has the most active bookings allowed"),
        "booking.blocked_no_show": (
            "您近期多次预约未到店，暂时无法在线预约，请联系门店",
            "Online booking is blocked after repeated no-shows",
        ),
        "booking.advisor_invalid": ("该顾问不可预约", "This advisor cannot be booked"),
        "booking.cancel_cutoff": ("距离预约时间太近，无法在线取消，请联系门店", "Too late to cancel online"),
        "booking.reschedule_cutoff": ("距离预约时间太近，无法在线改约，请联系门店", "Too late to reschedule online"),
        "booking.reschedule_limit": ("改约次数已达上限", "This booking was rescheduled too many times"),
        "booking.invalid_state": ("预约当前状态不允许此操作", "Not possible in the booking's current state"),
        "booking.already_arrived": ("该预约已签到", "This booking is already checked in"),
        "booking.not_today": ("只能为当天的预约签到", "Only today's bookings can be checked in"),
        "booking.too_early_for_no_show": ("预约时间未到，不能标记未到店", "The booking has not started yet"),
        "booking.bay_invalid": ("请选择本店可用的对应工位", "Choose an active bay of the right kind at this store"),
        "booking.mileage_invalid": ("里程数不能小于车辆已记录的里程", "Mileage cannot be lower than recorded"),
        "booking.cannot_undo": ("该状态不可撤销", "This state cannot be undone"),
        "booking.capacity_below_booked": ("容量不能小于已预约数", "Capacity cannot be lower than the places booked"),
        "booking.template_invalid": ("排班模板有误", "The capacity template is invalid"),
    }
)


# ---------------------------------------------------------------------------------------------
# Scopes: service advisors work their store's bookings (a reception desk, not a customer list),
# managers their stores', group admins all.


def _store_rule(actor: StaffActor, column: Any) -> ColumnElement[bool]:
    if actor.scope.everything:
        return true()
    if actor.scope.own_customers_only:
        return column == actor.org_unit_id
    if not actor.scope.store_ids:
        return false()
    return store_filter(actor, column)


register_scope("booking", Booking, lambda a: _store_rule(a, Booking.store_id), "booking.not_found")
register_scope("booking_slot", Slot, lambda a: _store_rule(a, Slot.store_id), "booking.slot_not_found")
register_sealed_text("booking.note", Booking, "note", "booking")
register_sealed_text("booking.cancel_reason", Booking, "cancel_reason", "booking")


# ---------------------------------------------------------------------------------------------
# Policy


@dataclass(frozen=True)
class Policy:
    min_notice: timedelta
    horizon_days: int
    cancel_cutoff: timedelta
    reschedule_cutoff: timedelta
    max_active_per_car: int
    max_reschedules: int
    no_show_grace: timedelta
    no_show_limit: int
    no_show_window: timedelta
    no_show_block: timedelta
    days_ahead: int


def policy() -> Policy:
    c = current_app.config
    return Policy(
        min_notice=timedelta(minutes=c["BOOKING_MIN_NOTICE_MINUTES"]),
        horizon_days=c["BOOKING_HORIZON_DAYS"],
        cancel_cutoff=timedelta(minutes=c["BOOKING_CANCEL_CUTOFF_MINUTES"]),
        reschedule_cutoff=timedelta(minutes=c["BOOKING_RESCHEDULE_CUTOFF_MINUTES"]),
        max_active_per_car=c["BOOKING_MAX_ACTIVE_PER_CAR"],
        max_reschedules=c["BOOKING_MAX_RESCHEDULES"],
        no_show_grace=timedelta(minutes=c["BOOKING_NO_SHOW_GRACE_MINUTES"]),
        no_show_limit=c["BOOKING_NO_SHOW_LIMIT"],
        no_show_window=timedelta(days=c["BOOKING_NO_SHOW_WINDOW_DAYS"]),
        no_show_block=timedelta(days=c["BOOKING_NO_SHOW_BLOCK_DAYS"]),
        days_ahead=c["BOOKING_CAPACITY_DAYS_AHEAD"],
    )


def horizon_end(now: datetime, pol: Policy) -> datetime:
    """The end of the last bookable local day."""
    return at_local(local_day(now) + timedelta(days=pol.horizon_days + 1), time(0))


# ---------------------------------------------------------------------------------------------
# Capacity: templates, generation ahead, staff edits


def set_template(
    session: Session, actor: StaffActor, store_id: int, rows: list[dict[str, Any]]
) -> list[CapacityTemplate]:
    """Replace the store's weekly capacity template (days already generated keep their slots)."""
    if not actor.has_role("store_manager", "region_manager", "division_manager", "group_admin"):
        raise AppError("auth.forbidden", 403)
    keys = [(r["weekday"], r["block_start"], r["bay_type"]) for r in rows]
    if len(set(keys)) != len(keys):
        raise AppError("booking.template_invalid", 422, errors={"json": {"rows": ["a block appears twice"]}})
    for row in session.scalars(select(CapacityTemplate).where(CapacityTemplate.store_id == store_id)):
        session.delete(row)
    session.flush()
    for r in rows:
        session.add(CapacityTemplate(store_id=store_id, **r))
    session.flush()
    write_audit(session, actor, "booking.template_set", "org_unit", store_id, {"rows": len(rows)})
    return template_of(session, store_id)


def template_of(session: Session, store_id: int) -> list[CapacityTemplate]:
    stmt = select(CapacityTemplate).where(CapacityTemplate.store_id == store_id)
    return list(
        session.scalars(stmt.order_by(CapacityTemplate.weekday, CapacityTemplate.block_start, CapacityTemplate.id))
    )


def generate_store(session: Session, store_id: int, first: date, days: int) -> int:
    """Create the slots (and day rows) the template and the calendar give for `days` days from
    `first`; existing rows are left alone, so a re-run adds nothing. Answers slots created."""
    template = template_of(session, store_id)
    if not template:
        return 0
    last = first + timedelta(days=days - 1)
    calendar = Calendar(session, store_id, first, last)
    existing = set(
        session.execute(
            select(Slot.bay_type, Slot.starts_at).where(Slot.store_id == store_id, Slot.day >= first, Slot.day <= last)
        ).all()
    )
    created = 0
    for offset in range(days):
        day = first + timedelta(days=offset)
        hours = calendar.hours(day)
        if hours is None:
            continue
        for row in template:
            if row.weekday != day.weekday():
                continue
            starts = at_local(day, row.block_start)
            ends = starts + timedelta(minutes=row.block_minutes)
            if not calendar.is_open_at(starts, ends):
                continue
            if (row.bay_type, starts) in existing:
                continue
            upsert(
                session,
                Slot,
                {
                    "store_id": store_id,
                    "day": day,
                    "starts_at": starts,
                    "ends_at": ends,
                    "bay_type": row.bay_type.value,
                    "capacity": row.capacity,
                    "booked": 0,
                },
                ["store_id", "bay_type", "starts_at"],
                lambda new: [("capacity", Slot.__table__.c.capacity)],  # a slot made meanwhile stays
            )
            created += 1
        upsert(
            session,
            BookingDay,
            {"store_id": store_id, "day": day, "labour_cap": hours.labour_cap, "labour_booked": 0},
            ["store_id", "day"],
            lambda new: [("labour_cap", BookingDay.__table__.c.labour_cap)],
        )
    return created


def generate_all(session: Session, now: datetime | None = None) -> int:
    """The job: every store with a template, from today over BOOKING_CAPACITY_DAYS_AHEAD days."""
    now = now or utcnow()
    pol = policy()
    store_ids = session.scalars(select(CapacityTemplate.store_id).distinct().order_by(CapacityTemplate.store_id)).all()
    return sum(generate_store(session, store_id, local_day(now), pol.days_ahead) for store_id in store_ids)


def set_slot_capacity(session: Session, actor: StaffActor, slot_id: int, capacity: int) -> Slot:
    """Staff change a slot's places; never below what is booked (409)."""
    if not actor.has_role(*STAFF_ROLES):
        raise AppError("auth.forbidden", 403)
    done = session.execute(
        update(Slot)
        .where(Slot.id == slot_id, Slot.booked <= capacity, _store_rule(actor, Slot.store_id))
        .values(capacity=capacity)
        .execution_options(synchronize_session=False)
    )
    slot = session.scalars(select(Slot).where(Slot.id == slot_id).execution_options(populate_existing=True)).one()
    if done.rowcount != 1:
        raise AppError("booking.capacity_below_booked", 409, errors={"booked": slot.booked})
    write_audit(session, actor, "booking.slot_capacity_set", "booking_slot", slot_id, {"capacity": capacity})
    return slot


def store_slots(session: Session, store_id: int, first: date, days: int, bay_type: str | None = None) -> list[Slot]:
    stmt = select(Slot).where(Slot.store_id == store_id, Slot.day >= first, Slot.day < first + timedelta(days=days))
    if bay_type:
        stmt = stmt.where(Slot.bay_type == bay_type)
    return list(session.scalars(stmt.order_by(Slot.starts_at, Slot.bay_type)))


def _take_place(session: Session, slot_id: int) -> None:
    """The one way a place is taken: a conditional update that cannot go above capacity."""
    taken = session.execute(
        update(Slot)
        .where(Slot.id == slot_id, Slot.booked < Slot.capacity)
        .values(booked=Slot.booked + 1)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:
        raise AppError("booking.slot_full", 409)


def _release_place(session: Session, slot_id: int) -> None:
    session.execute(
        update(Slot)
        .where(Slot.id == slot_id, Slot.booked > 0)
        .values(booked=Slot.booked - 1)
        .execution_options(synchronize_session=False)
    )


def _take_labour(session: Session, store_id: int, day: date, labour: int) -> None:
    if labour <= 0:
        return
    done = session.execute(
        update(BookingDay)
        .where(
            BookingDay.store_id == store_id,
            BookingDay.day == day,
            or_(BookingDay.labour_cap.is_(None), BookingDay.labour_booked + labour <= BookingDay.labour_cap),
        )
        .values(labour_booked=BookingDay.labour_booked + labour)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1 and session.scalar(
        select(BookingDay.id).where(BookingDay.store_id == store_id, BookingDay.day == day)
    ):
        raise AppError("booking.labour_full", 409)  # the day row exists, so its cap refused (no row: no cap)


def _release_labour(session: Session, store_id: int, day: date, labour: int) -> None:
    if labour <= 0:
        return
    session.execute(
        update(BookingDay)
        .where(BookingDay.store_id == store_id, BookingDay.day == day, BookingDay.labour_booked >= labour)
        .values(labour_booked=BookingDay.labour_booked - labour)
        .execution_options(synchronize_session=False)
    )


# ---------------------------------------------------------------------------------------------
# Owner side: checks


def _owner_car(session: Session, customer_id: int, car_id: int, lock: bool) -> Car:
    stmt = select(Car).where(Car.id == car_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    car = session.scalars(stmt).one_or_none()
    if car is None or car.customer_id != customer_id or car.removed_at is not None:
        # another owner's car and no car at all answer alike: ids cannot be probed
        raise AppError("booking.car_invalid", 422, errors={"json": {"car_id": ["one of your cars"]}})
    return car


def _check_store(session: Session, store_id: int, car: Car) -> StoreProfile:
    profile = session.get(StoreProfile, store_id)
    if profile is None or not profile.bookable:
        raise AppError("booking.store_not_bookable", 422, errors={"json": {"store_id": ["not open for booking"]}})
    if profile.brands and car.brand and car.brand not in profile.brands:
        raise AppError(
            "booking.brand_not_served", 422, errors={"json": {"car_id": [f"brands served: {profile.brands}"]}}
        )
    return profile


def _check_time(slot: Slot, now: datetime, pol: Policy) -> None:
    if slot.starts_at <= now:
        raise AppError("booking.slot_in_past", 422, errors={"json": {"slot_id": ["in the past"]}})
    if slot.starts_at < now + pol.min_notice:
        raise AppError(
            "booking.too_soon", 422, errors={"min_notice_minutes": int(pol.min_notice.total_seconds() // 60)}
        )
    if slot.starts_at >= horizon_end(now, pol):
        raise AppError("booking.beyond_horizon", 422, errors={"horizon_days": pol.horizon_days})


def _check_open(session: Session, slot: Slot) -> None:
    calendar = Calendar(session, slot.store_id, slot.day, slot.day)
    if not calendar.is_open_at(slot.starts_at, slot.ends_at):
        raise AppError("booking.store_closed", 409, errors={"day": slot.day.isoformat()})


def _check_no_shows(session: Session, customer_id: int, now: datetime, pol: Policy) -> None:
    if pol.no_show_limit <= 0:
        return
    recent = session.execute(
        select(func.count(), func.max(Booking.no_show_at)).where(
            Booking.customer_id == customer_id,
            Booking.status == BookingStatus.NO_SHOW,
            Booking.no_show_at >= now - pol.no_show_window,
        )
    ).one()
    count, latest = recent
    if count >= pol.no_show_limit and latest is not None and latest + pol.no_show_block > now:
        raise AppError("booking.blocked_no_show", 409, errors={"until": (latest + pol.no_show_block).isoformat()})


def _slot_or_404(session: Session, slot_id: int) -> Slot:
    slot = session.get(Slot, slot_id)
    if slot is None:
        raise AppError("booking.slot_not_found", 404)
    return slot


def _service_advisors(session: Session, store_id: int) -> list[Staff]:
    return list(
        session.scalars(
            select(Staff)
            .join(StaffRole, StaffRole.staff_id == Staff.id)
            .where(
                Staff.org_unit_id == store_id,
                Staff.status == StaffStatus.ACTIVE,
                StaffRole.role == Role.SERVICE_ADVISOR.value,
            )
            .order_by(Staff.id)
        ).unique()
    )


def _advisor(session: Session, slot: Slot, preferred: int | None) -> tuple[int | None, bool]:
    """The booking's service advisor: the one the owner chose, else the store's least loaded
    that day. The choice is confirmed under a shared lock on the advisor's row (`lock_active`):
    a directory sync resigning them meanwhile either waits for this commit — and its departure
    job then moves the booking — or has committed, and the next advisor is taken. A booking is
    never left with someone who has gone."""
    advisors = _service_advisors(session, slot.store_id)
    if preferred is not None:
        if preferred not in {a.id for a in advisors} or not lock_active(session, preferred):
            raise AppError(
                "booking.advisor_invalid", 422, errors={"json": {"advisor_id": ["a service advisor of the store"]}}
            )
        return preferred, True
    if not advisors:
        return None, False
    day_start = at_local(slot.day, time(0))
    loads = dict(
        session.execute(
            select(Booking.advisor_id, func.count())
            .where(
                Booking.store_id == slot.store_id,
                Booking.status.in_(ACTIVE_STATUSES),
                Booking.starts_at >= day_start,
                Booking.starts_at < day_start + timedelta(days=1),
                Booking.advisor_id.in_([a.id for a in advisors]),
            )
            .group_by(Booking.advisor_id)
        ).all()
    )
    for chosen in sorted(advisors, key=lambda a: (loads.get(a.id, 0), a.id)):
        if lock_active(session, chosen.id):
            return chosen.id, False
    return None, False  # every one left meanwhile: the advisor who receives the car takes it


def move_open_bookings(
    session: Session,
    from_staff: Staff | None,
    to_staff: Staff | None,
    now: datetime,
    customer_ids: list[int] | None,
    roles: set[str] | None,
) -> int:
    """`backend.org.open_work`'s mover: the bookings not yet completed whose service advisor is
    `from_staff` go to `to_staff` when they may take them (an active service advisor of the
    booking's store), else to the store's least-loaded service advisor that day (nobody: the
    advisor who receives the car takes it at check-in). An advisor the owner chose keeps the
    booking while on duty; one who left does not."""
    if roles is not None and Role.SERVICE_ADVISOR.value not in roles:
        return 0
    stmt = select(Booking.id).where(held_by(Booking.advisor_id, from_staff), Booking.status.in_(ACTIVE_STATUSES))
    if customer_ids is not None:
        stmt = stmt.where(Booking.customer_id.in_(customer_ids))
    system = SystemActor("open_work")
    moved = 0
    for booking_id in session.scalars(stmt.order_by(Booking.id)).all():
        try:
            booking = _lock_booking(
                session, booking_id, held_by(Booking.advisor_id, from_staff), Booking.status.in_(ACTIVE_STATUSES)
            )
        except AppError:  # finished or moved meanwhile
            continue
        keeps = may_take(from_staff, booking.store_id, {Role.SERVICE_ADVISOR.value})
        if booking.advisor_chosen and keeps:
            continue  # the owner chose them, and they still receive cars there
        if may_take(to_staff, booking.store_id, {Role.SERVICE_ADVISOR.value}):
            assert to_staff is not None
            advisor_id: int | None = to_staff.id
        elif keeps or from_staff is None:
            continue  # still theirs to hold (handed to someone who cannot take it, or not moved)
        else:
            slot = session.get(Slot, booking.slot_id)
            advisor_id = _advisor(session, slot, None)[0] if slot is not None else None
        previous = from_staff.id if from_staff is not None else None
        if advisor_id == previous:
            continue
        reason = "handover" if to_staff is not None else "departure"
        booking.advisor_id, booking.advisor_chosen = advisor_id, False
        # A change of the booking like any other: its own version, its touchpoint (the booking's
        # history and the customer's timeline show who receives the car now, and why).
        booking.version += 1
        booking.updated_at = now
        _touch(
            session,
            booking,
            Kind.ADVISOR_ASSIGNED,
            "advisor",
            Channel.SYSTEM,
            now,
            from_staff_id=previous,
            to_staff_id=advisor_id,
            reason=reason,
        )
        write_audit(
            session,
            system,
            "booking.advisor_changed",
            "booking",
            booking.id,
            {"from": previous, "to": advisor_id, "reason": reason},
        )
        moved += 1
    session.flush()
    return moved


register_open_work("bookings", move_open_bookings)


# ---------------------------------------------------------------------------------------------
# Owner side: free slots


def free_slots(
    session: Session,
    actor: MemberActor,
    *,
    car_id: int,
    store_id: int,
    service_type_id: int,
    first: date | None = None,
    days: int = 14,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    now = now or utcnow()
    pol = policy()
    car = _owner_car(session, actor.customer_id, car_id, lock=False)
    st = service_type_or_404(session, service_type_id)
    _check_store(session, store_id, car)
    return available(session, store_id, st, first=first, days=days, now=now, pol=pol)


def available(
    session: Session,
    store_id: int,
    st: ServiceType,
    *,
    first: date | None,
    days: int,
    now: datetime,
    pol: Policy,
) -> list[dict[str, Any]]:
    """Bookable slots for a service type: open, within notice and horizon, a place free and the
    day's labour not exhausted. Three queries whatever the range."""
    today = local_day(now)
    first = max(first or today, today)
    last = first + timedelta(days=days - 1)
    earliest, latest = now + pol.min_notice, horizon_end(now, pol)
    calendar = Calendar(session, store_id, first, last)
    slots = session.scalars(
        select(Slot)
        .where(
            Slot.store_id == store_id,
            Slot.bay_type == st.bay_type,
            Slot.day >= first,
            Slot.day <= last,
            Slot.starts_at >= earliest,
            Slot.starts_at < latest,
            Slot.booked < Slot.capacity,
        )
        .order_by(Slot.starts_at)
    ).all()
    labour = {
        d.day: d
        for d in session.scalars(
            select(BookingDay).where(BookingDay.store_id == store_id, BookingDay.day >= first, BookingDay.day <= last)
        )
    }
    out = []
    for slot in slots:
        if not calendar.is_open_at(slot.starts_at, slot.ends_at):
            continue
        day = labour.get(slot.day)
        if day is not None and day.labour_cap is not None and day.labour_booked + st.labour_minutes > day.labour_cap:
            continue
        out.append(
            {
                "slot_id": slot.id,
                "day": slot.day,
                "starts_at": slot.starts_at,
                "ends_at": slot.ends_at,
                "free": slot.capacity - slot.booked,
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# Owner side: book, reschedule, cancel


def book(session: Session, actor: MemberActor, data: dict[str, Any], now: datetime | None = None) -> Booking:
    now = now or utcnow()
    pol = policy()
    customer_id = live_customer_id(session, actor.customer_id)
    car = _owner_car(session, customer_id, data["car_id"], lock=True)
    st = service_type_or_404(session, data["service_type_id"])
    slot = _slot_or_404(session, data["slot_id"])
    if slot.bay_type != st.bay_type:
        raise AppError("booking.slot_mismatch", 422, errors={"json": {"slot_id": [f"a {st.bay_type.value} slot"]}})
    _check_store(session, slot.store_id, car)
    _check_time(slot, now, pol)
    _check_open(session, slot)
    _check_no_shows(session, customer_id, now, pol)
    active = session.scalar(
        select(func.count())
        .select_from(Booking)
        .where(
            Booking.car_id == car.id,
            Booking.status.in_(ACTIVE_STATUSES),
            # a waived no-show of a day gone by stays booked, but can never be checked in
            or_(Booking.no_show_waived_at.is_(None), Booking.starts_at >= at_local(local_day(now), time(0))),
        )
    )
    if active >= pol.max_active_per_car:
        raise AppError("booking.active_limit", 409, errors={"max_active_per_car": pol.max_active_per_car})
    advisor_id, chosen = _advisor(session, slot, data.get("advisor_id"))
    _take_place(session, slot.id)
    _take_labour(session, slot.store_id, slot.day, st.labour_minutes)
    booking = Booking(
        customer_id=customer_id,
        car_id=car.id,
        store_id=slot.store_id,
        service_type_id=st.id,
        slot_id=slot.id,
        starts_at=slot.starts_at,
        ends_at=slot.starts_at + timedelta(minutes=st.duration_minutes),
        labour_minutes=st.labour_minutes,
        status=BookingStatus.BOOKED,
        advisor_id=advisor_id,
        advisor_chosen=chosen,
        scheduled_at=now,
        created_at=now,
        updated_at=now,
    )
    seal_into(booking, "note", data.get("note"), vault())
    session.add(booking)
    session.flush()
    _touch(session, booking, Kind.BOOKING_CREATED, "created", Channel.MINIPROGRAM, now, service=st.code)
    _notify(session, booking, "SUBSCRIBE_TEMPLATE_BOOKING_CONFIRMED", "confirmed", st)
    return booking


def _lock_booking(session: Session, booking_id: int, *where: ColumnElement[bool]) -> Booking:
    """The lock order of this room: customer (shared), car, booking."""
    ids = session.execute(
        select(Booking.customer_id, Booking.car_id).where(Booking.id == booking_id, *where)
    ).one_or_none()
    if ids is None:
        raise AppError("booking.not_found", 404)
    live_customer_id(session, ids.customer_id)
    session.execute(select(Car.id).where(Car.id == ids.car_id).with_for_update())
    booking = session.scalars(
        select(Booking)
        .where(Booking.id == booking_id, *where)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if booking is None:
        raise AppError("booking.not_found", 404)
    return booking


def member_booking(session: Session, actor: MemberActor, booking_id: int) -> Booking:
    booking = session.scalars(
        select(Booking).where(Booking.id == booking_id, Booking.customer_id == actor.customer_id)
    ).one_or_none()
    if booking is None:
        raise AppError("booking.not_found", 404)
    return booking


def member_bookings(session: Session, actor: MemberActor, active_only: bool = False) -> list[Booking]:
    stmt = select(Booking).where(Booking.customer_id == actor.customer_id)
    if active_only:
        stmt = stmt.where(Booking.status.in_(ACTIVE_STATUSES))
    return list(session.scalars(stmt.order_by(Booking.starts_at.desc(), Booking.id.desc()).limit(100)))


def reschedule(
    session: Session, actor: MemberActor, booking_id: int, data: dict[str, Any], now: datetime | None = None
) -> Booking:
    now = now or utcnow()
    pol = policy()
    booking = _lock_booking(session, booking_id, Booking.customer_id == actor.customer_id)
    if booking.status != BookingStatus.BOOKED:
        raise AppError("booking.invalid_state", 409, errors={"status": booking.status.value})
    if booking.slot_id == data["slot_id"]:
        return booking  # a repeated tap
    if booking.starts_at - now < pol.reschedule_cutoff:
        raise AppError(
            "booking.reschedule_cutoff",
            409,
            errors={"cutoff_minutes": int(pol.reschedule_cutoff.total_seconds() // 60)},
        )
    if booking.reschedule_count >= pol.max_reschedules:
        raise AppError("booking.reschedule_limit", 409, errors={"max_reschedules": pol.max_reschedules})
    st = session.get(ServiceType, booking.service_type_id)
    assert st is not None
    new = _slot_or_404(session, data["slot_id"])
    if new.bay_type != st.bay_type:
        raise AppError("booking.slot_mismatch", 422, errors={"json": {"slot_id": [f"a {st.bay_type.value} slot"]}})
    car = session.get(Car, booking.car_id)
    assert car is not None
    _check_store(session, new.store_id, car)
    _check_time(new, now, pol)
    _check_open(session, new)
    old = session.get(Slot, booking.slot_id)
    assert old is not None
    # Both places in slot-id order, then the day rows in (store, day) order.
    for slot in sorted((old, new), key=lambda s: s.id):
        if slot is new:
            _take_place(session, new.id)
        else:
            _release_place(session, old.id)
    if (old.store_id, old.day) != (new.store_id, new.day):
        for store_id, day in sorted({(old.store_id, old.day), (new.store_id, new.day)}):
            if (store_id, day) == (new.store_id, new.day):
                _take_labour(session, store_id, day, booking.labour_minutes)
            else:
                _release_labour(session, store_id, day, booking.labour_minutes)
    previous = booking.starts_at
    if new.store_id != booking.store_id:
        booking.advisor_id, booking.advisor_chosen = _advisor(session, new, None)
    booking.slot_id = new.id
    booking.store_id = new.store_id
    booking.starts_at = new.starts_at
    booking.ends_at = new.starts_at + timedelta(minutes=st.duration_minutes)
    booking.reschedule_count += 1
    booking.scheduled_at = now
    booking.reminded_day_at = booking.reminded_soon_at = None
    booking.version += 1
    booking.updated_at = now
    session.flush()
    _touch(
        session,
        booking,
        Kind.BOOKING_RESCHEDULED,
        "rescheduled",
        Channel.MINIPROGRAM,
        now,
        previous_starts_at=previous.isoformat(),
        reason=data.get("reason"),
    )
    _notify(session, booking, "SUBSCRIBE_TEMPLATE_BOOKING_CHANGED", "changed", st)
    return booking


def _give_back(session: Session, booking: Booking) -> None:
    slot = session.get(Slot, booking.slot_id)
    assert slot is not None
    _release_place(session, slot.id)
    _release_labour(session, slot.store_id, slot.day, booking.labour_minutes)


def cancel(session: Session, actor: MemberActor, booking_id: int, reason: str, now: datetime | None = None) -> Booking:
    now = now or utcnow()
    pol = policy()
    booking = _lock_booking(session, booking_id, Booking.customer_id == actor.customer_id)
    if booking.status != BookingStatus.BOOKED:
        raise AppError("booking.invalid_state", 409, errors={"status": booking.status.value})
    if booking.starts_at - now < pol.cancel_cutoff:
        raise AppError(
            "booking.cancel_cutoff", 409, errors={"cutoff_minutes": int(pol.cancel_cutoff.total_seconds() // 60)}
        )
    _cancel(session, booking, reason, "owner", now)
    _touch(
        session,
        booking,
        Kind.BOOKING_CANCELLED,
        "cancelled",
        Channel.MINIPROGRAM,
        now,
        by="owner",
        reason=booking.cancel_reason,
    )
    return booking


def _cancel(session: Session, booking: Booking, reason: str, by: str, now: datetime) -> None:
    if booking.starts_at > now:  # a place given back before the start can be booked again
        _give_back(session, booking)
    booking.status = BookingStatus.CANCELLED
    # Copies (timeline, audit, the owner's notice) take the stored, masked reason.
    seal_into(booking, "cancel_reason", reason.strip()[:255], vault())
    booking.cancelled_by = by
    booking.cancelled_at = now
    booking.version += 1
    booking.updated_at = now
    session.flush()


def checkin_code(secret: str, actor: MemberActor, booking: Booking, now: datetime) -> dict[str, Any]:
    from backend.platform import qr

    if booking.status != BookingStatus.BOOKED:
        raise AppError("booking.invalid_state", 409, errors={"status": booking.status.value})
    token = qr.issue(secret, QR_PURPOSE, booking.id, now)
    return {"token": token, "expires_at": now + timedelta(seconds=qr.DEFAULT_TTL_SECONDS)}


# ---------------------------------------------------------------------------------------------
# Staff side


def staff_query(actor: StaffActor, filters: dict[str, Any], now: datetime | None = None) -> Select:
    now = now or utcnow()
    stmt = select(Booking).where(_store_rule(actor, Booking.store_id))
    if filters.get("store_id"):
        stmt = stmt.where(Booking.store_id == filters["store_id"])
    day = filters.get("day") or local_day(now)
    start = at_local(day, time(0))
    stmt = stmt.where(Booking.starts_at >= start, Booking.starts_at < start + timedelta(days=filters.get("days", 1)))
    if filters.get("status"):
        stmt = stmt.where(Booking.status.in_(filters["status"]))
    if filters.get("mine"):
        stmt = stmt.where(Booking.advisor_id == actor.staff_id)
    if filters.get("plate"):
        stmt = stmt.join(Car, Car.id == Booking.car_id).where(Car.plate.contains(filters["plate"], autoescape=True))
    return stmt


def _staff_locked(session: Session, actor: StaffActor, booking_id: int) -> Booking:
    if not actor.has_role(*STAFF_ROLES):
        raise AppError("auth.forbidden", 403)
    return _lock_booking(session, booking_id, _store_rule(actor, Booking.store_id))


def _transition(
    session: Session,
    actor: StaffActor | SystemActor,
    booking: Booking,
    status: BookingStatus,
    kind: Kind,
    label: str,
    now: datetime,
    **payload: Any,
) -> Booking:
    previous = booking.status
    booking.status = status
    booking.version += 1
    booking.updated_at = now
    session.flush()
    channel = Channel.SYSTEM if isinstance(actor, SystemActor) else Channel.STORE
    by = actor.staff_id if isinstance(actor, StaffActor) else actor.name
    _touch(session, booking, kind, label, channel, now, **{"from": previous.value, "by": by}, **payload)
    return booking


def check_in(
    session: Session, actor: StaffActor, booking_id: int, now: datetime | None = None, nonce: str | None = None
) -> Booking:
    now = now or utcnow()
    booking = _staff_locked(session, actor, booking_id)
    if booking.status in (BookingStatus.ARRIVED, BookingStatus.IN_SERVICE, BookingStatus.COMPLETED):
        raise AppError(
            "booking.already_arrived",
            409,
            errors={"arrived_at": booking.arrived_at.isoformat() if booking.arrived_at else None},
        )
    if booking.status != BookingStatus.BOOKED:
        raise AppError("booking.invalid_state", 409, errors={"status": booking.status.value})
    if local_day(booking.starts_at) != local_day(now):
        raise AppError("booking.not_today", 409, errors={"day": local_day(booking.starts_at).isoformat()})
    booking.arrived_at = now
    booking.checkin_nonce = nonce
    if booking.advisor_id is None and actor.has_role("service_advisor") and lock_active(session, actor.staff_id):
        booking.advisor_id = actor.staff_id
    return _transition(
        session, actor, booking, BookingStatus.ARRIVED, Kind.ARRIVED, "arrived", now, by_qr=nonce is not None
    )


def check_in_by_code(
    session: Session, actor: StaffActor, secret: str, token: str, now: datetime | None = None
) -> Booking:
    from backend.platform import qr

    now = now or utcnow()
    scanned = qr.verify(secret, token, QR_PURPOSE, now)
    return check_in(session, actor, scanned.subject, now, nonce=scanned.nonce[:32])


def assign_bay(
    session: Session, actor: StaffActor, booking_id: int, bay_id: int, now: datetime | None = None
) -> Booking:
    now = now or utcnow()
    booking = _staff_locked(session, actor, booking_id)
    if booking.status not in (BookingStatus.ARRIVED, BookingStatus.IN_SERVICE):
        raise AppError("booking.invalid_state", 409, errors={"status": booking.status.value})
    st = session.get(ServiceType, booking.service_type_id)
    bay = session.get(Bay, bay_id)
    if bay is None or bay.store_id != booking.store_id or not bay.active or st is None or bay.bay_type != st.bay_type:
        raise AppError(
            "booking.bay_invalid", 422, errors={"json": {"bay_id": ["an active bay of the right kind here"]}}
        )
    previous = booking.bay_id
    booking.bay_id = bay.id
    booking.updated_at = now
    session.flush()
    write_audit(session, actor, "booking.bay_assigned", "booking", booking.id, {"from": previous, "to": bay.id})
    return booking


def start(session: Session, actor: StaffActor, booking_id: int, now: datetime | None = None) -> Booking:
    now = now or utcnow()
    booking = _staff_locked(session, actor, booking_id)
    if booking.status != BookingStatus.ARRIVED:
        raise AppError("booking.invalid_state", 409, errors={"status": booking.status.value})
    booking.started_at = now
    return _transition(
        session, actor, booking, BookingStatus.IN_SERVICE, Kind.BOOKING_STARTED, "started", now, bay_id=booking.bay_id
    )


def complete(
    session: Session, actor: StaffActor, booking_id: int, data: dict[str, Any], now: datetime | None = None
) -> Booking:
    now = now or utcnow()
    booking = _staff_locked(session, actor, booking_id)
    if booking.status not in (BookingStatus.ARRIVED, BookingStatus.IN_SERVICE):
        raise AppError("booking.invalid_state", 409, errors={"status": booking.status.value})
    car = session.get(Car, booking.car_id)  # locked by _lock_booking
    assert car is not None
    mileage = data["mileage_km"]
    if car.mileage_km is not None and mileage < car.mileage_km:
        raise AppError("booking.mileage_invalid", 422, errors={"json": {"mileage_km": [f"at least {car.mileage_km}"]}})
    car.mileage_km = mileage
    car.last_service_date = local_day(now)
    booking.mileage_km = mileage
    booking.work_done = list(data["work_done"])
    booking.completed_at = now
    if booking.started_at is None:
        booking.started_at = booking.arrived_at or now
    _transition(
        session,
        actor,
        booking,
        BookingStatus.COMPLETED,
        Kind.SERVICE_COMPLETED,
        "completed",
        now,
        mileage_km=mileage,
        work_done=booking.work_done,
    )
    _campaign_action(session, booking, now)
    return booking


def _campaign_action(session: Session, booking: Booking, now: datetime) -> None:
    try:
        from backend.campaigns.service import on_action
    except ImportError:  # campaigns not installed in this deployment
        return
    on_action(
        session,
        booking.customer_id,
        "booking_completed",
        f"booking:{booking.id}",
        store_id=booking.store_id,
        occurred_at=now,
    )


def mark_no_show(session: Session, actor: StaffActor, booking_id: int, now: datetime | None = None) -> Booking:
    now = now or utcnow()
    booking = _staff_locked(session, actor, booking_id)
    if booking.status != BookingStatus.BOOKED:
        raise AppError("booking.invalid_state", 409, errors={"status": booking.status.value})
    if booking.starts_at > now:
        raise AppError("booking.too_early_for_no_show", 409)
    booking.no_show_at = now
    return _transition(session, actor, booking, BookingStatus.NO_SHOW, Kind.NO_SHOW, "no_show", now, automatic=False)


def store_cancel(
    session: Session, actor: StaffActor, booking_id: int, reason: str, now: datetime | None = None
) -> Booking:
    now = now or utcnow()
    booking = _staff_locked(session, actor, booking_id)
    if booking.status != BookingStatus.BOOKED:
        raise AppError("booking.invalid_state", 409, errors={"status": booking.status.value})
    _cancel(session, booking, reason, "store", now)
    _touch(
        session,
        booking,
        Kind.BOOKING_CANCELLED,
        "cancelled",
        Channel.STORE,
        now,
        by="store",
        staff_id=actor.staff_id,
        reason=booking.cancel_reason,
    )
    write_audit(session, actor, "booking.cancelled", "booking", booking.id, {"reason": booking.cancel_reason})
    st = session.get(ServiceType, booking.service_type_id)
    _notify(session, booking, "SUBSCRIBE_TEMPLATE_BOOKING_CANCELLED", "cancelled", st, reason=booking.cancel_reason)
    return booking


UNDO = {
    BookingStatus.ARRIVED: BookingStatus.BOOKED,
    BookingStatus.IN_SERVICE: BookingStatus.ARRIVED,
    BookingStatus.NO_SHOW: BookingStatus.BOOKED,
}


def undo(session: Session, actor: StaffActor, booking_id: int, reason: str, now: datetime | None = None) -> Booking:
    """Step back one status (a check-in, start or no-show marked by mistake), audited."""
    now = now or utcnow()
    booking = _staff_locked(session, actor, booking_id)
    target = UNDO.get(booking.status)
    if target is None:
        raise AppError("booking.cannot_undo", 409, errors={"status": booking.status.value})
    undone = booking.status
    if undone == BookingStatus.ARRIVED:
        booking.arrived_at = None
        booking.checkin_nonce = None
        booking.bay_id = None
    elif undone == BookingStatus.IN_SERVICE:
        booking.started_at = None
    else:
        booking.no_show_at = None
        booking.no_show_waived_at = now  # the sweep must not mark it again
    write_audit(
        session,
        actor,
        "booking.undone",
        "booking",
        booking.id,
        {"undone": undone.value, "to": target.value, "reason": reason},
    )
    return _transition(
        session, actor, booking, target, Kind.BOOKING_UNDONE, "undone", now, undone=undone.value, reason=reason
    )


# ---------------------------------------------------------------------------------------------
# Jobs: automatic no-shows and reminders


def auto_no_shows(session: Session, now: datetime | None = None, limit: int = 500) -> int:
    """Bookings never checked in by their start + grace become no-shows, each once: the status
    guard under the booking lock makes two sweeps at once harmless. A no-show staff undid is
    waived and never marked again."""
    now = now or utcnow()
    pol = policy()
    ids = session.scalars(
        select(Booking.id)
        .where(
            Booking.status == BookingStatus.BOOKED,
            Booking.starts_at <= now - pol.no_show_grace,
            Booking.no_show_waived_at.is_(None),
        )
        .order_by(Booking.id)
        .limit(limit)
    ).all()
    system = SystemActor("booking.no_show")
    done = 0
    for booking_id in ids:
        booking = _lock_booking(session, booking_id)
        if (
            booking.status != BookingStatus.BOOKED
            or booking.starts_at > now - pol.no_show_grace
            or booking.no_show_waived_at is not None
        ):
            continue
        booking.no_show_at = now
        _transition(session, system, booking, BookingStatus.NO_SHOW, Kind.NO_SHOW, "no_show", now, automatic=True)
        done += 1
    return done


DAY_BEFORE = timedelta(hours=24)
SOON = timedelta(hours=2)


def send_reminders(session: Session, now: datetime | None = None, limit: int = 500) -> int:
    """Day-before and two-hours-before reminders, each once per booked time: claimed by a
    conditional update of `reminded_*_at` (a reschedule clears them). A booking made less than
    12 hours ahead gets no day-before reminder, one made less than 2 hours ahead none at all."""
    now = now or utcnow()
    sent = 0
    for column, window, label, made_before in (
        (Booking.reminded_day_at, DAY_BEFORE, "day", timedelta(hours=12)),
        (Booking.reminded_soon_at, SOON, "soon", SOON),
    ):
        due = session.scalars(
            select(Booking)
            .where(
                Booking.status == BookingStatus.BOOKED,
                column.is_(None),
                Booking.starts_at > now,
                Booking.starts_at <= now + window,
            )
            .order_by(Booking.id)
            .limit(limit)
        ).all()
        for booking in due:
            if label == "day" and booking.starts_at - now <= SOON:
                continue  # the 2-hour reminder will do
            claimed = session.execute(
                update(Booking)
                .where(Booking.id == booking.id, column.is_(None), Booking.status == BookingStatus.BOOKED)
                .values({column.key: now})
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:
                continue
            if booking.starts_at - booking.scheduled_at < made_before:
                continue  # booked shortly before: the confirmation was reminder enough
            st = session.get(ServiceType, booking.service_type_id)
            _notify(session, booking, "SUBSCRIBE_TEMPLATE_BOOKING_REMINDER", f"remind_{label}", st)
            sent += 1
    return sent


# ---------------------------------------------------------------------------------------------
# Touchpoints and notices


def _touch(
    session: Session, booking: Booking, kind: Kind, label: str, channel: Channel, now: datetime, **payload: Any
) -> None:
    record(
        session,
        customer_id=booking.customer_id,
        kind=kind,
        channel=channel,
        source=SOURCE,
        source_ref=f"booking:{booking.id}:v{booking.version}:{label}",
        occurred_at=now,
        advisor_id=booking.advisor_id,
        store_id=booking.store_id,
        payload={
            "booking_id": booking.id,
            "car_id": booking.car_id,
            "status": booking.status.value,
            "starts_at": booking.starts_at.isoformat(),
            **payload,
        },
    )


def _notify(
    session: Session,
    booking: Booking,
    template_setting: str,
    label: str,
    st: ServiceType | None,
    reason: str | None = None,
) -> None:
    from backend.notices.service import send_subscribe, thing

    store = session.get(OrgUnit, booking.store_id)
    data = {
        "thing1": {"value": thing(st.name if st else "保养预约")},
        "time2": {"value": booking.starts_at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")},
        "thing3": {"value": thing(store.name if store else "门店")},
        "phrase4": {"value": STATUS_LABELS[booking.status]},
    }
    if reason:
        data["thing5"] = {"value": thing(reason)}
    send_subscribe(
        session,
        customer_id=booking.customer_id,
        template_setting=template_setting,
        dedup_key=f"booking:{booking.id}:v{booking.version}:{label}",
        data=data,
        page=f"pages/booking/detail?id={booking.id}",
        store_id=booking.store_id,
        advisor_id=booking.advisor_id,
    )


def history(session: Session, booking_id: int) -> list[Any]:
    from backend.touchpoints.models import Touchpoint

    stmt = select(Touchpoint).where(
        Touchpoint.source == SOURCE, Touchpoint.source_ref.startswith(f"booking:{booking_id}:")
    )
    return list(session.scalars(stmt.order_by(Touchpoint.occurred_at, Touchpoint.id)))
