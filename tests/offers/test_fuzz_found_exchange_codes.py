"""An exchange code another template has: found by schemathesis as the generic 409
request.conflict ("refresh and retry") of the unique key, on create and on change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

WB = "/api/workbench/v1"


def test_a_template_cannot_take_an_exchange_code_another_has(
    client: Any, make_template: Any, staff: Any, units: Any, db_session: Any
) -> None:
    from backend.offers.models import CouponTemplate
    from tests.offers.conftest import template_body

    first = make_template(exchange_code="WINTER2026")
    second = make_template()
    templates = db_session.scalar(select(func.count()).select_from(CouponTemplate))

    created = client.post(
        f"{WB}/coupon-templates",
        json=template_body(units.stores[0].id, exchange_code="WINTER2026"),
        headers=staff.manager.headers,
    )
    changed = client.patch(
        f"{WB}/coupon-templates/{second['id']}", json={"exchange_code": "WINTER2026"}, headers=staff.manager.headers
    )

    for response in (created, changed):
        assert response.status_code == 409, response.get_json()
        body = response.get_json()
        assert body["code"] == "coupon.exchange_code_taken"
        assert body["message"] == "该兑换码已被其他优惠券使用"
        assert "exchange_code" in body["errors"]["json"]
    db_session.expire_all()
    assert db_session.scalar(select(func.count()).select_from(CouponTemplate)) == templates
    assert db_session.get(CouponTemplate, second["id"]).exchange_code is None
    assert db_session.get(CouponTemplate, first["id"]).exchange_code == "WINTER2026"
    again = client.patch(
        f"{WB}/coupon-templates/{first['id']}", json={"exchange_code": "WINTER2026"}, headers=staff.manager.headers
    )
    assert again.status_code == 200  # its own code is no clash
