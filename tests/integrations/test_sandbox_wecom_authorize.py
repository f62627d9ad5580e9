"""The sandbox's OAuth2 authorize page (open.weixin.qq.com/connect/oauth2/authorize): it checks
the app's parameters, sends the member signed in to "WeCom" back with a one-time code and the
caller's state, and refuses strangers, as WeCom does."""

from __future__ import annotations

import json
import subprocess
import sys
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


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/workbench/leads/7",
        "http://127.0.0.1.evil.example/workbench/leads/7",  # the trusted host as a prefix only
        "http://127.0.0.1@evil.example/workbench/leads/7",  # ... or as the userinfo
        "http://localhost/workbench/leads/7",  # the same machine under a name nobody registered
    ],
)
def test_a_redirect_outside_the_apps_trusted_domain_gets_no_code(sandbox_reset: Any, redirect_uri: str) -> None:
    """WeCom sends the code only to the app's trusted domain (here the tests' app host,
    127.0.0.1); a link elsewhere would hand a member's code to whoever wrote it."""
    assert _sign_in(sandbox_reset, "advisor.zhang").status_code == 200
    resp = _authorize(sandbox_reset, redirect_uri=redirect_uri)
    assert (resp.status_code, resp.json()["errcode"], "Location" in resp.headers) == (400, 50001, False)
    assert not sandbox_reset.state.oauth_codes


def test_the_development_sandbox_trusts_the_apps_own_base_url_only() -> None:
    """The sandbox mounted in development trusts the host of PUBLIC_BASE_URL (the app it serves
    the pages of). Run in a process of its own: an app is built there with the sandbox on."""
    code = """
import json
from urllib.parse import urlsplit
from backend import create_app
app = create_app(environ={"DEALERLOOP_ENV": "development", "DATABASE_URL": "sqlite://", "REDIS_URL": "",
                          "PUBLIC_BASE_URL": "http://dealer.localtest.me:5000", "LOG_LEVEL": "WARNING"})
sandbox = app.extensions["dealerloop.sandbox"]
sandbox.state.sign_in_wecom("advisor.zhang")
client = app.test_client()
def go(back):
    creds = sandbox.state.credentials
    resp = client.get("/sandbox/wecom/connect/oauth2/authorize", query_string={
        "appid": creds["WECOM_CORP_ID"], "redirect_uri": back, "response_type": "code", "scope": "snsapi_base"})
    errcode = (resp.get_json(silent=True) or {}).get("errcode")
    return [resp.status_code, urlsplit(resp.headers.get("Location", "")).netloc, errcode]
print(json.dumps([go("http://dealer.localtest.me:5000/workbench/leads/7"), go("https://evil.example/x")]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)  # noqa: S603
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [
        [302, "dealer.localtest.me:5000", None],
        [400, "", 50001],
    ]


def test_members_can_be_added_through_the_control_endpoint(sandbox_reset: Any) -> None:
    url = sandbox_reset.wecom_url + "/_sandbox/members"
    assert requests.post(url, json={}, timeout=5).status_code == 400
    assert requests.post(url, json={"userid": "demo-advisor", "name": "演示顾问"}, timeout=5).status_code == 200
    assert sandbox_reset.state.members["demo-advisor"]["name"] == "演示顾问"
    assert _sign_in(sandbox_reset, "demo-advisor").status_code == 200
