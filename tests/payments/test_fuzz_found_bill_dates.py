"""A reconciliation for a day at the calendar's edge: found by schemathesis as a 500
(OverflowError taking 0001-01-01's China-time bounds in UTC), after the bill was fetched."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select


@pytest.mark.parametrize("day", ["0001-01-01", "1999-12-31"])
def test_a_reconciliation_for_a_day_before_any_bill_is_refused_before_asking_wechat_pay(
    client: Any, tree: Any, make_staff: Any, staff_headers: Any, sandbox_reset: Any, db_session: Any, day: str
) -> None:
    from backend.payments.models import PaymentReconciliation

    admin = staff_headers(make_staff(tree.group, "group_admin"))

    response = client.post("/api/workbench/v1/payments/reconciliations", json={"bill_date": day}, headers=admin)

    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    assert body["code"] == "request.invalid"
    assert "bill_date" in body["errors"]["json"]
    assert sandbox_reset.hits("/v3/bill") == 0
    assert db_session.scalar(select(func.count()).select_from(PaymentReconciliation)) == 0


def test_the_reconciliation_list_refuses_such_a_day_too(
    client: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    admin = staff_headers(make_staff(tree.group, "group_admin"))
    response = client.get("/api/workbench/v1/payments/reconciliations?bill_date=0001-01-01", headers=admin)
    assert response.status_code == 422
    assert "bill_date" in response.get_json()["errors"]["query"]
