"""The H5 pages' routes: one shell per card kind, with a Content-Security-Policy and the login
settings in data- attributes (no inline script); anything else is a 404 in the error format."""

from __future__ import annotations

import re
from typing import Any

import pytest

from backend.config import load_settings

KINDS = ("leads", "consult", "handovers")


@pytest.mark.parametrize("kind", KINDS)
def test_each_card_kind_serves_its_page_with_a_csp(client: Any, sandbox: Any, kind: str) -> None:
    resp = client.get(f"/workbench/{kind}/42?msg=7")
    assert resp.status_code == 200
    assert resp.mimetype == "text/html"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert resp.headers["Referrer-Policy"] == "no-referrer" and resp.headers["Cache-Control"] == "no-store"
    html = resp.get_data(as_text=True)
    assert f'data-kind="{kind}"' in html and 'data-id="42"' in html
    assert f'data-authorize="{sandbox.wecom_url}/connect/oauth2/authorize"' in html
    assert f'data-corp-id="{sandbox.credentials["WECOM_CORP_ID"]}"' in html
    assert f'data-agent-id="{sandbox.credentials["WECOM_AGENT_ID"]}"' in html
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all(' src="/workbench/static/' in attrs and body.strip() == "" for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+=", html)  # no inline handlers either


@pytest.mark.parametrize(
    "path",
    [
        "/workbench/customers/1",  # not a page kind
        "/workbench/leads/abc",  # not an id
        "/workbench/leads/1.5",
        "/workbench/leads/-1",
        "/workbench/leads/",
        "/workbench/leads/1/history",
    ],
)
def test_other_paths_are_404_in_the_error_format(client: Any, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404
    assert resp.get_json()["code"] == "request.not_found"


def test_script_and_stylesheet_are_served_and_the_script_writes_no_html(client: Any) -> None:
    js = client.get("/workbench/static/workbench/workbench.js")
    css = client.get("/workbench/static/workbench/workbench.css")
    assert (js.status_code, css.status_code) == (200, 200)
    assert js.mimetype in ("text/javascript", "application/javascript") and css.mimetype == "text/css"
    source = js.get_data(as_text=True)
    js.close()
    css.close()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source, sink


def test_the_authorize_host_is_a_setting_wecom_in_production() -> None:
    assert load_settings({})["WECOM_OAUTH_BASE"] == "https://open.weixin.qq.com"
    assert load_settings({"WECOM_OAUTH_BASE": "https://oauth.example.test"})["WECOM_OAUTH_BASE"] == (
        "https://oauth.example.test"
    )
