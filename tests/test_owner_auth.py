"""Owner login through the sandbox (real wechatpy code path), refresh rotation, phone binding."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.customers.models import Customer, CustomerIdentity, IdentityKind
from backend.touchpoints.models import Touchpoint


@pytest.fixture
def wx(sandbox_reset: Any) -> Any:
    return sandbox_reset


def login(client: Any, code: str) -> Any:
    return client.post("/api/app/v1/auth/login", json={"code": code})


def test_first_login_creates_member_and_touchpoint(client: Any, wx: Any, db_session: Any) -> None:
    resp = login(client, wx.state.issue_login_code("o-new-1", "u-new-1"))
    body = resp.get_json()
    assert resp.status_code == 200, body
    assert body["is_new_member"] is True and body["phone_bound"] is False
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    customer = db_session.get(Customer, body["customer_id"])
    assert customer.identity(IdentityKind.OPENID) == "o-new-1"
    assert customer.identity(IdentityKind.UNIONID) == "u-new-1"
    kinds = db_session.scalars(select(Touchpoint.kind).where(Touchpoint.customer_id == customer.id)).all()
    assert kinds == ["member_registered"]
    # The real wechatpy path was used: token fetched, then code2session with our appid.
    calls = wx.state.received("/sns/jscode2session")
    assert calls and calls[-1]["query"]["appid"] == wx.credentials["WECHAT_APP_ID"]

    again = login(client, wx.state.issue_login_code("o-new-1", "u-new-1")).get_json()
    assert again["customer_id"] == customer.id and again["is_new_member"] is False
    me = client.get("/api/app/v1/me", headers={"Authorization": f"Bearer {again['access_token']}"})
    assert me.status_code == 200 and me.get_json()["id"] == customer.id


def test_unionid_stitches_to_customer_known_from_wecom(client: Any, wx: Any, db_session: Any) -> None:
    known = Customer(name="企微客户")
    db_session.add(known)
    db_session.flush()
    db_session.add(CustomerIdentity(customer_id=known.id, kind=IdentityKind.UNIONID, value="u-shared"))
    db_session.add(CustomerIdentity(customer_id=known.id, kind=IdentityKind.EXTERNAL_USERID, value="wm-ext-1"))
    db_session.commit()
    body = login(client, wx.state.issue_login_code("o-shared", "u-shared")).get_json()
    assert body["customer_id"] == known.id
    assert body["is_new_member"] is False
    assert db_session.scalar(select(func.count()).select_from(Customer)) == 1
    idents = {
        i.kind: i.value
        for i in db_session.scalars(select(CustomerIdentity).where(CustomerIdentity.customer_id == known.id))
    }
    assert idents[IdentityKind.OPENID] == "o-shared"


@pytest.mark.parametrize("scenario", ["reused", "unknown", "expired"])
def test_bad_login_codes_are_401(client: Any, wx: Any, scenario: str, db_session: Any) -> None:
    code = wx.state.issue_login_code("o-bad")
    if scenario == "reused":
        assert login(client, code).status_code == 200
    elif scenario == "unknown":
        code = "not-a-code"
    else:
        wx.state.advance(301)  # codes live 5 minutes
    before = db_session.scalar(select(func.count()).select_from(Customer))
    resp = login(client, code)
    body = resp.get_json()
    assert resp.status_code == 401, body
    assert body["code"] == "auth.login_code_invalid"
    assert body["errors"]["upstream"]["errcode"] in (40029, 40163)
    assert db_session.scalar(select(func.count()).select_from(Customer)) == before


def test_sandbox_down_is_502(client: Any, wx: Any) -> None:
    code = wx.state.issue_login_code("o-down")
    wx.state.set_fault("down", service="wechat")
    resp = login(client, code)
    assert resp.status_code == 502
    assert resp.get_json()["code"] == "upstream.unavailable"


def test_sandbox_slow_is_504_after_bounded_timeout(client: Any, wx: Any, app: Any) -> None:
    import time

    code = wx.state.issue_login_code("o-slow")
    wx.state.set_fault("slow", seconds=app.config["UPSTREAM_TIMEOUT"] + 3, service="wechat", path="/sns/jscode2session")
    started = time.monotonic()
    resp = login(client, code)
    elapsed = time.monotonic() - started
    assert resp.status_code == 504
    assert resp.get_json()["code"] == "upstream.timeout"
    assert elapsed < app.config["UPSTREAM_TIMEOUT"] + 2


def test_refresh_rotates_and_reuse_revokes_family(client: Any, wx: Any) -> None:
    first = login(client, wx.state.issue_login_code("o-refresh")).get_json()
    r1 = client.post("/api/app/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r1.status_code == 200
    second = r1.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    # Replaying the rotated token: stolen-token signal → the whole family is revoked.
    replay = client.post("/api/app/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401 and replay.get_json()["code"] == "auth.refresh_token_reused"
    successor = client.post("/api/app/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert successor.status_code == 401 and successor.get_json()["code"] == "auth.refresh_token_invalid"


def test_logout_revokes_refresh_token(client: Any, wx: Any) -> None:
    tokens = login(client, wx.state.issue_login_code("o-logout")).get_json()
    assert client.post("/api/app/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}).status_code == 204
    resp = client.post("/api/app/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert resp.status_code == 401


def test_owner_refresh_token_is_not_a_staff_refresh_token(client: Any, wx: Any) -> None:
    tokens = login(client, wx.state.issue_login_code("o-aud")).get_json()
    resp = client.post("/api/workbench/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert resp.status_code == 401


def _owner(client: Any, wx: Any, openid: str) -> tuple[int, dict[str, str]]:
    body = login(client, wx.state.issue_login_code(openid)).get_json()
    return body["customer_id"], {"Authorization": f"Bearer {body['access_token']}"}


def test_bind_phone_stores_it_encrypted_and_masks_it(client: Any, wx: Any, db_session: Any, app: Any) -> None:
    cid, headers = _owner(client, wx, "o-phone")
    resp = client.post("/api/app/v1/me/phone", json={"code": wx.state.issue_phone_code("13812345678")}, headers=headers)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["phone"] == "138****5678"
    customer = db_session.get(Customer, cid)
    assert b"13812345678" not in customer.phone_encrypted
    assert app.extensions["dealerloop.phone_vault"].decrypt(customer.phone_encrypted) == "13812345678"
    index = app.extensions["dealerloop.phone_vault"].blind_index("+86 138-1234-5678")
    assert db_session.scalar(select(CustomerIdentity.customer_id).where(CustomerIdentity.value == index)) == cid
    assert "phone_bound" in db_session.scalars(select(Touchpoint.kind).where(Touchpoint.customer_id == cid)).all()


def test_bad_phone_code_is_422_and_changes_nothing(client: Any, wx: Any, db_session: Any) -> None:
    cid, headers = _owner(client, wx, "o-phone-bad")
    resp = client.post("/api/app/v1/me/phone", json={"code": "nope"}, headers=headers)
    assert resp.status_code == 422
    assert resp.get_json()["code"] == "member.phone_code_invalid"
    assert db_session.get(Customer, cid).phone_encrypted is None


def test_phone_of_another_member_is_409(client: Any, wx: Any) -> None:
    _, h1 = _owner(client, wx, "o-p1")
    _, h2 = _owner(client, wx, "o-p2")
    assert (
        client.post(
            "/api/app/v1/me/phone", json={"code": wx.state.issue_phone_code("13900001111")}, headers=h1
        ).status_code
        == 200
    )
    resp = client.post("/api/app/v1/me/phone", json={"code": wx.state.issue_phone_code("13900001111")}, headers=h2)
    assert resp.status_code == 409 and resp.get_json()["code"] == "member.phone_taken"


def test_phone_typed_in_by_an_advisor_stitches_by_audited_merge(
    client: Any, wx: Any, db_session: Any, make_customer: Any, tree: Any
) -> None:
    from backend.customers.models import Car, CustomerMerge
    from backend.platform.audit import AuditLog

    walk_in = make_customer(tree.stores[0], name="到店客户", phone="13700002222")
    db_session.add(Car(customer_id=walk_in.id, vin="LFV2A21K7G3000001"))
    db_session.commit()
    cid, headers = _owner(client, wx, "o-walkin")
    resp = client.post("/api/app/v1/me/phone", json={"code": wx.state.issue_phone_code("13700002222")}, headers=headers)
    assert resp.status_code == 200, resp.get_json()
    merge = db_session.scalars(select(CustomerMerge)).one()
    assert (merge.source_id, merge.target_id) == (walk_in.id, cid)
    assert db_session.get(Customer, walk_in.id).merged_into_id == cid
    assert db_session.scalar(select(Car.customer_id)) == cid
    assert db_session.scalars(select(AuditLog.action)).all() == ["customer.merged"]
    cars = client.get("/api/app/v1/me/cars", headers=headers).get_json()
    assert [c["vin"] for c in cars] == ["LFV2A21K7G3000001"]
