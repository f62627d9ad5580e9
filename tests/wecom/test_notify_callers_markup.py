"""Callers of the notification service — the lost-customer alert raised by a callback
carries a customer-controlled name (the WeChat nickname) into a WeCom text message, whose
content WeCom renders `<a href>` tags in."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from backend.wecom.models import AppMessage
from tests.wecom.helpers import contact_xml, post_event

ADVISOR = "advisor.zhang"
MANAGER = "advisor.li"
EXT = "wmProbeEvilName01"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any, db_session: Any) -> dict[str, Any]:
    make_staff(tree.group, "group_admin", userid="admin")
    make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR, name="张顾问")
    make_staff(tree.stores[0], "store_manager", userid=MANAGER)
    db_session.commit()
    return {"sb": sandbox_reset}


def _lose(client: Any, sb: Any, name: str) -> None:
    sb.state.add_external_contact(EXT, name, follow_userid=ADVISOR)
    t = int(time.time())
    assert post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, EXT, t - 5)).data == b"success"
    sb.state.app_messages.clear()
    assert post_event(client, sb, contact_xml(sb, "del_follow_user", ADVISOR, EXT, t)).data == b"success"


# --- defects found on review (fixed)


def test_customer_nickname_cannot_inject_a_link_into_the_alert(client: Any, db_session: Any, world: Any) -> None:
    """WeCom text content renders <a href="..."> as a tappable link. A customer who names
    themselves `<a href="https://evil.example/">…</a>` on WeChat gets a phishing link into the
    advisor's and manager's lost-customer alert; it must arrive as inert text."""
    sb = world["sb"]
    _lose(client, sb, '<a href="https://evil.example/login">点此处理</a>')
    contents = [m["text"]["content"] for m in sb.state.app_messages]
    assert len(contents) == 2, contents
    for content in contents:
        assert "<a href" not in content, content


# --- held on review


def test_lost_customer_alert_names_the_customer_and_reaches_advisor_and_manager(
    client: Any, db_session: Any, world: Any
) -> None:
    sb = world["sb"]
    _lose(client, sb, "刘女士")
    assert sorted(m["touser"] for m in sb.state.app_messages) == [MANAGER, ADVISOR]
    assert all("刘女士" in m["text"]["content"] and "张顾问" in m["text"]["content"] for m in sb.state.app_messages)
    db_session.expire_all()
    assert sorted(db_session.scalars(select(AppMessage.kind)).all()) == ["lost_customer", "lost_customer"]
