"""Several corps: a channel is seen and changed by its own corp's staff only; a staff member who
opened the H5 from a second app of their corp gets that app's JS-SDK signature; a login naming
an app the corp does not have is refused."""

from __future__ import annotations

from typing import Any

from tests.wecom.helpers import callback_world, corp_b_world, second_wecom_app

WB = "/api/workbench/v1"
UPDATE_WAY = "/cgi-bin/externalcontact/update_contact_way"
DEL_WAY = "/cgi-bin/externalcontact/del_contact_way"


def test_another_corps_channel_is_not_seen_nor_changed(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    monkeypatch: Any,
) -> None:
    """Corp A's group admin makes a channel at store 1; corp B's manager of store 1 does not list
    it, cannot rename or delete it (404), and corp A's contact way is untouched."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch, a_tag=True) as w:
        body = {
            "name": "A店活码",
            "kind": "store",
            "state": "corpA-s1",
            "userids": ["advisor.zhang"],
            "store_id": tree.stores[1].id,
        }
        made = client.post(f"{WB}/wecom/channels", headers=staff_headers(w["admin"]), json=body)
        assert made.status_code == 201, made.get_json()
        assert made.get_json()["corp_id"] == app.config["WECOM_CORP_ID"]
        cid = made.get_json()["id"]
        manager_b = staff_headers(w["manager_b"])
        assert client.get(f"{WB}/wecom/channels", headers=manager_b).get_json() == []
        renamed = client.patch(f"{WB}/wecom/channels/{cid}", headers=manager_b, json={"name": "renamed by B"})
        deleted = client.delete(f"{WB}/wecom/channels/{cid}", headers=manager_b)
        assert (renamed.status_code, deleted.status_code) == (404, 404)
        assert sandbox_reset.state.received(UPDATE_WAY) == [] and sandbox_reset.state.received(DEL_WAY) == []


def test_the_jssdk_signature_is_for_the_app_that_opened_the_page(
    app: Any, client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, monkeypatch: Any
) -> None:
    """A corp with two apps: the advisor logs in through the second one and asks for the
    agentConfig arguments naming it: they are that app's (its agentid, its ticket)."""
    callback_world(sandbox_reset, tree, make_staff)
    with second_wecom_app(app, sandbox_reset, monkeypatch, corp_id=app.config["WECOM_CORP_ID"]) as (second, creds):
        code = second.state.issue_oauth_code("advisor.zhang")
        login = client.post(f"{WB}/auth/login", json={"code": code, "agent_id": creds["WECOM_AGENT_ID"]})
        assert login.status_code == 200, login.get_json()
        headers = {"Authorization": f"Bearer {login.get_json()['access_token']}"}
        query = {"url": "https://h5.example/x", "agent": True, "agent_id": creds["WECOM_AGENT_ID"]}
        signed = client.get(f"{WB}/jssdk/signature", headers=headers, query_string=query)
        assert signed.status_code == 200, signed.get_json()
        assert str(signed.get_json()["agentid"]) == str(creds["WECOM_AGENT_ID"])
        unknown = client.get(f"{WB}/jssdk/signature", headers=headers, query_string={**query, "agent_id": 4242})
        assert (unknown.status_code, unknown.get_json()["code"]) == (422, "auth.corp_unknown")


def test_a_login_naming_an_app_the_corp_does_not_have_is_refused(
    app: Any, client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, monkeypatch: Any
) -> None:
    """The code is not sent to some other app of the corp (it would only fail there)."""
    callback_world(sandbox_reset, tree, make_staff)
    with second_wecom_app(app, sandbox_reset, monkeypatch, corp_id=app.config["WECOM_CORP_ID"]) as (second, _creds):
        code = second.state.issue_oauth_code("advisor.zhang")
        resp = client.post(f"{WB}/auth/login", json={"code": code, "agent_id": 4242})
        assert (resp.status_code, resp.get_json()["code"]) == (422, "auth.corp_unknown")
