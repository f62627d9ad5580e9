"""Vehicles for sale (listings): staff CRUD in their scope, what owners see, and how a sold or
withdrawn listing stops taking enquiries."""

from __future__ import annotations

from typing import Any

from tests.leads.conftest import APP, PHOTO, WB, submit

BODY = {
    "condition": "used",
    "title": "2020款 大众 迈腾 380TSI",
    "brand": "大众",
    "series": "迈腾",
    "year": 2020,
    "mileage_km": 61000,
    "price_fen": 13_500_000,
    "photos": [PHOTO],
    "description": "一手车，4S店保养",
}


def test_staff_manage_listings_and_owners_see_those_for_sale(
    client: Any, store: Any, stores: Any, owner: Any, sandbox_reset: Any
) -> None:
    sales_h, manager_h = store.headers(store.sales[0]), store.headers(store.manager)
    created = client.post(f"{WB}/listings", json=BODY, headers={**sales_h, "Idempotency-Key": "car-1"})
    assert created.status_code == 201, created.get_json()
    listing = created.get_json()
    assert (listing["store_id"], listing["status"], listing["price_fen"]) == (store.unit.id, "on_sale", 13_500_000)
    replay = client.post(f"{WB}/listings", json=BODY, headers={**sales_h, "Idempotency-Key": "car-1"})
    assert replay.get_json()["id"] == listing["id"]
    new_car = client.post(
        f"{WB}/listings",
        json={**BODY, "condition": "new", "title": "ID.4 CROZZ", "mileage_km": 0, "store_id": store.unit.id},
        headers=manager_h,
    ).get_json()
    # A manager cannot list at a store outside their scope; an advisor only at their own store.
    far = client.post(f"{WB}/listings", json={**BODY, "store_id": stores[3].id}, headers=manager_h)
    assert far.status_code == 422 and far.get_json()["code"] == "listing.store_invalid"
    far = client.post(f"{WB}/listings", json={**BODY, "store_id": stores[1].id}, headers=sales_h)
    assert far.status_code == 422 and far.get_json()["code"] == "listing.store_invalid"
    bad = client.post(f"{WB}/listings", json={**BODY, "price_fen": 0, "condition": "old"}, headers=sales_h)
    assert bad.status_code == 422 and set(bad.get_json()["errors"]["json"]) == {"price_fen", "condition"}
    assert client.post(f"{WB}/listings", json=BODY, headers=store.headers(store.service)).status_code == 403

    forsale = client.get(f"{APP}/listings", headers=owner.headers).get_json()["items"]
    assert [i["id"] for i in forsale] == [new_car["id"], listing["id"]]
    used = client.get(f"{APP}/listings", query_string={"condition": "used"}, headers=owner.headers).get_json()
    assert [i["id"] for i in used["items"]] == [listing["id"]]

    url = f"{WB}/listings/{listing['id']}"
    repriced = client.patch(url, json={"price_fen": 12_900_000, "status": "reserved"}, headers=sales_h)
    assert repriced.status_code == 200 and repriced.get_json()["price_fen"] == 12_900_000
    assert submit(client, owner, {"type": "used_car", "listing_id": listing["id"]}).status_code == 201  # reserved: ok
    assert client.patch(url, json={"status": "sold"}, headers=manager_h).get_json()["status"] == "sold"
    assert client.get(f"{APP}/listings/{listing['id']}", headers=owner.headers).status_code == 404
    refused = submit(client, owner, {"type": "loan", "listing_id": listing["id"]})
    assert refused.status_code == 409 and refused.get_json()["code"] == "lead.listing_unavailable"
    withdrawn = client.delete(f"{WB}/listings/{new_car['id']}", headers=manager_h)
    assert withdrawn.status_code == 200 and withdrawn.get_json()["status"] == "withdrawn"
    assert client.get(f"{APP}/listings", headers=owner.headers).get_json()["items"] == []
    # Staff still see every status; filters work; others' stores answer 404.
    everything = client.get(f"{WB}/listings", headers=manager_h).get_json()["items"]
    assert {(i["id"], i["status"]) for i in everything} == {(listing["id"], "sold"), (new_car["id"], "withdrawn")}
    sold = client.get(f"{WB}/listings", query_string={"status": "sold"}, headers=sales_h).get_json()["items"]
    assert [i["id"] for i in sold] == [listing["id"]]
    far_h = store.headers(store.other_store_manager)
    assert client.get(url, headers=far_h).status_code == 404
    assert client.patch(url, json={"price_fen": 1}, headers=far_h).get_json()["code"] == "listing.not_found"
    assert client.delete(url, headers=far_h).status_code == 404
    assert client.get(f"{WB}/listings", headers=far_h).get_json()["items"] == []
    assert client.get(url, headers=sales_h).get_json()["price_fen"] == 12_900_000
