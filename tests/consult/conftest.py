"""Fixtures of the consultation tests: a store with advisors of each role, a manager, owners
(one with assigned advisors and a car), and helpers driving both APIs over HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

APP = "/api/app/v1/consult"
WB = "/api/workbench/v1/consult"
REPLIED = "TPL_CONSULT_REPLIED"


@dataclass
class Person:
    id: int
    headers: dict[str, str]

    @property
    def obj(self) -> Any:
        """A stand-in with the id only (the ORM object goes stale across requests)."""
        return SimpleNamespace(id=self.id)


@dataclass
class World:
    store: Any
    other_store: Any
    sales: Person
    sales2: Person
    service: Person
    insurance: Person
    manager: Person
    foreign_advisor: Person
    owner: Person  # has a sales and a service advisor, and a car
    walk_in: Person  # no advisors: everything goes to the queue
    stranger: Person  # another store's owner
    car_id: int


@pytest.fixture
def world(
    app: Any,
    db_session: Any,
    tree: Any,
    make_staff: Any,
    make_customer: Any,
    staff_headers: Any,
    member_headers: Any,
    sandbox_reset: Any,
    monkeypatch: Any,
) -> World:
    from backend.customers.models import Car, CustomerAdvisor

    monkeypatch.setitem(app.config, "SUBSCRIBE_TEMPLATE_CONSULT_REPLIED", REPLIED)
    store, other = tree.stores[0], tree.stores[3]

    def staff(unit: Any, role: str, userid: str, name: str) -> Person:
        s = make_staff(unit, role, userid=userid, name=name)
        return Person(s.id, staff_headers(s))

    sales = staff(store, "sales_advisor", "adv.sales", "王销售")
    sales2 = staff(store, "sales_advisor", "adv.sales2", "李销售")
    service = staff(store, "service_advisor", "adv.service", "赵服务")
    insurance = staff(store, "insurance_finance", "adv.ins", "钱金融")
    manager = staff(store, "store_manager", "mgr.store", "孙店长")
    foreign = staff(other, "sales_advisor", "adv.foreign", "周顾问")
    owner = make_customer(store, advisor=sales.obj, openid="o-consult-owner", name="陈先生")
    db_session.add(CustomerAdvisor(customer_id=owner.id, staff_id=service.id, role="service_advisor"))
    car = Car(customer_id=owner.id, vin="LFV2A21K7G3000009", plate="沪A12345", series="帕萨特")
    db_session.add(car)
    db_session.commit()
    walk_in = make_customer(store, openid="o-consult-walkin", name="刘女士")
    stranger = make_customer(other, advisor=foreign.obj, openid="o-consult-stranger")
    return World(
        store=SimpleNamespace(id=store.id),
        other_store=SimpleNamespace(id=other.id),
        sales=sales,
        sales2=sales2,
        service=service,
        insurance=insurance,
        manager=manager,
        foreign_advisor=foreign,
        owner=Person(owner.id, member_headers(owner)),
        walk_in=Person(walk_in.id, member_headers(walk_in)),
        stranger=Person(stranger.id, member_headers(stranger)),
        car_id=car.id,
    )


def open_conv(client: Any, who: Person, topic: str = "service", text: str | None = "保养多少钱？", **extra: Any) -> Any:
    body: dict[str, Any] = {"topic": topic, **extra}
    if text is not None:
        body["message"] = {"kind": "text", "text": text}
    resp = client.post(f"{APP}/conversations", json=body, headers=who.headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def owner_says(client: Any, who: Person, conv_id: int, text: str = "在吗？", **extra: Any) -> Any:
    return client.post(
        f"{APP}/conversations/{conv_id}/messages", json={"kind": "text", "text": text, **extra}, headers=who.headers
    )


def staff_says(client: Any, who: Person, conv_id: int, text: str = "您好，在的。", **extra: Any) -> Any:
    return client.post(
        f"{WB}/conversations/{conv_id}/messages", json={"kind": "text", "text": text, **extra}, headers=who.headers
    )


def inbox(client: Any, who: Person, box: str) -> list[dict[str, Any]]:
    resp = client.get(f"{WB}/inbox", query_string={"box": box}, headers=who.headers)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["items"]
