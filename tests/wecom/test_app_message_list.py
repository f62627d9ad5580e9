"""The admin list of app messages: a recipient filter finds failed messages too, and it pages."""

from __future__ import annotations

from typing import Any

from backend.platform.db import commit
from backend.wecom import notify
from tests.wecom.helpers import run_due_jobs

ADVISOR = "advisor.zhang"
SEND = "/cgi-bin/message/send"
MESSAGES = "/api/workbench/v1/wecom/app-messages"


def test_admin_finds_the_failed_message_of_an_advisor(
    app: Any, client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    """ "Why did advisor X not get the lead?": an admin filters the app messages by userid=X and
    sees the message to X that failed (with its error), not only those that went through."""
    admin = staff_headers(make_staff(tree.group, "group_admin"))
    make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR)
    sandbox_reset.state.set_fault("errcode", errcode=81013, service="wecom", path=SEND, count=1)
    with app.app_context():
        notify.new_lead(db_session, app.config["WECOM_CORP_ID"], "L404", ADVISOR, "陈先生", "官网")
        commit(db_session)
    run_due_jobs(app)
    everything = client.get(MESSAGES, headers=admin).get_json()
    assert [(m["touser"], m["status"]) for m in everything] == [([ADVISOR], "failed")]
    mine = client.get(MESSAGES, headers=admin, query_string={"userid": ADVISOR}).get_json()
    assert [m["status"] for m in mine] == ["failed"], mine


def test_admin_can_page_past_the_newest_messages(
    app: Any, client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    """Everything sent is recorded, so an admin can read all of it: the list pages (`page` of
    `limit` messages), not only the newest `limit` <= 200."""
    admin = staff_headers(make_staff(tree.group, "group_admin"))
    make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR)
    with app.app_context():
        for i in range(3):
            notify.weak_item(db_session, app.config["WECOM_CORP_ID"], f"P{i}", [ADVISOR], f"第{i}项")
        commit(db_session)
    second = client.get(MESSAGES, headers=admin, query_string={"page": 2, "limit": 2})
    assert second.status_code == 200, (second.status_code, second.get_json())
    first = client.get(MESSAGES, headers=admin, query_string={"page": 1, "limit": 2}).get_json()
    assert len(first) == 2 and len(second.get_json()) == 1
    assert {m["id"] for m in first}.isdisjoint(m["id"] for m in second.get_json())
