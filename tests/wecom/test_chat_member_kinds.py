"""Customer group chats: who is a customer and who is staff when WeCom gives no roster entry."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select

from backend.customers.models import Customer
from backend.touchpoints.models import Touchpoint
from backend.wecom.models import WeComGroupMember
from tests.wecom.helpers import post_event, run_due_jobs

OWNER = "advisor.zhang"
CHAT = "wrKindsChat01"


def test_staff_whose_userid_starts_with_wo_leaving_is_not_a_customer(
    client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any
) -> None:
    """A corp member leaves a customer group we have no member row for yet (the chat predates
    the integration, or the leave is processed before the join). The member is staff we know
    ("wong.wei", a Cantonese surname: the userid merely starts with "wo"). They must be recorded
    as an internal member (type 1, linked to their staff row) — not turned into a new customer
    with a group_left touchpoint on its timeline. The userid prefix is only a fallback for
    userids nobody knows."""
    sb = sandbox_reset
    st = sb.state
    make_staff(tree.stores[0], "sales_advisor", userid=OWNER, name="张顾问")
    wong = make_staff(tree.stores[0], "sales_advisor", userid="wong.wei", name="黄伟")
    t = int(time.time()) - 60
    st.add_group_chat(CHAT, "车主群", OWNER, create_time=t - 100, members=["wmSomeCustomer01"])
    xml = st.change_external_chat_xml(
        CHAT, "update", t, update_detail="del_member", members=["wong.wei"], QuitScene=0, CurMemVer="v2"
    )
    assert post_event(client, sb, xml).data == b"success"
    run_due_jobs(client.application)
    db_session.expire_all()
    member = db_session.scalars(select(WeComGroupMember).where(WeComGroupMember.userid == "wong.wei")).one()
    left = db_session.scalars(select(Touchpoint).where(Touchpoint.kind == "group_left")).all()
    assert (member.member_type, member.staff_id, member.customer_id) == (1, wong.id, None)
    assert left == []
    assert db_session.scalar(select(func.count()).select_from(Customer)) == 0
