"""Probe: a member editing their profile while staff merge them into another customer."""

from __future__ import annotations

from typing import Any

import pytest

from backend.customers.models import Customer
from tests.threads import held_merge

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def test_profile_edited_during_a_merge_lands_on_the_survivor(app: Any, db_session: Any, sandbox_reset: Any) -> None:
    client = app.test_client()
    a = client.post("/api/app/v1/auth/login", json={"code": sandbox_reset.state.issue_login_code("o-pa")}).get_json()
    b = client.post("/api/app/v1/auth/login", json={"code": sandbox_reset.state.issue_login_code("o-pb")}).get_json()
    sid, tid = a["customer_id"], b["customer_id"]
    with held_merge(app, sid, tid):
        resp = client.patch(
            "/api/app/v1/me", json={"name": "王先生"}, headers={"Authorization": f"Bearer {a['access_token']}"}
        )
    assert resp.status_code == 200, resp.get_json()
    db_session.expire_all()
    assert (db_session.get(Customer, tid).name, resp.get_json()["id"]) == ("王先生", tid)
