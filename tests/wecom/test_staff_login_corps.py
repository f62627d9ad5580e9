"""Staff of every configured WeCom corp log in with their own app's OAuth code, and the JS-SDK
signature is made by the logged-in staff member's own corp."""

from __future__ import annotations

import hashlib
from typing import Any

from tests.wecom.helpers import corp_b_world

WB = "/api/workbench/v1"


def test_corp_b_staff_log_in_with_their_apps_oauth_code(
    app: Any, client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, monkeypatch: Any
) -> None:
    """The H5 names the app that opened it; that app's token exchanges the code, and the staff
    member is looked up in that app's corp."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch) as w:
        code = w["second"].state.issue_oauth_code("mgr.b")
        resp = client.post(f"{WB}/auth/login", json={"code": code, "corp_id": w["corp_b"]})
        body = resp.get_json()
        assert resp.status_code == 200, body
        assert (body["staff_id"], body["roles"]) == (w["manager_b"].id, ["store_manager"])
        assert w["second"].state.received("/cgi-bin/auth/getuserinfo")
        me = client.get(f"{WB}/me", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert me.status_code == 200 and me.get_json()["wecom_userid"] == "mgr.b"


def test_the_agent_id_picks_the_app_and_may_come_as_a_string(
    app: Any, client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, monkeypatch: Any
) -> None:
    """The H5 reads the agentid from its URL, so a string is as good as a number."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch) as w:
        agent_id = w["creds"]["WECOM_AGENT_ID"]
        for sent in (agent_id, int(agent_id)):
            code = w["second"].state.issue_oauth_code("adv.two")
            resp = client.post(f"{WB}/auth/login", json={"code": code, "corp_id": w["corp_b"], "agent_id": sent})
            assert resp.status_code == 200, resp.get_json()
            assert resp.get_json()["staff_id"] == w["advisor_b"].id


def test_the_same_userid_in_two_corps_logs_in_as_the_staff_of_the_named_corp(
    app: Any, client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, monkeypatch: Any
) -> None:
    """WeCom userids are unique only within a corp: corp A's mgr.b is someone else."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch) as w:
        corp_a_namesake = make_staff(tree.stores[0], "sales_advisor", userid="mgr.b")
        code_b = w["second"].state.issue_oauth_code("mgr.b")
        resp_b = client.post(f"{WB}/auth/login", json={"code": code_b, "corp_id": w["corp_b"]})
        assert resp_b.status_code == 200 and resp_b.get_json()["staff_id"] == w["manager_b"].id
        code_a = sandbox_reset.state.issue_oauth_code("mgr.b")
        resp_a = client.post(f"{WB}/auth/login", json={"code": code_a, "corp_id": app.config["WECOM_CORP_ID"]})
        assert resp_a.status_code == 200 and resp_a.get_json()["staff_id"] == corp_a_namesake.id


def test_without_a_corp_the_primary_app_exchanges_the_code(
    app: Any, client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, monkeypatch: Any
) -> None:
    """As before there were several apps: no corp named means the primary app, so corp A's staff
    log in unchanged and a corp-B code is refused by the primary app (40029)."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch) as w:
        code_a = sandbox_reset.state.issue_oauth_code("advisor.zhang")
        resp_a = client.post(f"{WB}/auth/login", json={"code": code_a})
        assert resp_a.status_code == 200 and resp_a.get_json()["staff_id"] == w["advisor"].id
        code_b = w["second"].state.issue_oauth_code("mgr.b")
        resp_b = client.post(f"{WB}/auth/login", json={"code": code_b})
        assert resp_b.status_code == 401, resp_b.get_json()
        assert resp_b.get_json()["code"] == "auth.login_code_invalid"
        assert not w["second"].state.received("/cgi-bin/auth/getuserinfo")


def test_an_unknown_corp_is_422_with_its_own_code(client: Any, sandbox_reset: Any) -> None:
    """A corp with no configured app cannot exchange anything: said before WeCom is asked."""
    code = sandbox_reset.state.issue_oauth_code("anyone")
    resp = client.post(f"{WB}/auth/login", json={"code": code, "corp_id": "wwNobodysCorp0001"})
    body = resp.get_json()
    assert (resp.status_code, body["code"]) == (422, "auth.corp_unknown")
    assert body["message"] != "auth.corp_unknown"  # a registered message, not the bare code
    english = client.post(
        f"{WB}/auth/login",
        json={"code": code, "corp_id": "wwNobodysCorp0001"},
        headers={"Accept-Language": "en"},
    )
    assert english.get_json()["message"] == "No WeCom app of this corp is configured"
    assert not sandbox_reset.state.received("/cgi-bin/auth/getuserinfo")


def forget_tickets(app: Any) -> None:
    """Drop the jsapi tickets every app has cached: the token store outlives a test, and a ticket
    cached here would hide the ticket another test forces on its sandbox."""
    gateways = app.extensions["dealerloop.gateways"]
    for gateway in (gateways.wecom, *gateways.extra.get("wecom_apps", [])):
        for kind, owner in (
            ("wecom_jsapi_ticket", gateway.corp_id),
            ("wecom_agent_ticket", f"{gateway.corp_id}:{gateway.agent_id}"),
        ):
            key = gateway.tokens.key(kind, owner)
            cached = gateway.tokens.peek(key)
            if cached is not None:
                gateway.tokens.invalidate(key, cached.value)


def test_jssdk_signature_for_corp_b_staff_is_made_by_corp_b(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    monkeypatch: Any,
) -> None:
    """WeCom checks `wx.config` against the corp the page runs in: corp B's staff get corp B's
    id, signed with corp B's ticket; corp A's staff still get corp A's."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch) as w:
        forget_tickets(app)
        try:
            w["second"].state.set_jsapi_ticket("TICKET-CORP-B")
            url = "https://h5.example/x"
            resp = client.get(f"{WB}/jssdk/signature", headers=staff_headers(w["manager_b"]), query_string={"url": url})
            body = resp.get_json()
            assert resp.status_code == 200, body
            assert (body["corpid"], body["appId"]) == (w["corp_b"], w["corp_b"])
            raw = f"jsapi_ticket=TICKET-CORP-B&noncestr={body['nonceStr']}&timestamp={body['timestamp']}&url={url}"
            assert body["signature"] == hashlib.sha1(raw.encode()).hexdigest()  # noqa: S324 - WeCom's algorithm

            agent = client.get(
                f"{WB}/jssdk/signature",
                headers=staff_headers(w["manager_b"]),
                query_string={"url": url, "agent": True},
            )
            assert agent.status_code == 200, agent.get_json()
            assert (agent.get_json()["corpid"], agent.get_json()["agentid"]) == (
                w["corp_b"],
                w["creds"]["WECOM_AGENT_ID"],
            )

            resp_a = client.get(f"{WB}/jssdk/signature", headers=staff_headers(w["advisor"]), query_string={"url": url})
            assert resp_a.status_code == 200 and resp_a.get_json()["corpid"] == app.config["WECOM_CORP_ID"]
        finally:
            forget_tickets(app)
