"""The welcome names the advisor and the store whatever the case of the userid in the event."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from tests.wecom.helpers import add_store_channel, contact_xml, post_event, run_due_jobs

TEMPLATES = "/api/workbench/v1/wecom/welcome-templates"
WECOM_SPELLING = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    return {"sb": sandbox_reset, "tree": tree, "h": staff_headers(manager), "store_id": tree.stores[0].id}


def _channel(client: Any, db_session: Any, world: Any, userids: list[str], text: str) -> int:
    resp = client.post(
        TEMPLATES, headers=world["h"], json={"name": "欢迎", "store_id": world["store_id"], "text": text}
    )
    assert resp.status_code == 201, resp.get_json()
    add_store_channel(
        db_session, world["sb"], world["store_id"], "welcome-qr", userids, welcome_template_id=resp.get_json()["id"]
    )
    return resp.get_json()["id"]


def test_welcome_names_the_advisor_whatever_the_userid_case(
    client: Any, db_session: Any, world: Any, make_staff: Any
) -> None:
    """Staff row spelled "Advisor.Zhang" (CSV import), WeCom's events say "advisor.zhang". The
    event's processing finds the advisor (case-insensitive), so must the welcome's {advisor_name}."""
    sb = world["sb"]
    staff = make_staff(world["tree"].stores[0], "sales_advisor", userid="Advisor.Zhang", name="张顾问", in_wecom=False)
    staff_id = staff.id
    sb.state.add_member(WECOM_SPELLING, "张顾问")
    _channel(client, db_session, world, [WECOM_SPELLING], "我是{store_name}的{advisor_name}")
    code = sb.state.issue_welcome_code(WECOM_SPELLING, CUSTOMER)
    xml = contact_xml(
        sb, "add_external_contact", WECOM_SPELLING, CUSTOMER, int(time.time()), State="welcome-qr", WelcomeCode=code
    )
    assert post_event(client, sb, xml).data == b"success"
    run_due_jobs(client.application)
    from backend.wecom.models import WeComFriend

    db_session.expire_all()
    friend = db_session.scalars(select(WeComFriend).where(WeComFriend.external_userid == CUSTOMER)).one()
    assert friend.staff_id == staff_id  # the processing matched the advisor despite the case
    assert [m["text"]["content"] for m in sb.state.welcome_messages] == ["我是门店0-0的张顾问"]
