"""Coupons test harness: staff of store 0 (manager, advisor), of store 3 and a marketing member
of the group; an owner of store 0; a helper to create a template through the workbench."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from backend.platform.db import utcnow

APP = "/api/app/v1"
WB = "/api/workbench/v1"


@pytest.fixture
def units(tree: Any) -> SimpleNamespace:
    """The tree's ids, read now: rows detach when a request ends its session."""
    ref = lambda unit: SimpleNamespace(id=unit.id)  # noqa: E731
    return SimpleNamespace(stores=[ref(s) for s in tree.stores], regions=[ref(r) for r in tree.regions])


@pytest.fixture
def staff(tree: Any, make_staff: Any, staff_headers: Any) -> SimpleNamespace:
    def person(unit: Any, role: str) -> SimpleNamespace:
        row = make_staff(unit, role)
        return SimpleNamespace(id=row.id, headers=staff_headers(row))

    return SimpleNamespace(
        manager=person(tree.stores[0], "store_manager"),
        advisor=person(tree.stores[0], "service_advisor"),
        other_store=person(tree.stores[3], "service_advisor"),
        other_manager=person(tree.stores[3], "store_manager"),
        admin=person(tree.group, "group_admin"),
        region=person(tree.regions[0], "region_manager"),
    )


@pytest.fixture
def owner(units: SimpleNamespace, make_customer: Any, member_headers: Any) -> SimpleNamespace:
    customer = make_customer(units.stores[0])
    return SimpleNamespace(id=customer.id, headers=member_headers(customer))


def template_body(store_id: int | None, **overrides: Any) -> dict[str, Any]:
    now = utcnow()
    body: dict[str, Any] = {
        "name": "保养满500减100",
        "kind": "threshold",
        "value_fen": 10000,
        "threshold_fen": 50000,
        "store_id": store_id,
        "stock": 10,
        "per_member_limit": 1,
        "claim_starts_at": (now - timedelta(hours=1)).isoformat(),
        "claim_ends_at": (now + timedelta(days=7)).isoformat(),
        "use_days": 30,
    }
    return body | overrides


@pytest.fixture
def make_template(client: Any, staff: SimpleNamespace, units: SimpleNamespace) -> Any:
    def build(store_id: Any = "store0", headers: dict | None = None, **overrides: Any) -> dict[str, Any]:
        store = units.stores[0].id if store_id == "store0" else store_id
        resp = client.post(
            f"{WB}/coupon-templates", json=template_body(store, **overrides), headers=headers or staff.manager.headers
        )
        assert resp.status_code == 201, resp.get_json()
        return resp.get_json()

    return build


def claim(client: Any, headers: dict, template_id: int, key: str | None = None) -> Any:
    extra = {"Idempotency-Key": key} if key else {}
    return client.post(f"{APP}/offers/{template_id}/claim", headers={**headers, **extra})
