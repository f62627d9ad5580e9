"""Probe: WeCom contact (external_userid + unionid), advisor-typed phone, and mini-program member
(openid + unionid, then the phone bound) in every order: one customer holding everything."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import Customer, CustomerIdentity
from backend.platform.db import db
from tests.threads import count_committed

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]

PHONE = "13933334444"


@pytest.mark.parametrize("order", list(itertools.permutations(["wecom", "walk_in", "login"])))
def test_three_arrivals_in_any_order_end_as_one_customer(app: Any, sandbox_reset: Any, order: tuple[str, ...]) -> None:
    from backend.customers.service import set_phone
    from backend.wecom.service import ensure_customer

    client = app.test_client()
    member: dict[str, Any] = {}
    for step in order:
        if step == "login":
            resp = client.post(
                "/api/app/v1/auth/login", json={"code": sandbox_reset.state.issue_login_code("o-3", "u-3")}
            )
            assert resp.status_code == 200, resp.get_json()
            member = resp.get_json()
            continue
        with app.app_context():
            s = db.session()
            if step == "wecom":
                ensure_customer(s, "wm-3", {"external_contact": {"unionid": "u-3", "name": "昵称"}})
            else:
                walk_in = Customer(name="到店")
                s.add(walk_in)
                s.flush()
                set_phone(s, walk_in, PHONE, app.extensions["dealerloop.phone_vault"])
            s.commit()
            db.session.remove()
    bound = client.post(
        "/api/app/v1/me/phone",
        json={"code": sandbox_reset.state.issue_phone_code(PHONE)},
        headers={"Authorization": f"Bearer {member['access_token']}"},
    )
    assert bound.status_code == 200, bound.get_json()
    assert count_committed(app, Customer, Customer.merged_into_id.is_(None)) == 1
    with app.app_context():
        s = db.session()
        live = s.scalars(select(Customer.id).where(Customer.merged_into_id.is_(None))).one()
        kinds = {str(k): c for k, c in s.execute(select(CustomerIdentity.kind, CustomerIdentity.customer_id))}
        has_phone = s.get(Customer, live).phone_encrypted is not None
        db.session.remove()
    assert set(kinds.values()) == {live}, kinds
    assert len(kinds) == 4 and has_phone
