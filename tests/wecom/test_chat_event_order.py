"""WeCom change_external_chat events of one chat in the same second, out of order, and the
chat snapshot / membership / touchpoints they leave. The first part's tests each showed a defect
(since fixed); the others held on review."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from backend.touchpoints.models import Touchpoint
from backend.wecom.models import WeComGroupChat, WeComGroupMember, WeComRawEvent
from tests.wecom.helpers import post_event, run_due_jobs

OWNER = "advisor.zhang"
CHAT = "wrProbeOrder01"
LISTING = "/api/workbench/v1/wecom/group-chats"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    owner = make_staff(tree.stores[0], "sales_advisor", userid=OWNER, name="张顾问")
    return {"sb": sandbox_reset, "st": sandbox_reset.state, "owner": owner, "store": tree.stores[0], "tree": tree}


def send(client: Any, world: Any, xml: str) -> None:
    resp = post_event(client, world["sb"], xml)
    assert (resp.status_code, resp.data) == (200, b"success")


def chat_xml(world: Any, change: str, t: int, **kw: Any) -> str:
    return world["st"].change_external_chat_xml(kw.pop("chat", CHAT), change, t, **kw)


def member(session: Any, userid: str) -> WeComGroupMember:
    session.expire_all()
    return session.scalars(select(WeComGroupMember).where(WeComGroupMember.userid == userid)).one()


def chat_row(session: Any, chat_id: str = CHAT) -> WeComGroupChat:
    session.expire_all()
    return session.scalars(select(WeComGroupChat).where(WeComGroupChat.chat_id == chat_id)).one()


def touches(session: Any) -> Counter:
    session.expire_all()
    rows = session.scalars(select(Touchpoint).where(Touchpoint.kind.in_(["group_joined", "group_left"])))
    return Counter((t.kind, t.payload["external_userid"]) for t in rows)


def created_chat(client: Any, world: Any, t0: int, members: list[str]) -> None:
    world["st"].add_group_chat(CHAT, "保养车主群", OWNER, create_time=t0, members=members)
    send(client, world, chat_xml(world, "create", t0))


# =============================================================================================
# 1. Defects found on review (fixed)
# =============================================================================================


def test_join_then_dismiss_in_the_same_second_leaves_no_active_member(client: Any, db_session: Any, world: Any) -> None:
    """A customer scans the group QR and the owner dismisses the chat within the same second,
    delivered and processed in order. Expected: the dismissed chat has no active member and the
    newcomer got a group_left. Actual: dismiss_chat only closes members with version < the
    dismissal's, so the newcomer (version == dismissal) stays active in a dismissed chat."""
    st = world["st"]
    t = int(time.time()) - 60
    created_chat(client, world, t - 100, ["wmOld01"])
    st.join_group_chat(CHAT, "wmSameSec01", join_time=t, join_scene=3)
    send(
        client, world, chat_xml(world, "update", t, update_detail="add_member", members=["wmSameSec01"], CurMemVer="a")
    )
    with st.lock:
        del st.group_chats[CHAT]
    send(client, world, chat_xml(world, "dismiss", t))

    assert chat_row(db_session).status == "dismissed"
    assert member(db_session, "wmOld01").active is False
    assert member(db_session, "wmSameSec01").active is False
    assert touches(db_session)[("group_left", "wmSameSec01")] == 1


def test_dismiss_processed_before_a_same_second_join_leaves_no_active_member(
    client: Any, db_session: Any, world: Any
) -> None:
    """Same as above, delivered out of order: dismiss (T) first, then add_member (T). Expected:
    newcomer inactive with one group_left. Actual: member_joined only closes the membership when
    chat.version > version (strictly), so the newcomer becomes active in a dismissed chat."""
    st = world["st"]
    t = int(time.time()) - 60
    created_chat(client, world, t - 100, ["wmOld01"])
    st.join_group_chat(CHAT, "wmSameSec02", join_time=t)
    with st.lock:
        del st.group_chats[CHAT]
    send(client, world, chat_xml(world, "dismiss", t))
    send(
        client, world, chat_xml(world, "update", t, update_detail="add_member", members=["wmSameSec02"], CurMemVer="a")
    )

    assert chat_row(db_session).status == "dismissed"
    assert member(db_session, "wmSameSec02").active is False
    assert touches(db_session)[("group_left", "wmSameSec02")] == 1


def test_leave_and_rejoin_in_the_same_second_ends_active(client: Any, db_session: Any, world: Any) -> None:
    """A customer is removed and re-invited within one second (in order: del_member T, then
    add_member T). groupchat/get, fetched for the add, lists them (join_time T). Expected: active.
    Actual: member_joined needs version > member.version; the tie keeps the leave: inactive."""
    st = world["st"]
    t = int(time.time()) - 60
    created_chat(client, world, t - 100, ["wmBounce01"])
    st.leave_group_chat(CHAT, "wmBounce01")
    send(
        client, world, chat_xml(world, "update", t, update_detail="del_member", members=["wmBounce01"], CurMemVer="b1")
    )
    st.join_group_chat(CHAT, "wmBounce01", join_time=t)
    send(
        client, world, chat_xml(world, "update", t, update_detail="add_member", members=["wmBounce01"], CurMemVer="b2")
    )

    assert member(db_session, "wmBounce01").active is True


def test_join_and_leave_in_the_same_second_ends_inactive(client: Any, db_session: Any, world: Any) -> None:
    """A customer joins by mistake and leaves within one second (in order: add_member T, then
    del_member T); WeCom's roster no longer lists them. Expected: inactive, not counted in the
    chat's customer_count. Actual: member_left needs version > member.version: stays active."""
    st = world["st"]
    t = int(time.time()) - 60
    created_chat(client, world, t - 100, [])
    st.join_group_chat(CHAT, "wmOops01", join_time=t)
    send(client, world, chat_xml(world, "update", t, update_detail="add_member", members=["wmOops01"], CurMemVer="c1"))
    st.leave_group_chat(CHAT, "wmOops01")
    send(client, world, chat_xml(world, "update", t, update_detail="del_member", members=["wmOops01"], CurMemVer="c2"))

    assert member(db_session, "wmOops01").active is False


def test_member_joining_in_the_creation_second_gets_one_joined_touchpoint(
    client: Any, db_session: Any, world: Any
) -> None:
    """The chat is created at T and a customer scans its QR in the same second T (own add_member
    event at T). The create is processed after that join, so groupchat/get lists the newcomer
    with join_time T <= the create's CreateTime. Expected: one group_joined for the newcomer.
    Actual: two (one keyed by the create event, one by the add_member event)."""
    st = world["st"]
    t = int(time.time()) - 60
    st.add_group_chat(CHAT, "新车交付群", OWNER, create_time=t, members=["wmFirst01"])
    st.join_group_chat(CHAT, "wmQuick01", join_time=t, join_scene=3)
    send(client, world, chat_xml(world, "create", t))
    send(
        client,
        world,
        chat_xml(world, "update", t, update_detail="add_member", members=["wmQuick01"], JoinScene=3, CurMemVer="q"),
    )

    tps = touches(db_session)
    assert tps[("group_joined", "wmFirst01")] == 1
    assert tps[("group_joined", "wmQuick01")] == 1, tps


# =============================================================================================
# 2. Held on review (regression tests)
# =============================================================================================


def test_del_member_before_add_member_ends_inactive_with_both_touchpoints_once(
    client: Any, db_session: Any, world: Any
) -> None:
    st = world["st"]
    t = int(time.time()) - 60
    created_chat(client, world, t - 100, [])
    st.join_group_chat(CHAT, "wmLater01", join_time=t)
    add = chat_xml(world, "update", t, update_detail="add_member", members=["wmLater01"], CurMemVer="d1")
    st.leave_group_chat(CHAT, "wmLater01")
    leave = chat_xml(
        world, "update", t + 5, update_detail="del_member", members=["wmLater01"], QuitScene=1, CurMemVer="d2"
    )
    send(client, world, leave)
    send(client, world, add)
    send(client, world, leave)  # redelivered
    send(client, world, add)  # redelivered
    m = member(db_session, "wmLater01")
    assert (m.active, m.version) == (False, t + 5)
    tps = touches(db_session)
    assert (tps[("group_joined", "wmLater01")], tps[("group_left", "wmLater01")]) == (1, 1)
    db_session.expire_all()
    assert db_session.scalar(select(WeComRawEvent.id).where(WeComRawEvent.status != "processed")) is None


def test_leave_then_rejoin_later_is_active_with_two_joins(client: Any, db_session: Any, world: Any) -> None:
    st = world["st"]
    t = int(time.time()) - 60
    created_chat(client, world, t - 100, ["wmBack01"])
    st.leave_group_chat(CHAT, "wmBack01")
    send(client, world, chat_xml(world, "update", t, update_detail="del_member", members=["wmBack01"], CurMemVer="e1"))
    st.join_group_chat(CHAT, "wmBack01", join_time=t + 30, join_scene=2)
    send(
        client,
        world,
        chat_xml(
            world, "update", t + 30, update_detail="add_member", members=["wmBack01"], JoinScene=2, CurMemVer="e2"
        ),
    )
    m = member(db_session, "wmBack01")
    assert (m.active, m.join_time, m.join_scene) == (True, t + 30, 2)
    tps = touches(db_session)
    assert (tps[("group_joined", "wmBack01")], tps[("group_left", "wmBack01")]) == (2, 1)
    # the same customer both times
    db_session.expire_all()
    customers = {
        tp.customer_id
        for tp in db_session.scalars(select(Touchpoint).where(Touchpoint.kind.in_(["group_joined", "group_left"])))
    }
    assert customers == {m.customer_id}


def test_dismiss_before_a_late_change_name_keeps_the_chat_dismissed(client: Any, db_session: Any, world: Any) -> None:
    st = world["st"]
    t = int(time.time()) - 60
    created_chat(client, world, t - 100, ["wmStay01"])
    with st.lock:
        del st.group_chats[CHAT]
    send(client, world, chat_xml(world, "dismiss", t + 10))
    send(client, world, chat_xml(world, "update", t, update_detail="change_name"))
    chat = chat_row(db_session)
    assert (chat.status, chat.name, chat.version) == ("dismissed", "保养车主群", t + 10)
    assert member(db_session, "wmStay01").active is False
    assert touches(db_session)[("group_left", "wmStay01")] == 1


def test_late_join_processed_after_dismissal_is_closed_by_it(client: Any, db_session: Any, world: Any) -> None:
    st = world["st"]
    t = int(time.time()) - 60
    created_chat(client, world, t - 100, [])
    st.join_group_chat(CHAT, "wmLateJoin01", join_time=t)
    add = chat_xml(world, "update", t, update_detail="add_member", members=["wmLateJoin01"], CurMemVer="f")
    with st.lock:
        del st.group_chats[CHAT]
    send(client, world, chat_xml(world, "dismiss", t + 20))
    send(client, world, add)
    m = member(db_session, "wmLateJoin01")
    assert m.active is False
    tps = touches(db_session)
    assert (tps[("group_joined", "wmLateJoin01")], tps[("group_left", "wmLateJoin01")]) == (1, 1)


def test_stale_create_after_rename_keeps_the_new_name(client: Any, db_session: Any, world: Any) -> None:
    st = world["st"]
    t = int(time.time()) - 60
    st.add_group_chat(CHAT, "旧名", OWNER, create_time=t, members=["wmA01"])
    create = chat_xml(world, "create", t)
    with st.lock:
        st.group_chats[CHAT]["name"] = "新名"
        st.group_chats[CHAT]["notice"] = "周六到店保养八折"
    send(client, world, chat_xml(world, "update", t + 5, update_detail="change_name"))
    send(client, world, create)
    chat = chat_row(db_session)
    assert (chat.name, chat.notice, chat.version) == ("新名", "周六到店保养八折", t + 5)
    assert member(db_session, "wmA01").active is True
    assert touches(db_session)[("group_joined", "wmA01")] == 1


def test_rename_and_notice_in_the_same_second_both_processed(client: Any, db_session: Any, world: Any) -> None:
    st = world["st"]
    t = int(time.time()) - 60
    created_chat(client, world, t - 100, [])
    with st.lock:
        st.group_chats[CHAT]["name"] = "改名后"
    send(client, world, chat_xml(world, "update", t, update_detail="change_name"))
    with st.lock:
        st.group_chats[CHAT]["notice"] = "新公告"
    send(client, world, chat_xml(world, "update", t, update_detail="change_notice"))
    chat = chat_row(db_session)
    assert (chat.name, chat.notice) == ("改名后", "新公告")
    db_session.expire_all()
    assert len(db_session.scalars(select(WeComRawEvent)).all()) == 3


def test_failed_then_replayed_chat_event_writes_its_touchpoint_once(
    client: Any, db_session: Any, world: Any, app: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    st = world["st"]
    t = int(time.time()) - 60
    created_chat(client, world, t - 100, [])
    st.join_group_chat(CHAT, "wmReplay01", join_time=t)
    st.set_fault(service="wecom", path="/cgi-bin/externalcontact/groupchat/get", mode="errcode", errcode=45009)
    send(client, world, chat_xml(world, "update", t, update_detail="add_member", members=["wmReplay01"], CurMemVer="g"))
    run_due_jobs(app)
    db_session.expire_all()
    raw = db_session.scalars(select(WeComRawEvent).order_by(WeComRawEvent.id.desc())).first()
    assert raw.status == "dead"
    assert touches(db_session)[("group_joined", "wmReplay01")] == 0
    st.clear_faults()
    admin = make_staff(tree.group, "group_admin", userid="admin")
    resp = client.post(
        f"/api/workbench/v1/wecom/events/{raw.id}/replay", headers=staff_headers(admin), json={"reason": "upstream ok"}
    )
    assert resp.status_code in (200, 202), resp.get_json()
    run_due_jobs(app)
    db_session.expire_all()
    assert db_session.get(WeComRawEvent, raw.id).status == "processed"
    assert touches(db_session)[("group_joined", "wmReplay01")] == 1
    assert member(db_session, "wmReplay01").active is True
