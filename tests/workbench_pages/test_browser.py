"""The H5 pages in a real browser: a WeCom card's link, the OAuth round trip through the
sandbox's authorize page, the existing staff login, the page's data and actions through the
workbench API, and the database changed by them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from backend.platform.db import db

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture says why: a skip, or a failure in CI
    expect = None

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit, pytest.mark.browser]

TOKENS = "dealerloop.workbench.tokens"
NOT_FOUND = "未找到该记录，或您无权查看。"


def _read(app: Any, query: Callable[[Any], Any]) -> Any:
    """A committed fact, read in a session of its own."""
    with app.app_context():
        session = db.session_factory()
        try:
            return query(session)
        finally:
            session.close()


def _card_url(sandbox: Any, userid: str, title: str | None = None) -> str:
    cards = [
        m["textcard"]
        for m in sandbox.state.app_messages
        if m["touser"] == userid and m["msgtype"] == "textcard" and (title is None or m["textcard"]["title"] == title)
    ]
    assert len(cards) == 1, sandbox.state.app_messages
    return cards[0]["url"]


def _tokens(page: Any) -> dict[str, Any] | None:
    return json.loads(page.evaluate(f"() => sessionStorage.getItem('{TOKENS}')") or "null")


@pytest.fixture
def lead_card(
    client: Any, live: str, tree: Any, make_staff: Any, make_customer: Any, member_headers: Any, sandbox_reset: Any
) -> dict[str, Any]:
    """An owner's new-car enquiry at store 0, routed to its one sales advisor, who got a card."""
    advisor = make_staff(tree.stores[0], "sales_advisor", userid="page.sales", name="王顾问")
    far = make_staff(tree.stores[3], "sales_advisor", userid="page.far", name="周顾问")
    owner = make_customer(tree.stores[0], name="陈志强", openid="o-page-owner")
    body = {"type": "new_car", "brand": "大众", "series": "ID.4", "budget_fen": 20_000_000}
    resp = client.post("/api/app/v1/leads", json=body, headers=member_headers(owner))
    assert resp.status_code == 201, resp.get_json()
    lead = resp.get_json()
    assert lead["advisor_id"] == advisor.id
    url = _card_url(sandbox_reset, "page.sales")
    assert url.startswith(f"{live}/workbench/leads/{lead['id']}?msg=")
    return {"id": lead["id"], "url": url, "advisor": advisor.id, "far": far.wecom_userid}


def test_card_link_logs_in_through_wecom_shows_the_lead_and_marks_it_contacted(
    app: Any, phone: Any, lead_card: dict[str, Any], sandbox_reset: Any
) -> None:
    from backend.leads.models import Lead
    from backend.touchpoints.models import Touchpoint

    sandbox_reset.state.sign_in_wecom("page.sales")
    page = phone()
    page.goto(lead_card["url"])
    expect(page.locator("h2")).to_contain_text("新车意向")
    expect(page.locator(".facts")).to_contain_text("陈志强")
    expect(page.locator("h2")).to_contain_text("待联系")
    expect(page.locator("#who")).to_have_text("王顾问")
    # One trip through WeCom's authorize page, with this app's parameters and the page as the way back.
    authorize = [u for u in page.requested if "/connect/oauth2/authorize" in u]
    assert len(authorize) == 1
    sent = parse_qs(urlsplit(authorize[0]).query)
    assert sent["scope"] == ["snsapi_base"] and sent["response_type"] == ["code"]
    assert sent["appid"] == [sandbox_reset.credentials["WECOM_CORP_ID"]]
    assert sent["redirect_uri"] == [lead_card["url"]] and len(sent["state"][0]) == 32
    assert sandbox_reset.hits("/cgi-bin/auth/getuserinfo") == 1
    # The code is gone from the address bar; the tokens are in sessionStorage and in no URL.
    assert "code=" not in page.url and "state=" not in page.url and page.url == lead_card["url"]
    tokens = _tokens(page)
    assert tokens["staffId"] == lead_card["advisor"]
    assert not [u for u in page.requested if tokens["access"] in u or tokens["refresh"] in u]

    page.fill("#lead-note", "已电话联系，客户周六到店看车")
    page.get_by_role("button", name="标记已联系").click()
    expect(page.locator(".notice.ok")).to_have_text("已保存：已联系")
    expect(page.locator(".timeline")).to_contain_text("已电话联系，客户周六到店看车")
    lead = _read(app, lambda s: s.get(Lead, lead_card["id"]))
    assert (lead.status.value, lead.version) == ("contacted", 2) and lead.contacted_at is not None
    notes = _read(
        app,
        lambda s: s.scalars(select(Touchpoint.payload).where(Touchpoint.kind == "lead_status_changed")).all(),
    )
    assert [(n["to"], n["note"]) for n in notes] == [("contacted", "已电话联系，客户周六到店看车")]


def test_reloading_uses_the_session_not_the_spent_code_and_a_stale_code_is_never_exchanged(
    phone: Any, lead_card: dict[str, Any], sandbox_reset: Any
) -> None:
    sandbox_reset.state.sign_in_wecom("page.sales")
    page = phone()
    codes: list[str] = []
    page.on("request", lambda r: codes.extend(parse_qs(urlsplit(r.url).query).get("code", [])))
    page.goto(lead_card["url"])
    expect(page.locator(".facts")).to_contain_text("陈志强")
    assert len(codes) == 1
    page.reload()
    expect(page.locator(".facts")).to_contain_text("陈志强")
    page.go_back()  # back to the address that carried the code: it is not in the history either
    assert "code=" not in page.url
    assert sandbox_reset.hits("/connect/oauth2/authorize") == 1
    assert sandbox_reset.hits("/cgi-bin/auth/getuserinfo") == 1
    # The spent code and its state, opened again in the same WebView: ignored, the session serves.
    page.goto(f"{lead_card['url']}&code={codes[0]}&state=anything")
    expect(page.locator(".facts")).to_contain_text("陈志强")
    assert "code=" not in page.url
    # ... and in a new WebView (no stored state): refused before any exchange, no data shown.
    fresh = phone()
    fresh.goto(f"{lead_card['url']}&code={codes[0]}&state=anything")
    expect(fresh.locator(".error-text")).to_contain_text("登录校验失败")
    assert "陈志强" not in fresh.content() and _tokens(fresh) is None
    assert sandbox_reset.hits("/cgi-bin/auth/getuserinfo") == 1


def test_a_tampered_state_is_refused_and_its_code_never_used(
    phone: Any, lead_card: dict[str, Any], sandbox_reset: Any
) -> None:
    sandbox_reset.state.sign_in_wecom("page.sales")
    page = phone()

    def tamper(route: Any) -> None:
        url = urlsplit(route.request.url)
        query = parse_qs(url.query)
        query["state"] = ["forged-" + query["state"][0]]
        flat = "&".join(f"{k}={v[0]}" for k, v in query.items())
        route.continue_(url=url._replace(query=flat).geturl())

    page.route("**/connect/oauth2/authorize*", tamper)
    page.goto(lead_card["url"])
    expect(page.locator(".error-text")).to_contain_text("登录校验失败")
    expect(page.locator(".code")).to_contain_text("oauth.state_mismatch")
    assert "陈志强" not in page.content() and _tokens(page) is None
    assert "code=" not in page.url
    assert sandbox_reset.hits("/cgi-bin/auth/getuserinfo") == 0
    assert [c.used for c in sandbox_reset.state.oauth_codes.values()] == [False]
    assert not [u for u in page.requested if "/api/workbench/v1/" in u]
    # The advisor can start again: a fresh state, and this time the round trip is untouched.
    page.unroute("**/connect/oauth2/authorize*")
    page.get_by_role("button", name="重新登录").click()
    expect(page.locator(".facts")).to_contain_text("陈志强")


def test_a_staff_member_out_of_scope_sees_no_access_and_no_data(
    phone: Any, lead_card: dict[str, Any], sandbox_reset: Any
) -> None:
    sandbox_reset.state.sign_in_wecom(lead_card["far"])  # another division's advisor opens the link
    page = phone()
    page.goto(lead_card["url"])
    expect(page.locator(".error-text")).to_have_text(NOT_FOUND)
    expect(page.locator(".code")).to_contain_text("lead.not_found")
    assert "陈志强" not in page.content() and "新车意向" not in page.content()
    assert page.locator("button", has_text="标记已联系").count() == 0


def test_a_wecom_member_who_is_not_staff_is_told_so_by_the_login(
    phone: Any, lead_card: dict[str, Any], sandbox_reset: Any
) -> None:
    sandbox_reset.state.add_member("page.visitor", "访客")  # in the corp's WeCom, not in dealerloop
    sandbox_reset.state.sign_in_wecom("page.visitor")
    page = phone()
    page.goto(lead_card["url"])
    expect(page.locator(".error-text")).to_have_text("你不是本系统的员工账号，请联系管理员")
    expect(page.locator(".code")).to_contain_text("auth.staff_unknown")
    assert "陈志强" not in page.content() and _tokens(page) is None and "code=" not in page.url
    assert sandbox_reset.hits("/cgi-bin/auth/getuserinfo") == 1


def test_an_expired_access_token_is_renewed_with_the_refresh_endpoint(
    app: Any, phone: Any, lead_card: dict[str, Any], sandbox_reset: Any
) -> None:
    from backend.leads.models import Lead

    sandbox_reset.state.sign_in_wecom("page.sales")
    page = phone()
    page.goto(lead_card["url"])
    expect(page.locator(".facts")).to_contain_text("陈志强")
    before = _tokens(page)
    page.evaluate(
        f"() => {{ const t = JSON.parse(sessionStorage.getItem('{TOKENS}')); t.access = 'x.expired.y';"
        f" sessionStorage.setItem('{TOKENS}', JSON.stringify(t)); }}"
    )
    page.fill("#lead-lost-reason", "已在别家购车")
    page.get_by_role("button", name="战败").click()
    expect(page.locator(".notice.ok")).to_have_text("已保存：已战败")
    after = _tokens(page)
    assert after["access"] != before["access"] and after["refresh"] != before["refresh"]  # rotated
    assert after["name"] == "王顾问"
    assert len([u for u in page.requested if u.endswith("/api/workbench/v1/auth/refresh")]) == 1
    assert sandbox_reset.hits("/cgi-bin/auth/getuserinfo") == 1  # no second WeCom login
    lead = _read(app, lambda s: s.get(Lead, lead_card["id"]))
    assert (lead.status.value, lead.lost_reason) == ("lost", "已在别家购车")


def test_when_the_refresh_token_is_dead_too_the_page_logs_in_through_wecom_again(
    phone: Any, lead_card: dict[str, Any], sandbox_reset: Any
) -> None:
    sandbox_reset.state.sign_in_wecom("page.sales")
    page = phone()
    page.goto(lead_card["url"])
    expect(page.locator(".facts")).to_contain_text("陈志强")
    before = _tokens(page)
    page.evaluate(
        f"() => {{ const t = JSON.parse(sessionStorage.getItem('{TOKENS}'));"
        f" t.access = 'x.expired.y'; t.refresh = 'revoked-refresh-token';"
        f" sessionStorage.setItem('{TOKENS}', JSON.stringify(t)); }}"
    )
    page.reload()
    expect(page.locator(".facts")).to_contain_text("陈志强")
    assert sandbox_reset.hits("/connect/oauth2/authorize") == 2
    assert sandbox_reset.hits("/cgi-bin/auth/getuserinfo") == 2
    after = _tokens(page)
    assert after["access"] != before["access"] and after["refresh"] != "revoked-refresh-token"
    assert "code=" not in page.url


def test_consultation_card_shows_the_thread_as_text_and_the_advisor_claims_and_replies(
    app: Any,
    client: Any,
    live: str,
    phone: Any,
    tree: Any,
    make_staff: Any,
    make_customer: Any,
    member_headers: Any,
    sandbox_reset: Any,
) -> None:
    from backend.consult.models import Conversation, Message

    advisor = make_staff(tree.stores[0], "service_advisor", userid="page.service", name="赵服务")
    walk_in = make_customer(tree.stores[0], name="刘女士", openid="o-page-walkin")
    hostile = '保养多少钱？<img src=x id="injected">'
    body = {"topic": "service", "message": {"kind": "text", "text": hostile}}
    resp = client.post("/api/app/v1/consult/conversations", json=body, headers=member_headers(walk_in))
    assert resp.status_code == 201, resp.get_json()
    conversation_id = resp.get_json()["id"]
    url = _card_url(sandbox_reset, "page.service", "新咨询")
    assert url.startswith(f"{live}/workbench/consult/{conversation_id}")

    sandbox_reset.state.sign_in_wecom("page.service")
    page = phone()
    page.goto(url)
    expect(page.locator(".msg .text")).to_have_text(hostile)  # as text: no element was made of it
    assert page.locator("#injected").count() == 0
    expect(page.locator(".facts")).to_contain_text("待接待")
    page.get_by_role("button", name="接待").click()
    expect(page.locator(".notice.ok")).to_have_text("已接待")
    expect(page.locator(".facts")).to_contain_text("赵服务")
    assert _read(app, lambda s: s.get(Conversation, conversation_id).advisor_id) == advisor.id

    page.fill("#consult-reply", "您好，常规保养 680 元，明天上午可以安排。")
    page.get_by_role("button", name="发送").click()
    expect(page.locator(".notice.ok")).to_have_text("已发送")
    expect(page.locator(".msg.mine .text")).to_have_text("您好，常规保养 680 元，明天上午可以安排。")
    sent = _read(
        app,
        lambda s: s.scalars(
            select(Message.text).where(Message.conversation_id == conversation_id, Message.staff_id == advisor.id)
        ).all(),
    )
    assert sent == ["您好，常规保养 680 元，明天上午可以安排。"]
    # The owner answers; 刷新 brings it in.
    more = {"kind": "text", "text": "好的，明天上午十点到。"}
    posted = client.post(
        f"/api/app/v1/consult/conversations/{conversation_id}/messages", json=more, headers=member_headers(walk_in)
    )
    assert posted.status_code == 201, posted.get_json()
    page.get_by_role("button", name="刷新").click()
    expect(page.locator(".msg.theirs .text").last).to_have_text("好的，明天上午十点到。")


def test_handover_page_shows_its_status_and_each_customers_result(
    app: Any, db_session: Any, live: str, phone: Any, tree: Any, make_staff: Any, make_customer: Any, sandbox_reset: Any
) -> None:
    from backend.platform.db import utcnow
    from backend.wecom.ops_models import HandoverStatus, ItemStatus, WeComHandover, WeComHandoverItem

    manager = make_staff(tree.stores[0], "store_manager", userid="page.manager", name="孙店长")
    gone = make_staff(tree.stores[0], "sales_advisor", userid="page.gone", name="王离职", status="resigned")
    heir = make_staff(tree.stores[0], "sales_advisor", userid="page.heir", name="赵接替")
    make_staff(tree.stores[3], "store_manager", userid="page.far.manager")  # another division's
    customers = [make_customer(tree.stores[0], name=name) for name in ("陈先生", "吴先生", "林女士")]
    finished = utcnow()
    handover = WeComHandover(
        corp_id=manager.corp_id,
        kind="resigned",
        handover_userid=gone.wecom_userid,
        takeover_userid=heir.wecom_userid,
        handover_staff_id=gone.id,
        takeover_staff_id=heir.id,
        store_id=tree.stores[0].id,
        requested_by=manager.id,
        status=HandoverStatus.FINISHED,
        finished_at=finished,
    )
    db_session.add(handover)
    db_session.flush()
    outcomes = (ItemStatus.DONE, ItemStatus.REFUSED, ItemStatus.LIMIT)
    for n, (customer, status) in enumerate(zip(customers, outcomes, strict=True)):
        db_session.add(
            WeComHandoverItem(
                handover_id=handover.id,
                external_userid=f"wmPage{n}",
                customer_id=customer.id,
                status=status,
                takeover_time=finished - timedelta(minutes=5) if status == ItemStatus.DONE else None,
            )
        )
    db_session.commit()
    url = f"{live}/workbench/handovers/{handover.id}"

    sandbox_reset.state.sign_in_wecom("page.manager")
    page = phone()
    page.goto(url)
    expect(page.locator("h2")).to_contain_text("离职继承")
    expect(page.locator("h2")).to_contain_text("已完成")
    expect(page.locator(".facts")).to_contain_text("王离职（page.gone）")
    expect(page.locator(".facts")).to_contain_text("赵接替（page.heir）")
    rows = page.locator(".items li")
    expect(rows).to_have_count(3)
    # Failures first, each customer by name with the reason.
    expect(rows.nth(0)).to_contain_text("吴先生客户拒绝")
    expect(rows.nth(1)).to_contain_text("林女士接替顾问客户数已达上限")
    expect(rows.nth(2)).to_contain_text("陈先生接替成功")
    expect(page.locator(".facts")).to_contain_text("2 位")

    sandbox_reset.state.sign_in_wecom("page.far.manager")
    other = phone()
    other.goto(url)
    expect(other.locator(".error-text")).to_have_text(NOT_FOUND)
    expect(other.locator(".code")).to_contain_text("wecom.handover_not_found")
    assert "page.gone" not in other.content() and "吴先生" not in other.content()


def test_a_second_corps_advisor_logs_in_through_that_corps_app_and_sees_the_lead(
    app: Any,
    client: Any,
    live: str,
    db_session: Any,
    tree: Any,
    make_customer: Any,
    member_headers: Any,
    sandbox_reset: Any,
    phone: Any,
    monkeypatch: Any,
) -> None:
    """A dealer group with a second WeCom corp: its advisor's card comes through its own app,
    names that app, and the page sends them to WeCom with that corp and agent, whose code that
    app exchanges; the primary app is not asked at all."""
    from backend.wecom import service as wecom_service
    from tests.wecom.helpers import corp_staff, second_wecom_app

    with second_wecom_app(app, sandbox_reset, monkeypatch) as (second, creds):
        advisor = corp_staff(db_session, creds["WECOM_CORP_ID"], tree.stores[1], "page.b", "sales_advisor", "孙顾问")
        second.state.add_member("page.b", "孙顾问")
        owner = make_customer(tree.stores[1], name="林晓雨", openid="o-page-owner-b")
        body = {"type": "new_car", "brand": "大众", "series": "ID.6", "budget_fen": 25_000_000}
        resp = client.post("/api/app/v1/leads", json=body, headers=member_headers(owner))
        assert resp.status_code == 201, resp.get_json()
        lead = resp.get_json()
        assert lead["advisor_id"] == advisor.id
        assert not [m for m in sandbox_reset.state.app_messages if m["touser"] == "page.b"]
        url = _card_url(second, "page.b")
        with app.app_context():
            key_b = wecom_service.app_key(wecom_service.wecom_apps()[1])
        assert url.startswith(f"{live}/workbench/leads/{lead['id']}?") and parse_qs(urlsplit(url).query)["app"] == [
            key_b
        ]

        second.state.sign_in_wecom("page.b")
        page = phone()
        page.goto(url)
        expect(page.locator(".facts")).to_contain_text("林晓雨")
        expect(page.locator("h2")).to_contain_text("新车意向")
        expect(page.locator("#who")).to_have_text("孙顾问")
        authorize = [u for u in page.requested if "/connect/oauth2/authorize" in u]
        assert len(authorize) == 1 and authorize[0].startswith(second.base_url)
        sent = parse_qs(urlsplit(authorize[0]).query)
        assert (sent["appid"], sent["agentid"]) == ([creds["WECOM_CORP_ID"]], [creds["WECOM_AGENT_ID"]])
        assert sent["redirect_uri"] == [url] and page.url == url
        assert len(second.state.received("/cgi-bin/auth/getuserinfo")) == 1
        assert sandbox_reset.hits("/cgi-bin/auth/getuserinfo") == 0
        assert _tokens(page)["staffId"] == advisor.id
