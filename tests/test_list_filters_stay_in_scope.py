"""List and search endpoints (no id in the path) with query parameters naming objects
of another scope. Every GET view without a path id is called by the store-0 manager and by a
store-0 advisor with each filter set to a foreign id; no answer may carry a foreign customer,
store or staff member."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tests.test_scope_enumeration import NON_API_PREFIXES, world  # noqa: F401  (fixture)

FOREIGN_KEYS = {
    "customer_id": "customers",
    "member_id": "customers",
    "target_id": "customers",
    "source_id": "customers",
    "store_id": "stores",
    "home_store_id": "stores",
    "org_unit_id": "stores",
    "owner_unit_id": "stores",
    "advisor_id": "staff",
    "staff_id": "staff",
    "assigned_staff_id": "staff",
    "handover_staff_id": "staff",
    "takeover_staff_id": "staff",
    "owner_staff_id": "staff",
    "created_by_staff_id": "staff",
    "last_contact_advisor_id": "staff",
    "active_customer_id": "customers",
    "venue_store_id": "stores",
    "last_store_visit_store_id": "stores",
}


def _leaks(doc: Any, foreign: dict[str, set[int]], path: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            kind = FOREIGN_KEYS.get(k)
            if kind and isinstance(v, int) and v in foreign[kind]:
                out.append(f"{path}.{k}={v}")
            out += _leaks(v, foreign, f"{path}.{k}")
    elif isinstance(doc, list):
        for i, item in enumerate(doc):
            out += _leaks(item, foreign, f"{path}[{i}]")
    return out


def _list_views(app: Any) -> list[str]:
    out = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(NON_API_PREFIXES) or rule.arguments or "GET" not in rule.methods:
            continue
        if rule.rule.startswith(("/api/workbench/", "/api/app/")):
            out.append(rule.rule)
    return sorted(out)


def test_list_filters_never_reach_another_scope(
    app: Any,
    client: Any,
    world: Any,  # noqa: F811  (the fixture imported above)
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    member_headers: Any,
    db_session: Any,
) -> None:
    from backend.customers.models import Customer
    from backend.org.models import Staff

    mine_store = tree.stores[0].id
    foreign = {
        "stores": {s.id for s in tree.stores[1:]},
        "customers": set(db_session.scalars(select(Customer.id).where(Customer.home_store_id != mine_store))),
        "staff": set(db_session.scalars(select(Staff.id).where(Staff.org_unit_id != mine_store))),
    }
    foreign_customer = world["ids"]["customer_id"]
    values = {
        "store_id": tree.stores[3].id,
        "store_ids": tree.stores[3].id,
        "home_store_id": tree.stores[3].id,
        "org_unit_id": tree.stores[3].id,
        "owner_unit_id": tree.stores[3].id,
        "unit_id": tree.stores[3].id,
        "advisor_id": world["ids"]["staff_id"],
        "staff_id": world["ids"]["staff_id"],
        "customer_id": foreign_customer,
        "member_id": foreign_customer,
        "mine": "false",
        "all": "true",
        "include_children": "true",
    }
    values.update({k: v for k, v in world["ids"].items() if k not in values})
    advisor = make_staff(tree.stores[0], "sales_advisor", "service_advisor")
    callers = {
        "manager": staff_headers(world["manager"]),
        "advisor": staff_headers(advisor),
        "owner": member_headers(world["owner"]),
    }
    problems, answered = [], 0
    for url in _list_views(app):
        who = ["owner"] if url.startswith("/api/app/") else ["manager", "advisor"]
        for caller in who:
            for name, value in [(None, None), *values.items()]:
                query = {} if name is None else {name: value}
                resp = client.get(url, query_string=query, headers=callers[caller])
                if resp.status_code >= 400:
                    if resp.status_code >= 500:
                        problems.append(f"{caller} GET {url} {query} → {resp.status_code}")
                    continue
                answered += 1
                body = resp.get_json(silent=True)
                if body is None:
                    continue
                leaks = _leaks(body, foreign)
                if caller == "owner":
                    leaks = [x for x in leaks if "customer_id" in x or "member_id" in x]
                if leaks:
                    problems.append(f"{caller} GET {url} {query}: {leaks[:3]}")
    assert answered > 20
    assert not problems, "\n".join(problems)
