"""A store named in a body must be a store: found by schemathesis, with real ids, as 409s
request.conflict from a foreign key on creating mall items and packages for no store."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

WB = "/api/workbench/v1"

BODIES = {
    "points/mall/items": {"name": "车载香薰", "kind": "physical", "points_price": 100, "stock": 2},
    "packages": {"name": "基础保养", "service_type": "basic_maintenance", "uses": 3, "price_fen": 89900},
}


@pytest.fixture
def admin_headers(tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, str]:
    return staff_headers(make_staff(tree.group, "group_admin"))


def _count(db_session: Any, path: str) -> int:
    from backend.packages.models import ServicePackage
    from backend.points.models import MallItem

    model = MallItem if path.startswith("points") else ServicePackage
    db_session.expire_all()
    return db_session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("path", sorted(BODIES))
def test_a_group_admin_naming_no_store_or_a_region_as_the_store_gets_422(
    client: Any, admin_headers: dict[str, str], tree: Any, db_session: Any, path: str
) -> None:
    before = _count(db_session, path)
    for store_id in (tree.stores[-1].id + 1000, tree.regions[0].id, tree.group.id):
        response = client.post(f"{WB}/{path}", json={**BODIES[path], "store_id": store_id}, headers=admin_headers)
        assert response.status_code == 422, (store_id, response.get_json())
        body = response.get_json()
        assert body["code"] == "request.invalid"
        assert body["errors"]["json"]["store_id"] == ["not a store"]
    assert _count(db_session, path) == before


@pytest.mark.parametrize("path", sorted(BODIES))
def test_a_group_admin_still_creates_for_a_store_or_group_wide(
    client: Any, admin_headers: dict[str, str], tree: Any, path: str
) -> None:
    for store_id in (tree.stores[0].id, None):
        response = client.post(f"{WB}/{path}", json={**BODIES[path], "store_id": store_id}, headers=admin_headers)
        assert response.status_code == 201, (store_id, response.get_json())
        assert response.get_json()["store_id"] == store_id
