"""Query strings a schema-driven fuzzer (schemathesis) found answered 500: bad query values
answer 422 in the one error format, like any other invalid input."""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import fields, validate

from backend.platform.api import OutputSchema
from tests.test_schema_patterns import _schema_classes

PAGED_LISTS = (
    "/api/workbench/v1/bookings",
    "/api/workbench/v1/events",
    "/api/workbench/v1/leads",
    "/api/workbench/v1/payments/orders",
    "/api/workbench/v1/customers",
)


@pytest.fixture
def admin_headers(tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, str]:
    return staff_headers(make_staff(tree.group, "group_admin"))


@pytest.mark.parametrize("path", PAGED_LISTS)
def test_a_page_beyond_what_the_database_can_skip_to_is_refused_with_422(
    client: Any, admin_headers: dict[str, str], tree: Any, path: str
) -> None:
    # (page - 1) * page_size past 2**64 is no LIMIT offset MariaDB can parse: it answered 500.
    store = tree.stores[0].id
    response = client.get(f"{path}?page={10**20}&store_id={store}", headers=admin_headers)
    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    assert body["code"] == "request.invalid"
    assert "page" in body["errors"]["query"]


def test_every_page_number_has_a_ceiling() -> None:
    unbounded = []
    for schema in _schema_classes():
        field = schema._declared_fields.get("page")
        if not isinstance(field, fields.Integer) or issubclass(schema, OutputSchema):
            continue  # an output schema's page is echoed back, not read
        maxima = [v.max for v in field.validators if isinstance(v, validate.Range) and v.max is not None]
        if not maxima or max(maxima) > 100_000:
            unbounded.append(f"{schema.__module__}.{schema.__name__}")
    assert unbounded == []


def test_a_staff_list_filtered_by_an_unknown_role_is_refused_with_422(
    client: Any, admin_headers: dict[str, str]
) -> None:
    # The role went to the query unchecked; SQLAlchemy's Enum refused it while binding: 500.
    for role in ("", "0", "root"):
        response = client.get(f"/api/workbench/v1/staff?role={role}", headers=admin_headers)
        assert response.status_code == 422, (role, response.get_json())
        body = response.get_json()
        assert body["code"] == "request.invalid"
        assert "role" in body["errors"]["query"]


def test_the_staff_list_still_filters_by_a_known_role(
    client: Any, admin_headers: dict[str, str], tree: Any, make_staff: Any
) -> None:
    from backend.org.models import StaffStatus

    # (an enum status, as loaded: the factory's plain "active" stays in the shared identity map)
    advisor = make_staff(tree.stores[0], "sales_advisor", status=StaffStatus.ACTIVE)
    response = client.get("/api/workbench/v1/staff?role=sales_advisor", headers=admin_headers)
    assert response.status_code == 200
    assert [s["id"] for s in response.get_json()] == [advisor.id]
