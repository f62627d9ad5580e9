"""Owner profile and cars: validation, ownership, idempotent create."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.customers.models import Car
from backend.customers.vin import vin_problem

GOOD_VIN = "LFV2A21K7G3000001"


@pytest.mark.parametrize(
    ("vin", "ok"),
    [
        (GOOD_VIN, True),
        ("LFV2A21K8G3000001", False),  # wrong check digit for a Chinese VIN
        ("WVWZZZ1KZ6W000001", True),  # European: position 9 is not a check digit
        ("1M8GDM9AXKP042788", True),  # the classic North American example
        ("LFV2A21K7G300000", False),  # 16 chars
        ("LFV2A21K7G300000I", False),  # I is not allowed
    ],
)
def test_vin_rules(vin: str, ok: bool) -> None:
    assert (vin_problem(vin) is None) is ok


def test_car_crud(client: Any, make_customer: Any, member_headers: Any) -> None:
    h = member_headers(make_customer())
    created = client.post(
        "/api/app/v1/me/cars",
        json={
            "vin": GOOD_VIN.lower(),
            "plate": "粤B12345",
            "brand": "大众",
            "mileage_km": 12000,
            "purchase_date": "2024-05-01",
        },
        headers=h,
    )
    assert created.status_code == 201, created.get_json()
    car = created.get_json()
    assert car["vin"] == GOOD_VIN
    patched = client.patch(f"/api/app/v1/me/cars/{car['id']}", json={"mileage_km": 15000}, headers=h)
    assert patched.get_json()["mileage_km"] == 15000
    assert [c["id"] for c in client.get("/api/app/v1/me/cars", headers=h).get_json()] == [car["id"]]
    assert client.delete(f"/api/app/v1/me/cars/{car['id']}", headers=h).status_code == 204
    assert client.get("/api/app/v1/me/cars", headers=h).get_json() == []
    feed = client.get("/api/app/v1/me/activity", headers=h).get_json()["items"]
    assert [i["kind"] for i in feed] == ["car_removed", "car_updated", "car_bound"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"vin": "LFV2A21K8G3000001"}, "vin"),
        ({"vin": "SHORT"}, "vin"),
        ({"vin": GOOD_VIN, "mileage_km": -5}, "mileage_km"),
        ({"vin": GOOD_VIN, "purchase_date": "yesterday"}, "purchase_date"),
        ({"plate": "粤B1"}, "vin"),
    ],
)
def test_bad_car_input_is_422_with_the_field(
    client: Any, make_customer: Any, member_headers: Any, body: dict, field: str, db_session: Any
) -> None:
    resp = client.post("/api/app/v1/me/cars", json=body, headers=member_headers(make_customer()))
    assert resp.status_code == 422
    assert field in resp.get_json()["errors"]["json"]
    assert db_session.scalar(select(func.count()).select_from(Car)) == 0


def test_profile_update_validates(client: Any, make_customer: Any, member_headers: Any) -> None:
    h = member_headers(make_customer())
    ok = client.patch("/api/app/v1/me", json={"name": "王小明", "gender": "male", "birthday": "1990-02-03"}, headers=h)
    assert ok.status_code == 200 and ok.get_json()["name"] == "王小明"
    bad = client.patch("/api/app/v1/me", json={"gender": "robot"}, headers=h)
    assert bad.status_code == 422 and "gender" in bad.get_json()["errors"]["json"]


def test_a_vin_belongs_to_one_customer(client: Any, make_customer: Any, member_headers: Any) -> None:
    a, b = make_customer(), make_customer()
    assert client.post("/api/app/v1/me/cars", json={"vin": GOOD_VIN}, headers=member_headers(a)).status_code == 201
    taken = client.post("/api/app/v1/me/cars", json={"vin": GOOD_VIN}, headers=member_headers(b))
    assert taken.status_code == 409 and taken.get_json()["code"] == "car.vin_taken"


def test_another_owners_car_is_404(client: Any, make_customer: Any, member_headers: Any) -> None:
    a, b = make_customer(), make_customer()
    car = client.post("/api/app/v1/me/cars", json={"vin": GOOD_VIN}, headers=member_headers(a)).get_json()
    for method in ("get", "patch", "delete"):
        resp = getattr(client, method)(
            f"/api/app/v1/me/cars/{car['id']}", json={} if method == "patch" else None, headers=member_headers(b)
        )
        assert resp.status_code == 404 and resp.get_json()["code"] == "car.not_found"


def test_idempotency_key_replays_and_refuses_a_different_body(
    client: Any, make_customer: Any, member_headers: Any, db_session: Any
) -> None:
    h = {**member_headers(make_customer()), "Idempotency-Key": "add-car-1"}
    first = client.post("/api/app/v1/me/cars", json={"vin": GOOD_VIN}, headers=h)
    replay = client.post("/api/app/v1/me/cars", json={"vin": GOOD_VIN}, headers=h)
    assert first.status_code == replay.status_code == 201
    assert first.get_json() == replay.get_json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert db_session.scalar(select(func.count()).select_from(Car)) == 1
    other = client.post("/api/app/v1/me/cars", json={"vin": "WVWZZZ1KZ6W000001"}, headers=h)
    assert other.status_code == 422 and other.get_json()["code"] == "request.idempotency_key_reused"


def test_a_car_with_a_consultation_is_not_removed_and_the_owner_is_told_why(
    client: Any, make_customer: Any, member_headers: Any, tree: Any, db_session: Any
) -> None:
    # It answered 409 request.conflict ("refresh and retry", which never helps) from the foreign
    # key of the row still pointing at the car; found by schemathesis on DELETE /me/cars/{id}.
    from backend.consult.models import Conversation, ConversationStatus, Topic
    from backend.touchpoints.models import Touchpoint

    customer = make_customer(store=tree.stores[0])
    h = member_headers(customer)
    car_id = client.post("/api/app/v1/me/cars", json={"vin": GOOD_VIN}, headers=h).get_json()["id"]
    db_session.add(
        Conversation(
            customer_id=customer.id,
            store_id=tree.stores[0].id,
            topic=Topic.SERVICE,
            car_id=car_id,
            status=ConversationStatus.OPEN,
        )
    )
    db_session.commit()
    touchpoints = db_session.scalar(select(func.count()).select_from(Touchpoint))

    response = client.delete(f"/api/app/v1/me/cars/{car_id}", headers=h)

    assert response.status_code == 409
    body = response.get_json()
    assert body["code"] == "car.in_use"
    assert body["message"] == "该车辆已有预约、线索或咨询记录，不能删除"
    db_session.expire_all()
    assert db_session.get(Car, car_id) is not None
    assert db_session.scalar(select(func.count()).select_from(Touchpoint)) == touchpoints  # no car_removed
    assert client.get(f"/api/app/v1/me/cars/{car_id}", headers=h).status_code == 200
