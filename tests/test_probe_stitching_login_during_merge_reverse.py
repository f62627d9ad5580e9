"""Probe: a member who logs in while merged into another customer, and staff then reverse it."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def test_session_opened_while_merged_ends_with_the_reversal(
    app: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    admin = make_staff(tree.group, "group_admin", userid="admin")
    db_session.commit()
    h = staff_headers(admin)
    client = app.test_client()
    a = client.post("/api/app/v1/auth/login", json={"code": sandbox_reset.state.issue_login_code("o-ra")}).get_json()
    b = client.post("/api/app/v1/auth/login", json={"code": sandbox_reset.state.issue_login_code("o-rb")}).get_json()
    merged = client.post(
        "/api/workbench/v1/customer-merges",
        json={"source_id": a["customer_id"], "target_id": b["customer_id"], "reason": "同一人"},
        headers=h,
    )
    assert merged.status_code == 201, merged.get_json()
    during = client.post("/api/app/v1/auth/login", json={"code": sandbox_reset.state.issue_login_code("o-ra")})
    assert during.get_json()["customer_id"] == b["customer_id"]  # one person while merged
    rev = client.post(f"/api/workbench/v1/customer-merges/{merged.get_json()['id']}/reverse", headers=h)
    assert rev.status_code == 200, rev.get_json()
    refreshed = client.post("/api/app/v1/auth/refresh", json={"refresh_token": during.get_json()["refresh_token"]})
    assert refreshed.status_code == 401, refreshed.get_json()  # no longer the survivor's session
    again = client.post("/api/app/v1/auth/login", json={"code": sandbox_reset.state.issue_login_code("o-ra")})
    assert again.get_json()["customer_id"] == a["customer_id"]
    b_before = client.post("/api/app/v1/auth/refresh", json={"refresh_token": b["refresh_token"]})
    assert b_before.status_code == 200  # the survivor's own session from before the merge stays
