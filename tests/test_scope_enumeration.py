"""Deny by default, scope every query: walks the app's URL map.

1. Every API view must declare a scope decision (`@public`, `@self_only`, `@scoped(...)`).
2. Every view with an id in its path is called with an id from outside the caller's scope and
   must answer 404 — a new endpoint whose id parameter is not listed below fails this test
   until someone decides how to build an out-of-scope object for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from backend.platform.api import SCOPE_ATTR

# /workbench/...: the H5 pages, shells without data (their data comes through the API walked here).
NON_API_PREFIXES = ("/static", "/docs", "/openapi.json", "/docs-assets", "/sandbox", "/workbench/")


def _handlers(app: Any) -> list[tuple[str, str, Any]]:
    out = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(NON_API_PREFIXES) or rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        view_class = getattr(view, "view_class", None)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            handler = getattr(view_class, method.lower()) if view_class else view
            out.append((rule.rule, method, handler))
    return out


def test_every_view_declares_a_scope_decision(app: Any) -> None:
    missing = [f"{m} {r}" for r, m, h in _handlers(app) if not getattr(h, SCOPE_ATTR, None)]
    assert not missing, f"views without @public/@self_only/@scoped: {missing}"


@dataclass
class World:
    mine: dict[str, int]
    foreign: dict[str, int]


@pytest.fixture
def world(tree: Any, make_staff: Any, make_customer: Any, db_session: Any) -> Any:
    """The caller is the manager of store 0; everything 'foreign' lives in another division."""
    from backend.customers.models import Car
    from backend.customers.service import merge_customers
    from backend.platform.actors import SystemActor

    manager = make_staff(tree.stores[0], "store_manager")
    my_adv = make_staff(tree.stores[0], "sales_advisor")
    other_adv = make_staff(tree.stores[3], "sales_advisor")
    mine = make_customer(tree.stores[0], advisor=my_adv)
    foreign = make_customer(tree.stores[3], advisor=other_adv)
    foreign_dup = make_customer(tree.stores[3], advisor=other_adv)
    foreign_member = make_customer(tree.stores[3])
    car = Car(customer_id=foreign_member.id, vin="LFV2A21K7G3000001")
    db_session.add(car)
    db_session.flush()
    ids = {
        "customer_id": foreign.id,
        "org_unit_id": tree.stores[3].id,
        "staff_id": other_adv.id,
        "car_id": car.id,
    }
    from tests.wecom.helpers import foreign_wecom_ids

    ids.update(foreign_wecom_ids(db_session, tree.stores[3]))
    from datetime import timedelta

    from backend.payments.models import PaymentOrder
    from backend.platform.db import utcnow

    foreign_order = PaymentOrder(
        out_trade_no="DLSCOPE0000000000000000001",
        customer_id=foreign.id,
        store_id=tree.stores[3].id,
        business_type="scope_test",
        business_id="1",
        description="scope",
        amount_fen=100,
        openid="o-scope-foreign",
        expires_at=utcnow() + timedelta(minutes=30),
    )
    db_session.add(foreign_order)
    db_session.flush()
    ids["order_id"] = foreign_order.id
    from backend.payments.models import PaymentIssue

    foreign_issue = PaymentIssue(kind="amount_mismatch", dedup_key="scope-test", order_id=foreign_order.id)
    db_session.add(foreign_issue)
    db_session.flush()
    ids["issue_id"] = foreign_issue.id
    from tests.points.helpers import foreign_points_ids

    ids.update(foreign_points_ids(db_session, tree.stores[3], foreign, other_adv))
    from tests.payments.helpers import foreign_package_ids

    ids.update(foreign_package_ids(db_session, tree.stores[3], foreign))
    from tests.leads.helpers import foreign_lead_ids

    ids.update(foreign_lead_ids(db_session, tree.stores[3], foreign, other_adv))
    from tests.campaigns.helpers import foreign_campaign_ids

    ids.update(foreign_campaign_ids(db_session, tree.stores[3]))
    from tests.booking.helpers import foreign_booking_ids

    ids.update(foreign_booking_ids(db_session, tree.stores[3], foreign_member, car))
    from tests.consult.helpers import foreign_consult_ids

    ids.update(foreign_consult_ids(db_session, tree.stores[3], foreign))
    from tests.offers.helpers import foreign_offer_ids

    ids.update(foreign_offer_ids(db_session, tree.stores[3], foreign, other_adv))
    from tests.events.helpers import foreign_event_ids

    ids.update(foreign_event_ids(db_session, tree.stores[3], foreign))
    from backend.wecom.ops_models import WeComHandover

    handover = WeComHandover(
        corp_id="c",
        kind="resigned",
        handover_userid="a",
        takeover_userid="b",
        handover_staff_id=other_adv.id,
        takeover_staff_id=other_adv.id,
        store_id=tree.stores[3].id,
    )
    db_session.add(handover)
    db_session.flush()
    ids["handover_id"] = handover.id
    merge = merge_customers(db_session, SystemActor("test"), foreign_dup.id, foreign.id, "dup")
    db_session.commit()
    ids["merge_id"] = merge.id
    db_session.refresh(manager)
    db_session.refresh(mine)
    return {"manager": manager, "owner": mine, "ids": ids}


def test_ids_from_another_scope_answer_404(
    app: Any, client: Any, world: Any, staff_headers: Any, member_headers: Any
) -> None:
    checked = []
    staff_h, owner_h = staff_headers(world["manager"]), member_headers(world["owner"])
    for rule, method, _handler in _handlers(app):
        params = [p for p in _rule_params(app, rule)]
        if not params:
            continue
        unknown = [p for p in params if p not in world["ids"]]
        assert not unknown, f"{method} {rule}: add an out-of-scope factory for {unknown} in this test"
        url = rule
        for p in params:
            url = url.replace(f"<int:{p}>", str(world["ids"][p]))
        if rule.startswith("/api/workbench/"):
            headers = staff_h
        elif rule.startswith("/api/app/"):
            headers = owner_h
        else:
            raise AssertionError(f"{rule}: unknown API surface")
        resp = client.open(url, method=method, headers=headers, json={} if method in ("POST", "PATCH", "PUT") else None)
        assert resp.status_code == 404, f"{method} {url} → {resp.status_code} {resp.get_json()}"
        assert resp.get_json()["code"].endswith("not_found")
        checked.append(f"{method} {rule}")
    assert len(checked) >= 8, checked


def _rule_params(app: Any, rule_str: str) -> list[str]:
    for rule in app.url_map.iter_rules():
        if rule.rule == rule_str:
            return sorted(rule.arguments)
    return []


def test_in_scope_ids_do_answer(client: Any, world: Any, staff_headers: Any, db_session: Any) -> None:
    headers = staff_headers(world["manager"])
    owner_id = world["owner"].id
    assert client.get(f"/api/workbench/v1/customers/{owner_id}", headers=headers).status_code == 200
    assert client.get(f"/api/workbench/v1/customers/{owner_id}/timeline", headers=headers).status_code == 200


def test_scopes_follow_roles_and_the_tree(
    client: Any, tree: Any, make_staff: Any, make_customer: Any, staff_headers: Any
) -> None:
    adv = make_staff(tree.stores[0], "sales_advisor")
    per_store = {
        s.id: [make_customer(s, advisor=adv if i == 0 and s is tree.stores[0] else None).id for i in range(2)]
        for s in tree.stores
    }
    expectations = {
        "sales_advisor@store0": (adv, {per_store[tree.stores[0].id][0]}),
        "store_manager@store0": (make_staff(tree.stores[0], "store_manager"), set(per_store[tree.stores[0].id])),
        "region_manager@region0": (
            make_staff(tree.regions[0], "region_manager"),
            set(per_store[tree.stores[0].id] + per_store[tree.stores[1].id]),
        ),
        "division_manager@division1": (
            make_staff(tree.divisions[1], "division_manager"),
            set(per_store[tree.stores[2].id] + per_store[tree.stores[3].id]),
        ),
        "marketing@region1": (
            make_staff(tree.regions[1], "marketing"),
            set(per_store[tree.stores[2].id] + per_store[tree.stores[3].id]),
        ),
        "group_admin": (make_staff(tree.group, "group_admin"), {c for ids in per_store.values() for c in ids}),
        "no_role": (make_staff(tree.stores[0]), set()),
    }
    for label, (staff, expected) in expectations.items():
        page = client.get("/api/workbench/v1/customers?page_size=100", headers=staff_headers(staff)).get_json()
        assert {c["id"] for c in page["items"]} == expected, label
