"""Leads test harness: one store with advisors of every role and a manager, an owner with a
car, and helpers to submit through the owner API."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

APP = "/api/app/v1"
WB = "/api/workbench/v1"
PHOTO = "https://cdn.example.com/u/1/p1.jpg"


@dataclass
class Store:
    unit: Any
    sales: list[Any]
    service: Any
    finance: Any
    manager: Any
    other_store_advisor: Any
    other_store_manager: Any
    headers: Any  # staff -> headers


def ref(obj: Any) -> SimpleNamespace:
    """What the tests need of a row, read now: rows detach when a request ends its session."""
    return SimpleNamespace(id=obj.id, userid=getattr(obj, "wecom_userid", None))


@pytest.fixture
def stores(tree: Any) -> list[SimpleNamespace]:
    return [ref(s) for s in tree.stores]


@pytest.fixture
def make_ref_staff(make_staff: Any) -> Any:
    return lambda unit, *roles, **kw: ref(make_staff(unit, *roles, **kw))


@pytest.fixture
def store(stores: list[SimpleNamespace], make_ref_staff: Any, staff_headers: Any) -> Store:
    s0 = stores[0]
    return Store(
        unit=s0,
        sales=[make_ref_staff(s0, "sales_advisor", userid=f"lead.sales{i}") for i in range(2)],
        service=make_ref_staff(s0, "service_advisor", userid="lead.service"),
        finance=make_ref_staff(s0, "insurance_finance", userid="lead.finance"),
        manager=make_ref_staff(s0, "store_manager", userid="lead.manager"),
        other_store_advisor=make_ref_staff(stores[3], "sales_advisor", userid="lead.far.sales"),
        other_store_manager=make_ref_staff(stores[3], "store_manager", userid="lead.far.manager"),
        headers=staff_headers,
    )


@dataclass
class Owner:
    customer_id: int
    car_id: int
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        """Issued now (under frozen time too), so a test may move the clock freely."""
        from backend.platform.tokens import issue_access_token

        return {"Authorization": f"Bearer {issue_access_token(self.secret, 'owner', self.customer_id, 900)}"}


@pytest.fixture
def make_owner(make_customer: Any, app: Any, db_session: Any) -> Any:
    from backend.customers.models import Car

    counter = iter(range(1, 10_000))

    def build(store_unit: Any, **kwargs: Any) -> Owner:
        n = next(counter)
        customer = make_customer(store_unit, name=kwargs.pop("name", f"车主{n}"), **kwargs)
        car = Car(customer_id=customer.id, vin=f"LFV2A21K7G{n:07d}", plate=f"沪A{n:05d}", brand="大众")
        db_session.add(car)
        db_session.commit()
        return Owner(customer.id, car.id, app.config["SECRET_KEY"])

    return build


@pytest.fixture
def owner(make_owner: Any, store: Store) -> Owner:
    return make_owner(store.unit, openid="o-lead-owner-1")


def accident_body(car_id: int, **overrides: Any) -> dict[str, Any]:
    body = {
        "type": "accident",
        "car_id": car_id,
        "location": {"address": "上海市浦东新区世纪大道100号", "latitude": 31.2397, "longitude": 121.4998},
        "photos": [PHOTO, "https://cdn.example.com/u/1/p2.jpg"],
        "injuries": False,
        "drivable": False,
        "tow_requested": True,
        "repair_booking_requested": True,
        "preferred_time": "2026-12-03T09:00:00+08:00",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def submit(client: Any, owner: Owner, body: dict[str, Any], key: str | None = None) -> Any:
    headers = dict(owner.headers)
    if key:
        headers["Idempotency-Key"] = key
    return client.post(f"{APP}/leads", json=body, headers=headers)


def make_listing(db_session: Any, store_unit: Any, status: str = "on_sale", **kw: Any) -> Any:
    from backend.leads.models import Listing, ListingCondition, ListingStatus

    listing = Listing(
        store_id=store_unit.id,
        condition=ListingCondition(kw.pop("condition", "used")),
        title=kw.pop("title", "2021款 大众 帕萨特 330TSI"),
        brand="大众",
        series="帕萨特",
        mileage_km=kw.pop("mileage_km", 42000),
        price_fen=kw.pop("price_fen", 15_800_000),
        photos=[PHOTO],
        status=ListingStatus(status),
    )
    db_session.add(listing)
    db_session.commit()
    return ref(listing)
