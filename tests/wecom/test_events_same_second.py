"""Two genuinely different events in the same second: both stored (the dedup key tells them apart)
and, for one relation, the same end state in either order."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from backend.wecom.models import WeComGroupMember, WeComRawEvent
from tests.wecom.helpers import count_rows, post_event

OWNER = "advisor.zhang"
CHAT = "wrChatSameSec01"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    make_staff(tree.stores[0], "sales_advisor", userid=OWNER, name="张顾问")
    return {"sandbox": sandbox_reset}


def test_two_member_changes_of_one_chat_in_one_second(client: Any, db_session: Any, world: Any) -> None:
    """Two customers join one chat in the same second, each its own add_member event (no
    CurMemVer/LastMemVer in the payload): both must be stored and applied."""
    sb = world["sandbox"]
    st = sb.state
    t = int(time.time()) - 50
    st.add_group_chat(CHAT, "车主群", OWNER, create_time=t - 10, members=[])
    assert post_event(client, sb, st.change_external_chat_xml(CHAT, "create", t - 10)).data == b"success"
    st.join_group_chat(CHAT, "wmJoinA", join_time=t, join_scene=3)
    st.join_group_chat(CHAT, "wmJoinB", join_time=t, join_scene=3)
    for ext in ("wmJoinA", "wmJoinB"):
        xml = st.change_external_chat_xml(CHAT, "update", t, update_detail="add_member", members=[ext], JoinScene=3)
        assert post_event(client, sb, xml).data == b"success"
    db_session.expire_all()
    active = {m.userid for m in db_session.scalars(select(WeComGroupMember).where(WeComGroupMember.active))}
    stored = count_rows(db_session, WeComRawEvent)
    assert {"wmJoinA", "wmJoinB"} <= active, (active, stored)


def test_an_add_and_a_loss_in_one_second_end_the_same_in_either_order(client: Any, db_session: Any, world: Any) -> None:
    """A customer adds the advisor and deletes them within one second (CreateTime is in
    seconds). Delivered in order or reversed, the relation ends the same: of two events in one
    second the removal wins."""
    from backend.wecom.models import WeComFriend

    sb = world["sandbox"]
    t = int(time.time()) - 30
    ends = {}
    for ext, order in (
        ("wmTieInOrder", ("add_external_contact", "del_follow_user")),
        ("wmTieReversed", ("del_follow_user", "add_external_contact")),
    ):
        sb.state.add_external_contact(ext, "客户", unionid=f"o{ext}")
        sb.state.add_follow(OWNER, ext)
        for change in order:
            xml = sb.state.change_external_contact_xml(sb.credentials["WECOM_CORP_ID"], change, OWNER, ext, t)
            assert post_event(client, sb, xml).data == b"success"
        db_session.expire_all()
        friend = db_session.scalars(select(WeComFriend).where(WeComFriend.external_userid == ext)).one()
        ends[ext] = friend.status.value
    assert ends["wmTieInOrder"] == ends["wmTieReversed"] == "deleted_by_customer", ends  # the removal wins
