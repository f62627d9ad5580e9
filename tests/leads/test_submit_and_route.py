"""Owner submission of every lead type through the API, routing to the right advisor and the
WeCom app message the sandbox receives; the bad inputs each answered with their own code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from backend.customers.service import owner_token_claims
from backend.leads.models import Lead
from backend.platform.tokens import issue_access_token
from backend.touchpoints.models import Touchpoint
from tests.leads.conftest import APP, PHOTO, accident_body, make_listing, submit


def _count(db_session: Any, model: Any, *where: Any) -> int:
    db_session.expire_all()
    return db_session.scalar(select(func.count()).select_from(model).where(*where))


def _cards_to(sandbox: Any, userid: str) -> list[dict[str, Any]]:
    return [m["textcard"] for m in sandbox.state.app_messages if m["touser"] == userid and m["msgtype"] == "textcard"]


def test_accident_report_goes_to_a_service_advisor_at_once_with_high_priority(
    client: Any, db_session: Any, store: Any, owner: Any, sandbox_reset: Any
) -> None:
    with freeze_time(datetime(2026, 12, 2, 8, 0, tzinfo=UTC)):
        resp = submit(client, owner, accident_body(owner.car_id), key="accident-1")
    assert resp.status_code == 201, resp.get_json()
    lead = resp.get_json()
    assert (lead["type"], lead["status"], lead["priority"]) == ("accident", "new", "high")
    assert lead["advisor_id"] == store.service.id
    assert lead["tow_requested"] is True and lead["repair_booking_requested"] is True
    assert lead["preferred_time"] == "2026-12-03T01:00:00+00:00"  # stored in UTC
    assert lead["injuries"] is False and lead["drivable"] is False and lead["location"]["address"]
    assert lead["contact_due_at"] == "2026-12-02T08:15:00+00:00"  # accidents: 15 minutes
    # The advisor got the WeCom app message (a text card) within the same request.
    cards = _cards_to(sandbox_reset, "lead.service")
    assert len(cards) == 1
    assert cards[0]["title"] == "【紧急】出险报案"
    assert "请求拖车" in cards[0]["description"] and "请求预约维修" in cards[0]["description"]
    assert cards[0]["url"].split("?msg=")[0].endswith(f"/workbench/leads/{lead['id']}")
    assert "请在 12-02 16:15 前联系" in cards[0]["description"]  # shown in China time
    # A retried tap with the same Idempotency-Key is the same lead, nothing new sent.
    again = submit(client, owner, accident_body(owner.car_id), key="accident-1")
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json()["id"] == lead["id"]
    assert _count(db_session, Lead) == 1 and len(sandbox_reset.state.app_messages) == 1
    kinds = db_session.scalars(
        select(Touchpoint.kind).where(Touchpoint.customer_id == owner.customer_id).order_by(Touchpoint.id)
    ).all()
    assert kinds == ["lead_created", "lead_assigned"]
    mine = client.get(f"{APP}/me/leads", headers=owner.headers).get_json()["items"]
    assert [(m["id"], m["status"]) for m in mine] == [(lead["id"], "new")]
    activity = client.get(f"{APP}/me/activity", headers=owner.headers).get_json()
    assert "lead_created" in {i["kind"] for i in activity["items"]}


@pytest.mark.parametrize(
    ("body", "role"),
    [
        ({"type": "new_car", "brand": "大众", "series": "ID.4", "budget_fen": 20_000_000}, "sales"),
        ({"type": "trade_in", "mileage_km": 56000, "condition": "小刮蹭", "photos": [PHOTO]}, "sales"),
        ({"type": "loan", "amount_fen": 8_000_000, "term_months": 36}, "finance"),
        ({"type": "insurance", "insurance_kind": "renewal", "expires_on": "2027-01-15"}, "finance"),
    ],
)
def test_each_type_is_routed_to_its_role(
    client: Any, store: Any, owner: Any, sandbox_reset: Any, body: dict[str, Any], role: str
) -> None:
    if body["type"] in ("trade_in", "insurance"):
        body = {**body, "car_id": owner.car_id}
    resp = submit(client, owner, body)
    assert resp.status_code == 201, resp.get_json()
    lead = resp.get_json()
    expected = [s.id for s in store.sales] if role == "sales" else [store.finance.id]
    assert lead["advisor_id"] in expected and lead["priority"] == "normal"
    for key in ("budget_fen", "mileage_km", "term_months", "expires_on"):
        if key in body:
            assert lead["details"][key] == body[key]
    assert len(sandbox_reset.state.app_messages) == 1


def test_owners_own_advisor_first_then_round_robin(
    client: Any, db_session: Any, store: Any, make_owner: Any, sandbox_reset: Any
) -> None:
    loyal = make_owner(store.unit, advisor=store.sales[1], role="sales_advisor")
    leads = [submit(client, loyal, {"type": "new_car", "series": f"车型{i}"}).get_json() for i in range(3)]
    assert [lead["advisor_id"] for lead in leads] == [store.sales[1].id] * 3
    others = [make_owner(store.unit) for _ in range(4)]
    spread = [submit(client, o, {"type": "new_car", "series": "ID.4"}).get_json()["advisor_id"] for o in others]
    assert spread == [store.sales[0].id, store.sales[1].id, store.sales[0].id, store.sales[1].id]
    assert _cards_to(sandbox_reset, "lead.sales1")[0]["title"] == "新线索 · 新车意向"


def test_a_store_without_the_role_routes_to_the_manager(
    client: Any, stores: Any, make_ref_staff: Any, make_owner: Any, sandbox_reset: Any
) -> None:
    manager = make_ref_staff(stores[1], "store_manager", userid="lead.s1.manager")
    someone = make_owner(stores[1])
    lead = submit(client, someone, accident_body(someone.car_id)).get_json()
    assert lead["advisor_id"] == manager.id
    assert len(_cards_to(sandbox_reset, "lead.s1.manager")) == 1


def test_listing_interest_goes_to_the_listings_store(
    client: Any, db_session: Any, stores: Any, store: Any, owner: Any, make_ref_staff: Any
) -> None:
    far_sales = make_ref_staff(stores[1], "sales_advisor")
    listing = make_listing(db_session, stores[1])
    resp = submit(client, owner, {"type": "used_car", "listing_id": listing.id, "note": "周末看车"})
    assert resp.status_code == 201, resp.get_json()
    assert (resp.get_json()["store_id"], resp.get_json()["advisor_id"]) == (stores[1].id, far_sales.id)
    shown = client.get(f"{APP}/listings/{listing.id}", headers=owner.headers).get_json()
    assert shown["price_fen"] == 15_800_000 and shown["mileage_km"] == 42000 and shown["photos"] == [PHOTO]


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"photos": []}, 422, "lead.photos_required", "photos"),
        ({"location": {}}, 422, "lead.location_required", "location"),
        ({"location": None}, 422, "lead.location_required", "location"),
        ({"injuries": None}, 422, "lead.field_required", "injuries"),
        ({"drivable": None}, 422, "lead.field_required", "drivable"),
        ({"preferred_time": None}, 422, "lead.field_required", "preferred_time"),
        ({"car_id": None}, 422, "lead.car_required", "car_id"),
        ({"photos": ["http://insecure.example.com/x.jpg"]}, 422, "request.invalid", "photos"),
    ],
)
def test_incomplete_accident_reports_are_refused_with_a_clear_code(
    client: Any,
    db_session: Any,
    store: Any,
    owner: Any,
    sandbox_reset: Any,
    change: dict,
    status: int,
    code: str,
    field: str,
) -> None:
    body = accident_body(owner.car_id)
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    resp = submit(client, owner, body)
    assert resp.status_code == status and resp.get_json()["code"] == code, resp.get_json()
    assert field in resp.get_json()["errors"]["json"]
    assert _count(db_session, Lead) == 0 and sandbox_reset.state.app_messages == []


def test_cars_and_listings_that_cannot_be_used(
    client: Any, db_session: Any, store: Any, owner: Any, make_owner: Any, sandbox_reset: Any
) -> None:
    stranger = make_owner(store.unit)
    not_mine = submit(client, owner, accident_body(stranger.car_id))
    assert not_mine.status_code == 404 and not_mine.get_json()["code"] == "car.not_found"
    trade = submit(client, owner, {"type": "trade_in", "car_id": owner.car_id, "photos": [PHOTO]})
    assert trade.status_code == 422 and trade.get_json()["code"] == "lead.field_required"
    trade = submit(client, owner, {"type": "trade_in", "car_id": owner.car_id, "mileage_km": 1})
    assert trade.get_json()["code"] == "lead.photos_required"
    for status in ("sold", "withdrawn"):
        gone = make_listing(db_session, store.unit, status=status)
        resp = submit(client, owner, {"type": "used_car", "listing_id": gone.id})
        assert resp.status_code == 409 and resp.get_json()["code"] == "lead.listing_unavailable"
        assert resp.get_json()["errors"]["listing_status"] == status
        assert client.get(f"{APP}/listings/{gone.id}", headers=owner.headers).status_code == 404
    missing = submit(client, owner, {"type": "used_car", "listing_id": 999_999})
    assert missing.status_code == 404 and missing.get_json()["code"] == "listing.not_found"
    assert submit(client, owner, {"type": "used_car"}).get_json()["code"] == "lead.listing_required"
    assert submit(client, owner, {"type": "new_car"}).get_json()["code"] == "lead.subject_required"
    assert submit(client, owner, {"type": "insurance", "car_id": owner.car_id}).get_json()["code"] == (
        "lead.field_required"
    )
    assert submit(client, owner, {"type": "boat"}).status_code == 422
    assert submit(client, owner, {"type": "loan", "surprise": 1}).status_code == 422
    assert _count(db_session, Lead) == 0 and sandbox_reset.state.app_messages == []


def test_duplicates_within_the_window_are_refused_and_name_the_first(
    client: Any, db_session: Any, store: Any, owner: Any, sandbox_reset: Any
) -> None:
    start = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    with freeze_time(start) as frozen:
        first = submit(client, owner, accident_body(owner.car_id), key="k1").get_json()
        frozen.tick(timedelta(minutes=5))
        dup = submit(client, owner, accident_body(owner.car_id, note="又提交一次"), key="k2")
        assert dup.status_code == 409 and dup.get_json()["code"] == "lead.duplicate"
        assert dup.get_json()["errors"]["lead_id"] == first["id"]
        # Another type for the same car, or the same type for a listing, is another enquiry.
        other = submit(client, owner, {"type": "insurance", "car_id": owner.car_id, "insurance_kind": "quote"})
        assert other.status_code == 201
        frozen.move_to(start + timedelta(minutes=31))
        later = submit(client, owner, accident_body(owner.car_id), key="k3")
        assert later.status_code == 201 and later.get_json()["id"] != first["id"]
    assert _count(db_session, Lead) == 3


def test_openapi_documents_the_lead_endpoints_with_examples(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    post = spec["paths"]["/api/app/v1/leads"]["post"]
    examples = post["requestBody"]["content"]["application/json"]["examples"]
    assert {"accident", "used_car", "new_car", "trade_in", "loan", "insurance"} <= set(examples)
    assert "Idempotency-Key" in post["description"]
    status = spec["paths"]["/api/workbench/v1/leads/{lead_id}/status"]["post"]
    assert "lost" in status["requestBody"]["content"]["application/json"]["examples"]
    assert "/api/workbench/v1/listings/{listing_id}" in spec["paths"]


def test_a_customer_merge_moves_the_leads_and_its_reversal_moves_them_back(
    app: Any, client: Any, db_session: Any, store: Any, owner: Any, make_owner: Any, sandbox_reset: Any
) -> None:
    from backend.customers.models import CustomerMerge
    from backend.customers.service import merge_customers, reverse_merge
    from backend.org.service import load_staff_actor
    from backend.platform.actors import SystemActor

    lead = submit(client, owner, accident_body(owner.car_id)).get_json()
    survivor = make_owner(store.unit)
    with app.app_context():
        merge = merge_customers(db_session, SystemActor("test"), owner.customer_id, survivor.customer_id, "同一人")
        db_session.commit()
        merge_id = merge.id
    assert [i["id"] for i in client.get(f"{APP}/me/leads", headers=survivor.headers).get_json()["items"]] == [
        lead["id"]
    ]
    with app.app_context():
        actor = load_staff_actor(db_session, store.manager.id)
        reverse_merge(db_session, actor, db_session.get(CustomerMerge, merge_id))
        db_session.commit()
    # The survivor's access tokens from before the reversal end with it (auth.session_revoked);
    # one issued as the app issues them now (login or refresh) sees the lead gone.
    stale = client.get(f"{APP}/me/leads", headers=survivor.headers)
    assert (stale.status_code, stale.get_json()["code"]) == (401, "auth.session_revoked")
    claims = owner_token_claims(db_session, survivor.customer_id)
    now_headers = {
        "Authorization": f"Bearer {issue_access_token(survivor.secret, 'owner', survivor.customer_id, 900, claims)}"
    }
    assert client.get(f"{APP}/me/leads", headers=now_headers).get_json()["items"] == []
    db_session.expire_all()
    assert db_session.get(Lead, lead["id"]).customer_id == owner.customer_id
