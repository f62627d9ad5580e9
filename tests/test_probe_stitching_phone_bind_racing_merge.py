"""Probe: a member binding their phone while staff merge them into another customer."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import Customer, CustomerIdentity, IdentityKind
from tests.threads import held_merge

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def test_phone_bound_during_a_merge_of_the_member_lands_on_the_survivor(
    app: Any, db_session: Any, sandbox_reset: Any
) -> None:
    client = app.test_client()
    a = client.post("/api/app/v1/auth/login", json={"code": sandbox_reset.state.issue_login_code("o-a")}).get_json()
    b = client.post("/api/app/v1/auth/login", json={"code": sandbox_reset.state.issue_login_code("o-b")}).get_json()
    sid, tid = a["customer_id"], b["customer_id"]
    code = sandbox_reset.state.issue_phone_code("13922223333")
    with held_merge(app, sid, tid):
        resp = client.post(
            "/api/app/v1/me/phone", json={"code": code}, headers={"Authorization": f"Bearer {a['access_token']}"}
        )
    assert resp.status_code == 200, resp.get_json()
    db_session.expire_all()
    phones = (
        db_session.execute(select(CustomerIdentity.customer_id).where(CustomerIdentity.kind == IdentityKind.PHONE))
        .scalars()
        .all()
    )
    assert phones == [tid]
    assert db_session.get(Customer, tid).phone_encrypted is not None
    assert db_session.get(Customer, sid).phone_encrypted is None
