"""The sandbox's OAuth2 authorize page (open.weixin.qq.com/connect/oauth2/authorize): it checks
the app's parameters, sends the member signed in to "WeCom" back with a one-time code and the
caller's state, and refuses strangers, as WeCom does."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from backend.platform.ports import UpstreamError, WeComUser

BACK = "http://127.0.0.1:9/workbench/leads/7?msg=3"


def _authorize(sandbox: Any, **overrides: str | None) -> requests.Response:
    creds = sandbox.credentials
    params = {
        "appid": creds["WECOM_CORP_ID"],
        "redirect_uri": BACK,
        "response_type": "code",
        "scope": "snsapi_base",
        "state": "s-123",
        "agentid": str(creds["WECOM_AGENT_ID"]),
    }
    params.update(overrides)
    query = {k: v for k, v in params.items() if v is not None}
    return requests.get(sandbox.wecom_url + "/connect/oauth2/authorize", params=query, allow_redirects=False, timeout=5)


def _sign_in(sandbox: Any, userid: str | None) -> requests.Response:
    return requests.post(sandbox.wecom_url + "/_sandbox/wecom-session", json={"userid": userid}, timeout=5)


def test_the_signed_in_member_comes_back_with_a_single_use_code_and_the_state(clients: Any) -> None:
    sandbox = clients.sandbox
    assert _sign_in(sandbox, "advisor.zhang").json() == {"userid": "advisor.zhang"}
    resp = _authorize(sandbox)
    assert resp.status_code == 302
    back = urlsplit(resp.headers["Location"])
    query = parse_qs(back.query)
    assert (back.scheme, back.netloc, back.path) == ("http", "127.0.0.1:9", "/workbench/leads/7")
    assert query["msg"] == ["3"] and query["state"] == ["s-123"]  # the page's own query is kept
    wecom = clients.wecom()
    assert wecom.get_user_info(query["code"][0]) == WeComUser(userid="advisor.zhang")
    with pytest.raises(UpstreamError) as err:
        wecom.get_user_info(query["code"][0])
    assert err.value.errcode == 40029
    # A second visit is a new code; agentid may be left out with snsapi_base.
    again = parse_qs(urlsplit(_authorize(sandbox, agentid=None).headers["Location"]).query)["code"][0]
    assert again != query["code"][0] and wecom.get_user_info(again).userid == "advisor.zhang"


def test_nobody_signed_in_or_a_member_who_left_gets_no_code(sandbox_reset: Any) -> None:
    nobody = _authorize(sandbox_reset)
    assert nobody.status_code == 400 and "nobody is signed in" in nobody.json()["error"]
    unknown = _sign_in(sandbox_reset, "stranger")
    assert unknown.status_code == 400 and "not an active member" in unknown.json()["error"]
    assert _sign_in(sandbox_reset, "advisor.wang").status_code == 400  # resigned (the seed's)
    assert _sign_in(sandbox_reset, "advisor.li").status_code == 200
    sandbox_reset.state.set_member_status("advisor.li", "resigned")
    left = _authorize(sandbox_reset)
    assert (left.status_code, left.json()["errcode"]) == (400, 60111)
    sandbox_reset.state.set_member_status("advisor.li", "active")
    assert _sign_in(sandbox_reset, None).json() == {"userid": None}
    assert _authorize(sandbox_reset).status_code == 400
    assert not sandbox_reset.state.oauth_codes


@pytest.mark.parametrize(
    ("overrides", "errcode"),
    [
        ({"appid": "wwOtherCorp"}, 40013),
        ({"appid": None}, 40013),
        ({"agentid": "999"}, 40056),
        ({"scope": "snsapi_privateinfo", "agentid": None}, 40056),
        ({"scope": "snsapi_userinfo"}, 40058),
        ({"response_type": "token"}, 40058),
        ({"redirect_uri": "/workbench/leads/7"}, 40058),
        ({"redirect_uri": "javascript:alert(1)"}, 40058),
        ({"redirect_uri": None}, 40058),
    ],
)
def test_wrong_app_parameters_are_refused(sandbox_reset: Any, overrides: dict[str, str | None], errcode: int) -> None:
    assert _sign_in(sandbox_reset, "advisor.zhang").status_code == 200
    resp = _authorize(sandbox_reset, **overrides)
    assert (resp.status_code, resp.json()["errcode"]) == (400, errcode)
    assert not sandbox_reset.state.oauth_codes


def test_members_can_be_added_through_the_control_endpoint(sandbox_reset: Any) -> None:
    url = sandbox_reset.wecom_url + "/_sandbox/members"
    assert requests.post(url, json={}, timeout=5).status_code == 400
    assert requests.post(url, json={"userid": "demo-advisor", "name": "演示顾问"}, timeout=5).status_code == 200
    assert sandbox_reset.state.members["demo-advisor"]["name"] == "演示顾问"
    assert _sign_in(sandbox_reset, "demo-advisor").status_code == 200
