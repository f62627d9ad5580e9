"""Staff login through the sandbox's WeCom OAuth, and JWT validation edge cases."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_staff_login_returns_roles_and_scope(client: Any, sandbox_reset: Any, tree: Any, make_staff: Any) -> None:
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr-1")
    resp = client.post("/api/workbench/v1/auth/login", json={"code": sandbox_reset.state.issue_oauth_code("mgr-1")})
    body = resp.get_json()
    assert resp.status_code == 200, body
    assert body["staff_id"] == manager.id
    assert body["roles"] == ["store_manager"]
    assert body["scope"] == {"kind": "stores", "store_ids": str(tree.stores[0].id)}
    me = client.get("/api/workbench/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.get_json()["wecom_userid"] == "mgr-1"
    assert sandbox_reset.state.received("/cgi-bin/auth/getuserinfo")


def test_unknown_userid_is_403(client: Any, sandbox_reset: Any) -> None:
    resp = client.post("/api/workbench/v1/auth/login", json={"code": sandbox_reset.state.issue_oauth_code("stranger")})
    assert resp.status_code == 403 and resp.get_json()["code"] == "auth.staff_unknown"


def test_bad_oauth_code_is_401(client: Any, sandbox_reset: Any) -> None:
    resp = client.post("/api/workbench/v1/auth/login", json={"code": "forged"})
    assert resp.status_code == 401 and resp.get_json()["code"] == "auth.login_code_invalid"


def test_resigned_staff_cannot_log_in_or_use_a_token(
    client: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any, db_session: Any
) -> None:
    adv = make_staff(tree.stores[0], "sales_advisor", userid="adv-gone")
    headers = staff_headers(adv)
    adv.status = "resigned"
    db_session.commit()
    resp = client.post("/api/workbench/v1/auth/login", json={"code": sandbox_reset.state.issue_oauth_code("adv-gone")})
    assert resp.status_code == 403 and resp.get_json()["code"] == "auth.staff_inactive"
    assert client.get("/api/workbench/v1/me", headers=headers).status_code == 401


def test_owner_token_is_refused_on_the_workbench_and_vice_versa(
    client: Any, tree: Any, make_staff: Any, make_customer: Any, staff_headers: Any, member_headers: Any
) -> None:
    staff = make_staff(tree.stores[0], "group_admin")
    customer = make_customer(tree.stores[0])
    wrong1 = client.get("/api/workbench/v1/me", headers=member_headers(customer))
    assert wrong1.status_code == 401 and wrong1.get_json()["code"] == "auth.wrong_audience"
    wrong2 = client.get("/api/app/v1/me", headers=staff_headers(staff))
    assert wrong2.status_code == 401 and wrong2.get_json()["code"] == "auth.wrong_audience"


def _forge(app: Any, header: dict, claims: dict, key: str | None = None) -> str:
    import hashlib
    import hmac

    signing_input = f"{_b64(header)}.{_b64(claims)}"
    secret = (key or app.config["SECRET_KEY"]).encode()
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}.get(header.get("alg"), hashlib.sha256)
    sig = base64.urlsafe_b64encode(hmac.new(secret, signing_input.encode(), digest).digest()).decode().rstrip("=")
    return f"{signing_input}.{sig}"


def _claims(customer_id: int, **over: Any) -> dict:
    now = int(time.time())
    return {
        "iss": "dealerloop",
        "aud": "owner",
        "sub": str(customer_id),
        "typ": "access",
        "iat": now,
        "exp": now + 600,
        **over,
    }


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "tampered",
        "wrong_key",
        "alg_none",
        "alg_hs512",
        "wrong_issuer",
        "refresh_typ",
        "no_sub",
        "garbage",
        "no_bearer",
    ],
)
def test_bad_jwts_are_401(client: Any, app: Any, make_customer: Any, case: str) -> None:
    customer = make_customer()
    good = _forge(app, {"alg": "HS256", "typ": "JWT"}, _claims(customer.id))
    assert client.get("/api/app/v1/me", headers={"Authorization": f"Bearer {good}"}).status_code == 200
    token = {
        "expired": lambda: _forge(app, {"alg": "HS256"}, _claims(customer.id, exp=int(time.time()) - 60)),
        "tampered": lambda: good.split(".")[0] + "." + _b64(_claims(customer.id + 1)) + "." + good.split(".")[2],
        "wrong_key": lambda: _forge(app, {"alg": "HS256"}, _claims(customer.id), key="x" * 40),
        "alg_none": lambda: f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(customer.id))}.",
        "alg_hs512": lambda: _forge(app, {"alg": "HS512"}, _claims(customer.id)),
        "wrong_issuer": lambda: _forge(app, {"alg": "HS256"}, _claims(customer.id, iss="evil")),
        "refresh_typ": lambda: _forge(app, {"alg": "HS256"}, _claims(customer.id, typ="refresh")),
        "no_sub": lambda: _forge(app, {"alg": "HS256"}, {k: v for k, v in _claims(customer.id).items() if k != "sub"}),
        "garbage": lambda: "not.a.jwt",
        "no_bearer": lambda: None,
    }[case]()
    headers = {"Authorization": f"Bearer {token}"} if token else {"Authorization": good}
    resp = client.get("/api/app/v1/me", headers=headers)
    assert resp.status_code == 401, resp.get_json()
    assert resp.get_json()["code"] in ("auth.token_invalid", "auth.token_missing")


def test_outsider_oauth_code_is_403(client: Any, sandbox_reset: Any) -> None:
    code = sandbox_reset.state.issue_oauth_code(openid="o-outsider", external_userid="wm-outsider")
    resp = client.post("/api/workbench/v1/auth/login", json={"code": code})
    assert resp.status_code == 403 and resp.get_json()["code"] == "auth.not_a_member"


def test_jssdk_signature_for_the_sidebar(
    client: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    import hashlib

    adv = make_staff(tree.stores[0], "sales_advisor")
    sandbox_reset.state.set_jsapi_ticket("TICKET-CORP")
    sandbox_reset.state.set_jsapi_ticket("TICKET-AGENT", agent=True)
    url = "https://wb.example.com/sidebar?x=1#frag"
    for agent, ticket in ((False, "TICKET-CORP"), (True, "TICKET-AGENT")):
        resp = client.get(
            "/api/workbench/v1/jssdk/signature", query_string={"url": url, "agent": agent}, headers=staff_headers(adv)
        )
        body = resp.get_json()
        assert resp.status_code == 200, body
        raw = f"jsapi_ticket={ticket}&noncestr={body['nonceStr']}&timestamp={body['timestamp']}&url={url.split('#')[0]}"
        assert body["signature"] == hashlib.sha1(raw.encode()).hexdigest()  # noqa: S324 - WeCom's algorithm
        assert ("agentid" in body) is agent
    bad = client.get("/api/workbench/v1/jssdk/signature?url=notaurl", headers=staff_headers(adv))
    assert bad.status_code == 422


def test_jssdk_signature_when_wecom_fails_is_a_clear_502(
    client: Any, app: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    """WeCom cannot give a jsapi ticket: the sidebar learns it from a 502 in the one error
    format, not a 500."""
    adv = make_staff(tree.stores[0], "sales_advisor")
    gateway = app.extensions["dealerloop.gateways"].wecom
    key = gateway.tokens.key("wecom_jsapi_ticket", gateway.corp_id)
    cached = gateway.tokens.peek(key)
    if cached is not None:  # a ticket an earlier test fetched: not this test's
        gateway.tokens.invalidate(key, cached.value)
    sandbox_reset.state.set_fault("down", service="wecom", path="/cgi-bin/get_jsapi_ticket")
    resp = client.get(
        "/api/workbench/v1/jssdk/signature",
        query_string={"url": "https://wb.example.com/sidebar", "agent": False},
        headers=staff_headers(adv),
    )
    assert (resp.status_code, resp.get_json()["code"]) == (502, "upstream.unavailable")
