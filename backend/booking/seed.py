"""Demo booking data: every demo store with a profile (address, coordinates, phone, the brand of
its division), weekly hours with a labour cap, a New Year holiday, bays, a capacity template and
slots from a week ago to two weeks ahead; and, for the first demo owners, bookings in every
state — booked (tomorrow, later today), arrived, in service, completed, cancelled by the owner
and by the store, no-show.

Called by `backend.seed.seed_demo` after the customers exist. Safe to run again: a store with a
profile is left alone, slots are found by their unique key, and bookings are made only for
owners who have none. Rows and touchpoints are written directly (the same `record` and
source_refs as the service, places taken by the same conditional update); no message is queued.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.booking.models import Booking, BookingStatus, CapacityTemplate, Slot
from backend.booking.service import SOURCE, _service_advisors, _take_labour, _take_place, generate_store
from backend.customers.models import Car, Customer, CustomerIdentity, IdentityKind
from backend.org.models import OrgUnit
from backend.stores.models import Bay, BayType, ServiceType, StoreDayOverride, StoreHours, StoreProfile
from backend.stores.service import at_local, ensure_service_types, local_day
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import record

# code -> (address, latitude, longitude, phone, brand)
STORES = {
    "S01": ("广州市天河区黄埔大道西668号", 23.1291, 113.3540, "020-3888-1001", "一汽-大众"),
    "S02": ("广州市番禺区迎宾路168号", 22.9900, 113.3530, "020-3888-1002", "一汽-大众"),
    "S03": ("深圳市福田区深南大道6008号", 22.5410, 114.0420, "0755-8888-1003", "一汽-大众"),
    "S04": ("深圳市宝安区新安街道宝安大道5010号", 22.5600, 113.8830, "0755-8888-1004", "一汽-大众"),
    "S05": ("广州市天河区中山大道西1138号", 23.1260, 113.3300, "020-3888-1005", "宝马"),
    "S06": ("深圳市南山区滨海大道3012号", 22.5180, 113.9350, "0755-8888-1006", "宝马"),
}
TEMPLATE = (  # (bay type, block starts, capacity)
    (BayType.QUICK, [time(h) for h in range(9, 17)], 3),
    (BayType.GENERAL, [time(h) for h in range(9, 17)], 2),
    (BayType.BODY_PAINT, [time(9), time(13)], 1),
    (BayType.WASH, [time(h) for h in range(9, 17)], 2),
)
BAYS = (
    ("Q1", BayType.QUICK),
    ("Q2", BayType.QUICK),
    ("G1", BayType.GENERAL),
    ("B1", BayType.BODY_PAINT),
    ("W1", BayType.WASH),
)
# (status, day offset, hour, service code, extra)
PLANS: list[tuple[BookingStatus, int, int, str, dict[str, Any]]] = [
    (BookingStatus.BOOKED, 1, 10, "basic_maintenance", {}),
    (BookingStatus.BOOKED, 0, 15, "tyres", {"note": "顺便检查胎压"}),
    (BookingStatus.ARRIVED, 0, 9, "inspection", {}),
    (BookingStatus.IN_SERVICE, 0, 9, "major_maintenance", {}),
    (
        BookingStatus.COMPLETED,
        -1,
        10,
        "basic_maintenance",
        {"work_done": ["更换机油机滤", "检查刹车片"], "amount_fen": 68_000},
    ),
    (BookingStatus.CANCELLED, 2, 11, "wash", {"by": "owner", "reason": "行程有变"}),
    (BookingStatus.CANCELLED, 3, 14, "repair", {"by": "store", "reason": "配件未到，已电话沟通改期"}),
    (BookingStatus.NO_SHOW, -2, 14, "basic_maintenance", {}),
]
KIND_OF = {
    BookingStatus.ARRIVED: [Kind.ARRIVED],
    BookingStatus.IN_SERVICE: [Kind.ARRIVED, Kind.BOOKING_STARTED],
    BookingStatus.COMPLETED: [Kind.ARRIVED, Kind.BOOKING_STARTED, Kind.SERVICE_COMPLETED],
    BookingStatus.CANCELLED: [Kind.BOOKING_CANCELLED],
    BookingStatus.NO_SHOW: [Kind.NO_SHOW],
}


def _ensure_stores(session: Session, today: date) -> int:
    units = {u.code: u for u in session.scalars(select(OrgUnit).where(OrgUnit.code.in_(sorted(STORES))))}
    made = 0
    for code, (address, lat, lng, phone, brand) in STORES.items():
        unit = units.get(code)
        if unit is None or session.get(StoreProfile, unit.id) is not None:
            continue
        session.add(
            StoreProfile(store_id=unit.id, address=address, latitude=lat, longitude=lng, phone=phone, brands=[brand])
        )
        for weekday in range(7):
            closes = time(17) if weekday == 6 else time(18)
            session.add(
                StoreHours(store_id=unit.id, weekday=weekday, opens=time(8, 30), closes=closes, labour_cap_minutes=4800)
            )
            for bay_type, starts, capacity in TEMPLATE:
                for start in starts:
                    if weekday == 6 and start >= time(16):
                        continue
                    session.add(
                        CapacityTemplate(
                            store_id=unit.id, weekday=weekday, block_start=start, bay_type=bay_type, capacity=capacity
                        )
                    )
        new_year = date(today.year + 1, 1, 1)
        session.add(StoreDayOverride(store_id=unit.id, day=new_year, closed=True, note="元旦"))
        session.add_all([Bay(store_id=unit.id, code=c, bay_type=t) for c, t in BAYS])
        session.flush()
        made += 1
    return made


def seed_booking(session: Session, openids: dict[int, str], demo_store_id: int | None, now: datetime) -> str:
    """`openids` maps demo owner numbers to openids; the demo store's owners get bookings first."""
    ensure_service_types(session)
    today = local_day(now)
    stores = _ensure_stores(session, today)
    slots = 0
    for store_id in session.scalars(select(CapacityTemplate.store_id).distinct()):
        slots += generate_store(session, store_id, today - timedelta(days=7), 22)
    services = {s.code: s for s in session.scalars(select(ServiceType))}
    owners = session.execute(
        select(Customer, Car)
        .join(CustomerIdentity, CustomerIdentity.customer_id == Customer.id)
        .join(Car, Car.customer_id == Customer.id)
        .where(
            CustomerIdentity.kind == IdentityKind.OPENID,
            CustomerIdentity.value.in_([openids[n] for n in sorted(openids)[:40]]),
            Customer.home_store_id.is_not(None),
        )
        .order_by(Customer.id, Car.id)
    ).all()
    seen: set[int] = set()
    candidates = []
    for customer, car in owners:
        if customer.id not in seen:
            seen.add(customer.id)
            candidates.append((customer, car))
    candidates.sort(key=lambda pair: (pair[0].home_store_id != demo_store_id, pair[0].id))
    with_bookings = set(session.scalars(select(Booking.customer_id).where(Booking.customer_id.in_(seen)).distinct()))
    made = 0
    plans = iter(PLANS)
    for customer, car in candidates:
        if customer.id in with_bookings:
            next(plans, None)  # this owner had its plan made by an earlier run
            continue
        plan = next(plans, None)
        if plan is None:
            break
        if _make(session, customer, car, plan, services, now):
            made += 1
    return f"booking: {stores} stores set up, {slots} slots, {made} bookings"


def _make(
    session: Session,
    customer: Customer,
    car: Car,
    plan: tuple[BookingStatus, int, int, str, dict[str, Any]],
    services: dict[str, ServiceType],
    now: datetime,
) -> bool:
    status, offset, hour, code, extra = plan
    st = services[code]
    day = local_day(now) + timedelta(days=offset)
    store_id = customer.home_store_id
    assert store_id is not None
    slot = session.scalars(
        select(Slot).where(
            Slot.store_id == store_id, Slot.bay_type == st.bay_type, Slot.starts_at == at_local(day, time(hour))
        )
    ).one_or_none()
    if slot is None:
        return False
    advisors = _service_advisors(session, store_id)
    starts = slot.starts_at
    created = min(now, starts) - timedelta(days=2)
    booking = Booking(
        customer_id=customer.id,
        car_id=car.id,
        store_id=store_id,
        service_type_id=st.id,
        slot_id=slot.id,
        starts_at=starts,
        ends_at=starts + timedelta(minutes=st.duration_minutes),
        labour_minutes=st.labour_minutes,
        status=status,
        advisor_id=advisors[car.id % len(advisors)].id if advisors else None,
        note=extra.get("note"),
        scheduled_at=created,
        created_at=created,
        updated_at=now,
    )
    if status != BookingStatus.CANCELLED:
        _take_place(session, slot.id)
        _take_labour(session, store_id, day, st.labour_minutes)
    if status in (BookingStatus.ARRIVED, BookingStatus.IN_SERVICE, BookingStatus.COMPLETED):
        booking.arrived_at = starts - timedelta(minutes=10)
    if status in (BookingStatus.IN_SERVICE, BookingStatus.COMPLETED):
        booking.started_at = starts + timedelta(minutes=5)
    if status == BookingStatus.COMPLETED:
        booking.completed_at = booking.ends_at
        booking.mileage_km = (car.mileage_km or 0) + 120
        booking.work_done = extra["work_done"]
        car.mileage_km = booking.mileage_km
        car.last_service_date = day
    if status == BookingStatus.CANCELLED:
        booking.cancelled_by = extra["by"]
        booking.cancel_reason = extra["reason"]
        booking.cancelled_at = created + timedelta(hours=3)
    if status == BookingStatus.NO_SHOW:
        booking.no_show_at = starts + timedelta(minutes=30)
    session.add(booking)
    session.flush()
    moments = {
        Kind.ARRIVED: booking.arrived_at,
        Kind.BOOKING_STARTED: booking.started_at,
        Kind.SERVICE_COMPLETED: booking.completed_at,
        Kind.BOOKING_CANCELLED: booking.cancelled_at,
        Kind.NO_SHOW: booking.no_show_at,
    }
    labels = {
        Kind.ARRIVED: "arrived",
        Kind.BOOKING_STARTED: "started",
        Kind.SERVICE_COMPLETED: "completed",
        Kind.BOOKING_CANCELLED: "cancelled",
        Kind.NO_SHOW: "no_show",
    }
    steps: list[tuple[Kind, str, datetime]] = [(Kind.BOOKING_CREATED, "created", created)]
    steps += [(k, labels[k], moments[k]) for k in KIND_OF.get(status, [])]  # type: ignore[misc]
    for version, (kind, label, moment) in enumerate(steps, start=1):
        channel = Channel.MINIPROGRAM if kind == Kind.BOOKING_CREATED or extra.get("by") == "owner" else Channel.STORE
        if kind == Kind.NO_SHOW:
            channel = Channel.SYSTEM
        record(
            session,
            customer_id=customer.id,
            kind=kind,
            channel=channel,
            source=SOURCE,
            source_ref=f"booking:{booking.id}:v{version}:{label}",
            occurred_at=moment,
            advisor_id=booking.advisor_id,
            store_id=store_id,
            payload={
                "booking_id": booking.id,
                "car_id": car.id,
                "service": code,
                "seeded": True,
                **({"amount_fen": extra["amount_fen"]} if kind == Kind.SERVICE_COMPLETED else {}),
            },
        )
    booking.version = len(steps)
    session.flush()
    if status == BookingStatus.COMPLETED:
        # The bill was paid at the counter: its points, as the payments listener would grant them.
        from backend.points import service as points

        ref = f"booking:{booking.id}:v{len(steps)}:completed"
        points.earn(
            session,
            customer.id,
            extra["amount_fen"] // 100,
            key=f"seed:earn:{ref}",
            reason_code="order_paid",
            operator="system:seed",
            ref_type="touchpoint",
            ref_id=ref,
            now=booking.ends_at + timedelta(hours=1),
        )
    return True
