"""A template's combinable kinds read back from the database: found by schemathesis, as a 500
on every read of the templates list once one template had kinds."""

from __future__ import annotations

from typing import Any

WB = "/api/workbench/v1"


def test_a_template_with_combinable_kinds_reads_back_after_creation(
    client: Any, make_template: Any, staff: Any
) -> None:
    created = make_template(exclusive=False, combinable_kinds=["threshold", "gift"])
    assert created["combinable_kinds"] == ["threshold", "gift"]

    one = client.get(f"{WB}/coupon-templates/{created['id']}", headers=staff.manager.headers)
    listed = client.get(f"{WB}/coupon-templates", headers=staff.manager.headers)

    assert one.status_code == 200, one.get_json()
    assert one.get_json()["combinable_kinds"] == ["threshold", "gift"]
    assert listed.status_code == 200, listed.get_json()
    assert [t["combinable_kinds"] for t in listed.get_json()["items"] if t["id"] == created["id"]] == [
        ["threshold", "gift"]
    ]


def test_the_document_still_lists_the_kinds(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    items = spec["components"]["schemas"]["CouponTemplate"]["properties"]["combinable_kinds"]["items"]
    assert set(items["enum"]) >= {"threshold", "gift"}
