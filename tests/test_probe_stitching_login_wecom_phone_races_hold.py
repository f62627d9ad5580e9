"""Probe: identity stitching races on real MariaDB with real threads."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import Customer, CustomerIdentity
from backend.platform.db import db
from tests.threads import count_committed, run_threads

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def _wecom_add(app: Any, ext: str, unionid: str) -> int:
    from backend.wecom.service import ensure_customer

    with app.app_context():
        s = db.session()
        customer = ensure_customer(s, ext, {"external_contact": {"unionid": unionid, "name": "微信昵称"}})
        s.commit()
        return customer.id


@pytest.mark.parametrize("round_", range(6))
def test_first_login_racing_wecom_add_of_same_unionid(app: Any, sandbox_reset: Any, round_: int) -> None:
    code = sandbox_reset.state.issue_login_code(f"o-r{round_}", f"u-r{round_}")
    client = app.test_client()

    def go(i: int) -> Any:
        if i == 0:
            return client.post("/api/app/v1/auth/login", json={"code": code})
        return _wecom_add(app, f"wm-r{round_}", f"u-r{round_}")

    login, added = run_threads(2, go)
    assert not isinstance(added, Exception), added
    assert login.status_code == 200, login.get_json()
    assert count_committed(app, Customer, Customer.merged_into_id.is_(None)) == 1
    with app.app_context():
        owners = db.session().execute(select(CustomerIdentity.kind, CustomerIdentity.customer_id)).all()
        db.session.remove()
    assert len(owners) == 3, owners
    assert {c for _, c in owners} == {login.get_json()["customer_id"]}, owners


def test_two_members_bind_the_same_phone_at_once(app: Any, sandbox_reset: Any) -> None:
    client = app.test_client()
    heads = []
    for i in range(2):
        body = client.post(
            "/api/app/v1/auth/login", json={"code": sandbox_reset.state.issue_login_code(f"o-ph{i}")}
        ).get_json()
        heads.append({"Authorization": f"Bearer {body['access_token']}"})
    codes = [sandbox_reset.state.issue_phone_code("13911112222") for _ in range(2)]
    results = run_threads(2, lambda i: client.post("/api/app/v1/me/phone", json={"code": codes[i]}, headers=heads[i]))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 409], [r.get_json() for r in results]
    assert count_committed(app, Customer, Customer.phone_encrypted.is_not(None)) == 1


@pytest.mark.parametrize("round_", range(4))
def test_returning_member_login_with_unionid_racing_wecom_add_of_it(app: Any, sandbox_reset: Any, round_: int) -> None:
    """The member first logged in without a unionid; their next login carries it while WeCom
    brings the same person (new external_userid, same unionid)."""
    client = app.test_client()
    first = client.post(
        "/api/app/v1/auth/login", json={"code": sandbox_reset.state.issue_login_code(f"o-m{round_}")}
    ).get_json()
    code = sandbox_reset.state.issue_login_code(f"o-m{round_}", f"u-m{round_}")

    def go(i: int) -> Any:
        if i == 0:
            return client.post("/api/app/v1/auth/login", json={"code": code})
        return _wecom_add(app, f"wm-m{round_}", f"u-m{round_}")

    login, added = run_threads(2, go)
    assert not isinstance(added, Exception), added
    assert login.status_code == 200, login.get_json()
    assert login.get_json()["customer_id"] == first["customer_id"]
    assert count_committed(app, Customer, Customer.merged_into_id.is_(None)) == 1
    with app.app_context():
        owners = set(db.session().scalars(select(CustomerIdentity.customer_id)))
        db.session.remove()
    assert owners == {first["customer_id"]}
