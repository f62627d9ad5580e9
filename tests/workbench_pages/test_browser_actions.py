"""The H5 pages' manager and assignee actions in a real browser: a manager reassigns the lead
the timeout card sent them, the lead history names its advisors, the consultation page
transfers, closes and reopens through the workbench API, and it polls for new messages while
visible (timers driven by Playwright's clock, so nothing here waits on wall time)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from backend.platform.db import commit, db, utcnow
from tests.leads.test_workbench import sweep
from tests.workbench_pages.test_browser import _card_url, _read

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture says why: a skip, or a failure in CI
    expect = None

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit, pytest.mark.browser]


def _write(app: Any, statement: Any) -> None:
    """A committed change made behind the page's back, in a session of its own."""
    with app.app_context():
        session = db.session_factory()
        try:
            session.execute(statement)
            commit(session)
        finally:
            session.close()


def _resign(app: Any, staff_id: int) -> None:
    from backend.org.models import Staff, StaffStatus

    _write(app, update(Staff).where(Staff.id == staff_id).values(status=StaffStatus.RESIGNED))


@pytest.fixture
def lead_at_store(
    client: Any, live: str, tree: Any, make_staff: Any, make_customer: Any, member_headers: Any, sandbox_reset: Any
) -> dict[str, Any]:
    """An owner's new-car enquiry at store 0, routed to 王顾问; the store has 李顾问, 吴顾问 and
    a manager too."""
    advisor = make_staff(tree.stores[0], "sales_advisor", userid="page.sales", name="王顾问")
    owner = make_customer(tree.stores[0], name="陈志强", openid="o-page-owner")
    body = {"type": "new_car", "brand": "大众", "series": "ID.4", "budget_fen": 20_000_000}
    resp = client.post("/api/app/v1/leads", json=body, headers=member_headers(owner))
    assert resp.status_code == 201, resp.get_json()
    lead = resp.get_json()
    assert lead["advisor_id"] == advisor.id
    other = make_staff(tree.stores[0], "sales_advisor", userid="page.sales2", name="李顾问")
    leaving = make_staff(tree.stores[0], "sales_advisor", userid="page.sales3", name="吴顾问")
    manager = make_staff(tree.stores[0], "store_manager", userid="page.manager", name="孙店长")
    return {
        "id": lead["id"],
        "url": f"{live}/workbench/leads/{lead['id']}",
        "advisor": advisor.id,
        "other": other.id,
        "leaving": leaving.id,
        "manager": manager.id,
    }


def test_the_manager_reassigns_the_lead_from_its_page_and_sees_the_apis_refusal(
    app: Any, phone: Any, lead_at_store: dict[str, Any], sandbox_reset: Any
) -> None:
    from backend.leads.models import Lead

    # Nobody called the owner in time: the sweep sends the manager the timeout card.
    due = utcnow() - timedelta(minutes=1)
    _write(app, update(Lead).where(Lead.id == lead_at_store["id"]).values(contact_due_at=due))
    assert sweep(app, utcnow()) == 1
    url = _card_url(sandbox_reset, "page.manager", "线索超时提醒")
    assert url.startswith(lead_at_store["url"])
    sandbox_reset.state.sign_in_wecom("page.manager")
    page = phone()
    page.goto(url)
    expect(page.locator("h2")).to_contain_text("已超时")
    expect(page.locator(".timeline")).to_contain_text("分配顾问：王顾问")  # a name, not an id
    picker = page.locator("#lead-reassign-to")
    expect(picker.locator("option")).to_have_text(["李顾问", "吴顾问", "孙店长"])
    # 吴顾问 leaves after the page listed him: the API refuses, and the page says its words.
    _resign(app, lead_at_store["leaving"])
    picker.select_option(label="吴顾问")
    page.get_by_role("button", name="改派").click()
    expect(page.locator(".outcome.error-text")).to_contain_text("lead.advisor_invalid")
    assert _read(app, lambda s: s.get(Lead, lead_at_store["id"]).advisor_id) == lead_at_store["advisor"]

    picker.select_option(label="李顾问")
    page.get_by_role("button", name="改派").click()
    expect(page.locator(".notice.ok")).to_have_text("已改派给 李顾问")
    expect(page.locator(".timeline")).to_contain_text("分配顾问：王顾问 → 李顾问")
    lead = _read(app, lambda s: s.get(Lead, lead_at_store["id"]))
    assert (lead.advisor_id, lead.routed_by) == (lead_at_store["other"], "manual")
    to_other = [m for m in sandbox_reset.state.app_messages if m["touser"] == "page.sales2"]
    assert len(to_other) == 1


def test_an_advisor_is_not_offered_the_reassign_action(
    phone: Any, lead_at_store: dict[str, Any], sandbox_reset: Any
) -> None:
    sandbox_reset.state.sign_in_wecom("page.sales")
    page = phone()
    page.goto(lead_at_store["url"])
    expect(page.locator(".timeline")).to_contain_text("分配顾问：王顾问")
    expect(page.get_by_role("button", name="标记已联系")).to_be_visible()
    assert page.get_by_role("button", name="改派").count() == 0
    assert page.locator("#lead-reassign-to").count() == 0


@pytest.fixture
def consult_at_store(
    client: Any, live: str, tree: Any, make_staff: Any, make_customer: Any, member_headers: Any, staff_headers: Any
) -> dict[str, Any]:
    """A walk-in's service question at store 0, claimed by 赵服务; 钱服务 and 周销售 work there too."""
    assignee = make_staff(tree.stores[0], "service_advisor", userid="page.service", name="赵服务")
    colleague = make_staff(tree.stores[0], "service_advisor", userid="page.service2", name="钱服务")
    sales = make_staff(tree.stores[0], "sales_advisor", userid="page.sales", name="周销售")
    walk_in = make_customer(tree.stores[0], name="刘女士", openid="o-page-walkin")
    body = {"topic": "service", "message": {"kind": "text", "text": "保养多少钱？"}}
    resp = client.post("/api/app/v1/consult/conversations", json=body, headers=member_headers(walk_in))
    assert resp.status_code == 201, resp.get_json()
    conversation_id = resp.get_json()["id"]
    return {
        "id": conversation_id,
        "url": f"{live}/workbench/consult/{conversation_id}",
        "assignee": assignee,
        "colleague": colleague.id,
        "sales": sales,
        "owner": member_headers(walk_in),
        "staff_headers": staff_headers,
    }


def _claim(client: Any, consult: dict[str, Any], who: Any) -> None:
    url = f"/api/workbench/v1/consult/conversations/{consult['id']}/claim"
    resp = client.post(url, json={}, headers=consult["staff_headers"](who))
    assert resp.status_code == 200, resp.get_json()


def test_the_assignee_transfers_the_consultation_from_its_page(
    app: Any, client: Any, phone: Any, consult_at_store: dict[str, Any], sandbox_reset: Any
) -> None:
    from backend.consult.models import Conversation

    _claim(client, consult_at_store, consult_at_store["assignee"])
    sandbox_reset.state.sign_in_wecom("page.service")
    page = phone()
    page.goto(consult_at_store["url"])
    picker = page.locator("#consult-transfer-to")
    # The store's other advisors, though an advisor's own scope lists no colleagues.
    expect(picker.locator("option")).to_have_text(["钱服务", "周销售"])
    picker.select_option(label="钱服务")
    page.get_by_role("button", name="转接").click()
    expect(page.locator(".notice.ok")).to_have_text("已转接给 钱服务")
    assert _read(app, lambda s: s.get(Conversation, consult_at_store["id"]).advisor_id) == consult_at_store["colleague"]


def test_a_manager_closes_and_reopens_the_consultation_from_its_page(
    app: Any, client: Any, phone: Any, tree: Any, make_staff: Any, consult_at_store: dict[str, Any], sandbox_reset: Any
) -> None:
    from backend.consult.models import Conversation

    make_staff(tree.stores[0], "store_manager", userid="page.manager", name="孙店长")
    _claim(client, consult_at_store, consult_at_store["assignee"])
    sandbox_reset.state.sign_in_wecom("page.manager")
    page = phone()
    page.goto(consult_at_store["url"])
    expect(page.locator("#consult-transfer-to option")).to_have_text(["钱服务", "周销售"])
    page.get_by_role("button", name="结束会话").click()
    expect(page.locator(".notice.ok")).to_have_text("会话已结束")
    assert _read(app, lambda s: s.get(Conversation, consult_at_store["id"]).status.value) == "closed"
    page.get_by_role("button", name="重新打开").click()
    expect(page.locator(".notice.ok")).to_have_text("会话已重新打开")
    assert _read(app, lambda s: s.get(Conversation, consult_at_store["id"]).status.value) == "open"


def test_an_advisor_without_the_right_is_not_offered_transfer_and_gets_the_apis_error_on_close(
    app: Any, client: Any, phone: Any, consult_at_store: dict[str, Any], sandbox_reset: Any
) -> None:
    from backend.consult.models import Conversation

    # Unclaimed: 周销售 sees it in the store's queue, may close it (the API allows) but not transfer it.
    sandbox_reset.state.sign_in_wecom("page.sales")
    page = phone()
    page.goto(consult_at_store["url"])
    expect(page.get_by_role("button", name="结束会话")).to_be_visible()
    assert page.get_by_role("button", name="转接").count() == 0
    # 赵服务 claims it meanwhile: the close is refused by the API, and the page says so.
    _claim(client, consult_at_store, consult_at_store["assignee"])
    page.get_by_role("button", name="结束会话").click()
    expect(page.locator(".outcome.error-text")).to_contain_text("consult.not_found")
    assert _read(app, lambda s: s.get(Conversation, consult_at_store["id"]).status.value) == "open"


def test_the_consultation_page_polls_for_new_messages_only_while_visible(
    app: Any, client: Any, phone: Any, consult_at_store: dict[str, Any], sandbox_reset: Any
) -> None:
    from backend.consult.models import Conversation, Message

    conv_id = consult_at_store["id"]
    _claim(client, consult_at_store, consult_at_store["assignee"])
    sandbox_reset.state.sign_in_wecom("page.service")
    page = phone()
    page.clock.install()  # the page's timers run when the test moves this clock
    page.goto(consult_at_store["url"])
    expect(page.locator(".msg .text")).to_have_text(["保养多少钱？"])

    def owner_says(text: str) -> None:
        url = f"/api/app/v1/consult/conversations/{consult_at_store['id']}/messages"
        resp = client.post(url, json={"kind": "text", "text": text}, headers=consult_at_store["owner"])
        assert resp.status_code == 201, resp.get_json()

    def polls() -> int:
        return len([u for u in page.requested if "/messages?" in u and "after_id=0" not in u])

    owner_says("明天上午可以吗？")
    newest = _read(app, lambda s: s.scalar(select(func.max(Message.id)).where(Message.conversation_id == conv_id)))

    def receipt_for_newest(response: Any) -> bool:
        # Not the receipt the page posted on opening (for the first message), which may still be
        # answering when the clock moves: the one the poll posts for the message it brought.
        if not response.url.endswith("/read"):
            return False
        return json.loads(response.request.post_data or "{}").get("up_to_message_id") == newest

    with page.expect_response(receipt_for_newest) as receipt:
        page.clock.run_for(5_000)  # the poll brings the message, and the assignee has read it
    expect(page.locator(".msg .text")).to_have_text(["保养多少钱？", "明天上午可以吗？"])
    assert polls() == 1 and receipt.value.status == 200
    assert _read(app, lambda s: s.get(Conversation, conv_id).staff_read_message_id) == newest

    # Hidden (the WebView went to the background): no request however long it stays so.
    page.evaluate(
        "() => { Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});"
        " document.dispatchEvent(new Event('visibilitychange')); }"
    )
    owner_says("十点到。")
    page.clock.run_for(120_000)
    assert polls() == 1
    expect(page.locator(".msg .text")).to_have_count(2)

    # Shown again: asks at once, and then every 5 s again.
    page.evaluate(
        "() => { Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'visible'});"
        " document.dispatchEvent(new Event('visibilitychange')); }"
    )
    page.clock.run_for(1)
    expect(page.locator(".msg .text")).to_have_text(["保养多少钱？", "明天上午可以吗？", "十点到。"])
    assert polls() == 2
