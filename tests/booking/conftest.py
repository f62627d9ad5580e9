"""Booking test harness: a store (brand 大众, open 08:00–18:00 every day, hourly quick and
general blocks 09:00–16:00) with two service advisors and a manager, another store far away,
owners with cars, and helpers driving both APIs over HTTP.

Tests that do not use threads run at a frozen moment, `NOW` (Monday 2026-12-07 08:00 in
Shanghai); slots are generated from its day on. Thread tests build the same store at the real
time (freezegun and lock waits do not mix)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import select

APP = "/api/app/v1"
WB = "/api/workbench/v1"
NOW = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)  # Monday 08:00 in Shanghai
DAYS = 10


@dataclass
class Owner:
    customer_id: int
    car_id: int
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        from backend.platform.tokens import issue_access_token

        return {"Authorization": f"Bearer {issue_access_token(self.secret, 'owner', self.customer_id, 900)}"}


@dataclass
class World:
    store: SimpleNamespace
    far_store: SimpleNamespace
    advisors: list[SimpleNamespace]
    manager: SimpleNamespace
    far_advisor: SimpleNamespace
    owner: Owner
    service: dict[str, int]  # code -> id
    today: date
    staff_headers: Any
    make_owner: Any

    def headers(self, staff: SimpleNamespace) -> dict[str, str]:
        return self.staff_headers(staff)


def build_store(session: Any, store: Any, *, brands: list[str], lat: float, lng: float, capacity: int = 3) -> None:
    from backend.booking.models import CapacityTemplate
    from backend.stores.models import Bay, BayType, StoreHours, StoreProfile

    session.add(
        StoreProfile(
            store_id=store.id, address=f"{store.name}地址", latitude=lat, longitude=lng, phone="021-5555", brands=brands
        )
    )
    for weekday in range(7):
        session.add(StoreHours(store_id=store.id, weekday=weekday, opens=time(8), closes=time(18)))
        for hour in range(9, 17):
            session.add(
                CapacityTemplate(
                    store_id=store.id,
                    weekday=weekday,
                    block_start=time(hour),
                    bay_type=BayType.QUICK,
                    capacity=capacity,
                )
            )
            session.add(
                CapacityTemplate(
                    store_id=store.id, weekday=weekday, block_start=time(hour), bay_type=BayType.GENERAL, capacity=2
                )
            )
    session.add(Bay(store_id=store.id, code="Q1", bay_type=BayType.QUICK))
    session.add(Bay(store_id=store.id, code="G1", bay_type=BayType.GENERAL))
    session.flush()


def generate(app: Any, store_id: int, first: date, days: int = DAYS) -> int:
    from backend.booking.service import generate_store
    from backend.platform.db import commit, db

    with app.app_context():
        session = db.session()
        made = generate_store(session, store_id, first, days)
        commit(session)
        return made


def ref(obj: Any) -> SimpleNamespace:
    return SimpleNamespace(id=obj.id, userid=getattr(obj, "wecom_userid", None), name=getattr(obj, "name", None))


@pytest.fixture
def make_owner(make_customer: Any, app: Any, db_session: Any) -> Any:
    from backend.customers.models import Car

    counter = iter(range(1, 100_000))

    def build(store_unit: Any, brand: str = "大众", **kwargs: Any) -> Owner:
        n = next(counter)
        customer = make_customer(store_unit, name=kwargs.pop("name", f"车主{n}"), **kwargs)
        car = Car(
            customer_id=customer.id,
            vin=f"LFV3A2{n:011d}",
            plate=f"沪B{n:05d}",
            brand=brand,
            mileage_km=10_000,
        )
        db_session.add(car)
        db_session.commit()
        return Owner(customer.id, car.id, app.config["SECRET_KEY"])

    return build


def _world(
    app: Any, db_session: Any, tree: Any, make_staff: Any, staff_headers: Any, make_owner: Any, now: datetime
) -> World:
    from backend.stores.models import ServiceType
    from backend.stores.service import ensure_service_types, local_day

    ensure_service_types(db_session)
    store, far = tree.stores[0], tree.stores[3]
    build_store(db_session, store, brands=["大众"], lat=31.2304, lng=121.4737)
    build_store(db_session, far, brands=["丰田"], lat=39.9042, lng=116.4074)
    db_session.commit()
    advisors = [ref(make_staff(store, "service_advisor", userid=f"bk.service{i}", name=f"服务{i}")) for i in range(2)]
    manager = ref(make_staff(store, "store_manager", userid="bk.manager"))
    far_advisor = ref(make_staff(far, "service_advisor", userid="bk.far"))
    owner = make_owner(store, openid="o-booking-owner")
    services = dict(db_session.execute(select(ServiceType.code, ServiceType.id)).all())
    today = local_day(now)
    generate(app, store.id, today)
    generate(app, far.id, today)
    return World(
        store=SimpleNamespace(id=store.id, name=store.name),
        far_store=SimpleNamespace(id=far.id),
        advisors=advisors,
        manager=manager,
        far_advisor=far_advisor,
        owner=owner,
        service=services,
        today=today,
        staff_headers=staff_headers,
        make_owner=make_owner,
    )


@pytest.fixture
def clock() -> Iterator[Any]:
    with freeze_time(NOW) as frozen:
        yield frozen


@pytest.fixture
def world(
    clock: Any, app: Any, db_session: Any, tree: Any, make_staff: Any, staff_headers: Any, make_owner: Any
) -> World:
    return _world(app, db_session, tree, make_staff, staff_headers, make_owner, NOW)


@pytest.fixture
def live_world(app: Any, db_session: Any, tree: Any, make_staff: Any, staff_headers: Any, make_owner: Any) -> World:
    from backend.platform.db import utcnow

    return _world(app, db_session, tree, make_staff, staff_headers, make_owner, utcnow())


def slot_id(app: Any, store_id: int, day: date, hour: int, bay: str = "quick") -> int:
    from backend.booking.models import Slot
    from backend.platform.db import db
    from backend.stores.service import at_local

    with app.app_context():
        return (
            db.session()
            .scalars(
                select(Slot.id).where(
                    Slot.store_id == store_id, Slot.bay_type == bay, Slot.starts_at == at_local(day, time(hour))
                )
            )
            .one()
        )


def slot_row(app: Any, sid: int) -> tuple[int, int]:
    from backend.booking.models import Slot
    from backend.platform.db import db

    with app.app_context():
        s = db.session()
        slot = s.get(Slot, sid)
        result = (slot.capacity, slot.booked)
        s.rollback()
        return result


def book(client: Any, owner: Owner, sid: int, service_id: int, key: str | None = None, **extra: Any) -> Any:
    headers = dict(owner.headers)
    if key:
        headers["Idempotency-Key"] = key
    body = {"car_id": owner.car_id, "service_type_id": service_id, "slot_id": sid, **extra}
    return client.post(f"{APP}/bookings", json=body, headers=headers)


def in_days(world: World, n: int) -> date:
    return world.today + timedelta(days=n)
