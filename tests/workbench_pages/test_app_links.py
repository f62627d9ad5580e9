"""Cards and pages of a dealer group running several WeCom apps (WECOM_EXTRA_APPS): the card's
link names the app it was sent through (`?app=<key>`), the page logs in with that app's corp
and agent, and the login exchanges the code with that app's token and finds the staff member in
that app's corp. A link without a key is the primary app's, as before."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from backend.platform.db import commit
from backend.wecom import notify
from backend.wecom import service as wecom_service
from tests.wecom.helpers import corp_b_world, second_wecom_app

WB = "/api/workbench/v1"


def _keys(app: Any) -> tuple[str, str]:
    """The primary app's key and the second app's (second_wecom_app must be configured)."""
    with app.app_context():
        primary, second = wecom_service.wecom_apps()
        return wecom_service.app_key(primary), wecom_service.app_key(second)


def _link_query(card: dict[str, Any]) -> dict[str, list[str]]:
    return parse_qs(urlsplit(card["textcard"]["url"]).query)


def test_each_card_names_the_app_it_was_sent_through(
    app: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, monkeypatch: Any
) -> None:
    """One notification to advisors of two corps: each corp's card goes through its own app and
    its link names that app (not the primary one, not a secret)."""
    advisor_a = make_staff(tree.stores[0], "sales_advisor", userid="link.a")
    with second_wecom_app(app, sandbox_reset, monkeypatch) as (second, creds):
        from tests.wecom.helpers import corp_staff

        advisor_b = corp_staff(db_session, creds["WECOM_CORP_ID"], tree.stores[1], "link.b", "sales_advisor", "B顾问")
        second.state.add_member("link.b", "B顾问")
        key_a, key_b = _keys(app)
        with app.app_context():
            card = notify.Card("新线索", "客户「陈先生」", notify.page_link("/workbench/leads/77"))
            sent = notify.notify_staff(
                db_session, notify.NotifyKind.NEW_LEAD, "lead:77", [advisor_a, advisor_b], card=card
            )
            commit(db_session)
        assert len(sent) == 2
        (card_a,) = sandbox_reset.state.app_messages
        (card_b,) = second.state.app_messages
        assert card_b["touser"] == "link.b" and _link_query(card_b)["app"] == [key_b]
        assert card_a["touser"] == "link.a" and _link_query(card_a)["app"] == [key_a]
        assert key_a != key_b
        for key in (key_a, key_b):
            assert key.isalnum() and creds["WECOM_CORP_ID"] not in key and creds["WECOM_SECRET"] not in key
        # The reference that makes two alike messages distinct is still there.
        assert _link_query(card_b)["msg"] == [str(sent[1].id)]
        assert urlsplit(card_b["textcard"]["url"]).path == "/workbench/leads/77"


def test_the_page_of_a_second_app_link_logs_in_with_that_apps_corp_and_agent(
    app: Any, client: Any, sandbox_reset: Any, monkeypatch: Any
) -> None:
    with second_wecom_app(app, sandbox_reset, monkeypatch) as (second, creds):
        key_a, key_b = _keys(app)
        html = client.get(f"/workbench/leads/42?msg=7&app={key_b}").get_data(as_text=True)
        assert f'data-corp-id="{creds["WECOM_CORP_ID"]}"' in html
        assert f'data-agent-id="{creds["WECOM_AGENT_ID"]}"' in html
        assert f'data-app="{key_b}"' in html
        # That corp's authorize page (its own sandbox here; WeCom's one host in production).
        assert f'data-authorize="{second.base_url}/wecom/connect/oauth2/authorize"' in html
        # The primary app's link, and an old link that names no app, log in as before.
        for query in (f"?msg=7&app={key_a}", "?msg=7"):
            html = client.get(f"/workbench/consult/42{query}").get_data(as_text=True)
            assert f'data-corp-id="{sandbox_reset.credentials["WECOM_CORP_ID"]}"' in html
            assert f'data-agent-id="{sandbox_reset.credentials["WECOM_AGENT_ID"]}"' in html
            assert f'data-app="{key_a}"' in html
            assert f'data-authorize="{sandbox_reset.wecom_url}/connect/oauth2/authorize"' in html


@pytest.mark.parametrize("query", ["app=0123456789abcdef", "app=", "app={a}&app={a}", "app={a}x"])
def test_a_link_naming_no_configured_app_is_404_in_the_error_format(
    app: Any, client: Any, sandbox_reset: Any, query: str
) -> None:
    """A card of an app since taken out of the settings (or a mangled link): no page that would
    send the staff member to WeCom with the wrong corp."""
    with app.app_context():
        key_a = wecom_service.app_key(wecom_service.wecom_apps()[0])
    resp = client.get(f"/workbench/handovers/3?{query.format(a=key_a)}")
    body = resp.get_json()
    assert (resp.status_code, body["code"]) == (404, "workbench.app_unknown"), body
    assert body["message"] != "workbench.app_unknown"  # a registered message


def test_the_login_exchanges_the_code_with_the_named_app_and_refuses_another_corps_code(
    app: Any, client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, monkeypatch: Any
) -> None:
    """A corp-B code presented with corp A's key goes to corp A's WeCom, which refuses it; with
    corp B's key it logs in corp B's staff member, even where corp A has the same userid."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch) as w:
        corp_a_namesake = make_staff(tree.stores[0], "sales_advisor", userid="mgr.b")
        key_a, key_b = _keys(app)
        code_b = w["second"].state.issue_oauth_code("mgr.b")
        wrong = client.post(f"{WB}/auth/login", json={"code": code_b, "app": key_a})
        assert (wrong.status_code, wrong.get_json()["code"]) == (401, "auth.login_code_invalid"), wrong.get_json()
        assert sandbox_reset.state.received("/cgi-bin/auth/getuserinfo")
        assert not w["second"].state.received("/cgi-bin/auth/getuserinfo")

        code_b = w["second"].state.issue_oauth_code("mgr.b")
        resp = client.post(f"{WB}/auth/login", json={"code": code_b, "app": key_b})
        assert resp.status_code == 200, resp.get_json()
        assert resp.get_json()["staff_id"] == w["manager_b"].id != corp_a_namesake.id

        code_a = sandbox_reset.state.issue_oauth_code("mgr.b")
        resp_a = client.post(f"{WB}/auth/login", json={"code": code_a, "app": key_a})
        assert resp_a.status_code == 200 and resp_a.get_json()["staff_id"] == corp_a_namesake.id


def test_an_unknown_app_key_or_one_at_odds_with_the_named_corp_is_422(
    app: Any, client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, monkeypatch: Any
) -> None:
    """Said before WeCom is asked: nothing is exchanged with an app the caller did not mean."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch) as w:
        key_a, key_b = _keys(app)
        code = w["second"].state.issue_oauth_code("mgr.b")
        for body in (
            {"code": code, "app": "0123456789abcdef"},
            {"code": code, "app": key_b, "corp_id": w["corp_a"]},
            {"code": code, "app": key_a, "agent_id": int(w["creds"]["WECOM_AGENT_ID"])},
        ):
            resp = client.post(f"{WB}/auth/login", json=body)
            assert (resp.status_code, resp.get_json()["code"]) == (422, "auth.app_unknown"), (body, resp.get_json())
        assert not sandbox_reset.state.received("/cgi-bin/auth/getuserinfo")
        assert not w["second"].state.received("/cgi-bin/auth/getuserinfo")
        # Naming the same app twice over is fine.
        same = {"code": code, "app": key_b, "corp_id": w["corp_b"], "agent_id": w["creds"]["WECOM_AGENT_ID"]}
        resp = client.post(f"{WB}/auth/login", json=same)
        assert resp.status_code == 200 and resp.get_json()["staff_id"] == w["manager_b"].id


def test_the_login_schema_documents_the_app_key(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    login = spec["components"]["schemas"]["StaffCodeLogin"]
    assert login["properties"]["app"]["type"] == "string"
    assert "app" not in login.get("required", [])  # old clients (corp_id / agent_id, or none) keep working


def test_a_second_app_of_the_same_corp_is_told_apart_by_its_agent(
    app: Any, client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, monkeypatch: Any
) -> None:
    """Two self-built apps of one corp: the link's key picks the agent, and the code goes to
    that app's token (an agent's code is no good with the other's)."""
    corp = sandbox_reset.credentials["WECOM_CORP_ID"]
    advisor = make_staff(tree.stores[0], "sales_advisor", userid="agent.two")
    with second_wecom_app(app, sandbox_reset, monkeypatch, corp_id=corp) as (second, creds):
        second.state.add_member("agent.two", "二号应用顾问")
        _key_a, key_b = _keys(app)
        html = client.get(f"/workbench/leads/5?app={key_b}").get_data(as_text=True)
        assert f'data-corp-id="{corp}"' in html and f'data-agent-id="{creds["WECOM_AGENT_ID"]}"' in html
        assert creds["WECOM_AGENT_ID"] != sandbox_reset.credentials["WECOM_AGENT_ID"]
        code = second.state.issue_oauth_code("agent.two")
        resp = client.post(f"{WB}/auth/login", json={"code": code, "app": key_b})
        assert resp.status_code == 200 and resp.get_json()["staff_id"] == advisor.id
        assert second.state.received("/cgi-bin/auth/getuserinfo")
        assert not sandbox_reset.state.received("/cgi-bin/auth/getuserinfo")
