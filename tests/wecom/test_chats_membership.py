"""Customer group chats (change_external_chat): encrypted events from the sandbox through the
callback URL and the job path; chats, membership, touchpoints and the groupchat/get calls the
sandbox received. Duplicates and out-of-order deliveries end in the same state."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.customers.models import CustomerIdentity, IdentityKind
from backend.touchpoints.models import Touchpoint
from backend.wecom.models import WeComGroupChat, WeComGroupMember, WeComRawEvent
from integrations.sandbox.wecom_emit import FlaskClientTransport, emit
from tests.wecom.helpers import URL, post_event, run_due_jobs, upstream_calls

OWNER = "advisor.zhang"
KNOWN = "wmDemoCustomer001"  # in the sandbox's directory, with a unionid
CHAT = "wrChatSUV01"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    owner = make_staff(tree.stores[0], "sales_advisor", userid=OWNER, name="张顾问")
    return {"sandbox": sandbox_reset, "owner": owner, "store": tree.stores[0]}


def chat_row(session: Any) -> WeComGroupChat:
    session.expire_all()
    return session.scalars(select(WeComGroupChat).where(WeComGroupChat.chat_id == CHAT)).one()


def members(session: Any) -> dict[str, tuple[bool, int]]:
    session.expire_all()
    return {m.userid: (m.active, m.member_type) for m in session.scalars(select(WeComGroupMember))}


def group_touchpoints(session: Any) -> list[tuple[str, str]]:
    session.expire_all()
    rows = session.scalars(select(Touchpoint).where(Touchpoint.kind.in_(["group_joined", "group_left"])))
    return sorted((t.kind, t.payload["external_userid"]) for t in rows)


def test_chat_lifecycle_members_touchpoints_and_upstream_calls(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sandbox"]
    st = sb.state
    t = int(time.time()) - 100
    st.add_group_chat(CHAT, "SUV车主群", OWNER, create_time=t, members=[KNOWN, "wmStranger01"])

    assert post_event(client, sb, st.change_external_chat_xml(CHAT, "create", t)).data == b"success"
    chat = chat_row(db_session)
    assert (chat.name, chat.owner_userid, chat.owner_staff_id, chat.status) == (
        "SUV车主群",
        OWNER,
        world["owner"].id,
        "active",
    )
    assert members(db_session) == {OWNER: (True, 1), KNOWN: (True, 2), "wmStranger01": (True, 2)}
    assert group_touchpoints(db_session) == [("group_joined", KNOWN), ("group_joined", "wmStranger01")]
    # the known customer is stitched by unionid; the stranger becomes a new customer
    known = db_session.scalars(select(WeComGroupMember).where(WeComGroupMember.userid == KNOWN)).one()
    ident = db_session.scalars(
        select(CustomerIdentity.value).where(
            CustomerIdentity.customer_id == known.customer_id, CustomerIdentity.kind == IdentityKind.UNIONID
        )
    ).one()
    assert ident == "oDemoUnion001"
    calls = upstream_calls(sb, "/cgi-bin/externalcontact/groupchat/get")
    assert [c["json"] for c in calls] == [{"chat_id": CHAT, "need_name": 1}]

    # a customer joins, the stranger leaves, the chat is renamed, then dismissed
    st.join_group_chat(CHAT, "wmNewcomer01", join_time=t + 10, join_scene=3)
    post_event(
        client,
        sb,
        st.change_external_chat_xml(
            CHAT, "update", t + 10, update_detail="add_member", members=["wmNewcomer01"], JoinScene=3, CurMemVer="v2"
        ),
    )
    st.leave_group_chat(CHAT, "wmStranger01")
    post_event(
        client,
        sb,
        st.change_external_chat_xml(
            CHAT, "update", t + 20, update_detail="del_member", members=["wmStranger01"], QuitScene=0, CurMemVer="v3"
        ),
    )
    with st.lock:
        st.group_chats[CHAT]["name"] = "SUV车主群（华东）"
    post_event(client, sb, st.change_external_chat_xml(CHAT, "update", t + 20, update_detail="change_name"))
    assert chat_row(db_session).name == "SUV车主群（华东）"
    assert members(db_session)["wmStranger01"] == (False, 2)
    newcomer = db_session.scalars(select(WeComGroupMember).where(WeComGroupMember.userid == "wmNewcomer01")).one()
    assert (newcomer.active, newcomer.join_scene, newcomer.join_time) == (True, 3, t + 10)

    with st.lock:
        del st.group_chats[CHAT]
    post_event(client, sb, st.change_external_chat_xml(CHAT, "dismiss", t + 30))
    chat = chat_row(db_session)
    assert chat.status == "dismissed" and chat.dismissed_at is not None
    assert not any(active for active, _ in members(db_session).values())
    assert group_touchpoints(db_session) == [
        ("group_joined", KNOWN),
        ("group_joined", "wmNewcomer01"),
        ("group_joined", "wmStranger01"),
        ("group_left", KNOWN),
        ("group_left", "wmNewcomer01"),
        ("group_left", "wmStranger01"),
    ]
    tp = db_session.scalars(select(Touchpoint).where(Touchpoint.kind == "group_joined")).first()
    assert tp.advisor_id == world["owner"].id and tp.store_id == world["store"].id and tp.channel == "wecom"
    # dismiss needs no upstream call; every event processed
    assert len(upstream_calls(sb, "/cgi-bin/externalcontact/groupchat/get")) == 4
    assert set(db_session.scalars(select(WeComRawEvent.status))) == {"processed"}


def test_a_rename_and_a_join_in_the_same_second_are_two_events(client: Any, db_session: Any, world: Any) -> None:
    st = world["sandbox"].state
    t = int(time.time())
    st.add_group_chat(CHAT, "群", OWNER, create_time=t - 5)
    st.join_group_chat(CHAT, KNOWN, join_time=t)
    post_event(client, world["sandbox"], st.change_external_chat_xml(CHAT, "update", t, update_detail="change_name"))
    post_event(
        client,
        world["sandbox"],
        st.change_external_chat_xml(CHAT, "update", t, update_detail="add_member", members=[KNOWN], CurMemVer="v9"),
    )
    db_session.expire_all()
    assert db_session.scalar(select(func.count()).select_from(WeComRawEvent)) == 2
    assert group_touchpoints(db_session) == [("group_joined", KNOWN)]


def _chat_events(st: Any, base: int) -> list[str]:
    """Three chats: creation, joins, leaves, re-joins, renames, one dismissal (final sandbox state)."""
    events = []
    for c in range(3):
        chat = f"wrBurst{c}"
        customers = [f"wmChat{c}x{i}" for i in range(6)]
        st.add_group_chat(chat, f"群{c}", OWNER, create_time=base, members=customers[:2])
        events.append(st.change_external_chat_xml(chat, "create", base))
        for i, ext in enumerate(customers[2:], start=2):
            st.join_group_chat(chat, ext, join_time=base + i)
            events.append(
                st.change_external_chat_xml(
                    chat, "update", base + i, update_detail="add_member", members=[ext], CurMemVer=f"j{i}"
                )
            )
        for i in (0, 3):
            st.leave_group_chat(chat, customers[i])
            events.append(
                st.change_external_chat_xml(
                    chat, "update", base + 10 + i, update_detail="del_member", members=[customers[i]], CurMemVer=f"l{i}"
                )
            )
        st.join_group_chat(chat, customers[3], join_time=base + 20)
        events.append(
            st.change_external_chat_xml(
                chat, "update", base + 20, update_detail="add_member", members=[customers[3]], CurMemVer="r3"
            )
        )
        with st.lock:
            st.group_chats[chat]["name"] = f"群{c}（改）"
        events.append(st.change_external_chat_xml(chat, "update", base + 21, update_detail="change_name"))
    with st.lock:
        del st.group_chats["wrBurst2"]
    events.append(st.change_external_chat_xml("wrBurst2", "dismiss", base + 30))
    return events


def _chat_snapshot(session: Any) -> dict[str, Any]:
    session.expire_all()
    chats = sorted((c.chat_id, c.name, c.status.value, c.version) for c in session.scalars(select(WeComGroupChat)))
    rows = session.execute(
        select(WeComGroupChat.chat_id, WeComGroupMember.userid, WeComGroupMember.active, WeComGroupMember.version).join(
            WeComGroupChat, WeComGroupChat.id == WeComGroupMember.chat_pk
        )
    ).all()
    tps = Counter(
        (t.kind, t.payload["chat_id"], t.payload["external_userid"])
        for t in session.scalars(select(Touchpoint).where(Touchpoint.kind.in_(["group_joined", "group_left"])))
    )
    return {"chats": chats, "members": sorted(rows), "touchpoints": tps}


def test_shuffled_chat_events_with_duplicates_end_like_in_order(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sandbox"]
    events = _chat_events(sb.state, int(time.time()) - 300)
    transport = FlaskClientTransport(client)
    report = emit(URL, events, sb.credentials, client=transport)
    assert report.acknowledged == len(events)
    expected = _chat_snapshot(db_session)
    assert expected["touchpoints"][("group_left", "wrBurst2", "wmChat2x2")] == 1  # left through the dismissal
    assert expected["touchpoints"][("group_joined", "wrBurst0", "wmChat0x3")] == 2  # joined, left, re-joined

    for table in ("wecom_group_member", "wecom_group_chat", "touchpoint", "customer_kind_count", "customer_profile"):
        db_session.execute(WeComGroupChat.metadata.tables[table].delete())
    for table in ("customer_identity", "wecom_raw_event", "outbox_job"):
        db_session.execute(WeComGroupChat.metadata.tables[table].delete())
    db_session.execute(WeComGroupChat.metadata.tables["customer"].delete())
    db_session.commit()

    report = emit(URL, events, sb.credentials, duplicates=len(events), shuffle=True, seed=11, client=transport)
    assert report.acknowledged == 2 * len(events) and not report.failed
    assert len({d.index for d in report.deliveries}) == len(events)
    run_due_jobs(client.application)
    db_session.expire_all()
    assert db_session.scalar(select(func.count()).select_from(WeComRawEvent)) == len(events)
    assert _chat_snapshot(db_session) == expected


@pytest.mark.parametrize("fault", [{"mode": "errcode", "errcode": 45009}, {"mode": "down"}])
def test_groupchat_get_failing_is_retried_and_nothing_half_applied(
    client: Any, db_session: Any, world: Any, fault: dict
) -> None:
    sb = world["sandbox"]
    st = sb.state
    t = int(time.time()) - 50
    st.add_group_chat(CHAT, "群", OWNER, create_time=t, members=[KNOWN])
    st.join_group_chat(CHAT, "wmLate01", join_time=t + 1)
    st.set_fault(service="wecom", path="/cgi-bin/externalcontact/groupchat/get", count=2, **fault)
    xml = st.change_external_chat_xml(CHAT, "update", t + 1, update_detail="add_member", members=["wmLate01"])
    assert post_event(client, sb, xml).data == b"success"
    db_session.expire_all()
    raw = db_session.scalars(select(WeComRawEvent)).one()
    assert (raw.status, raw.attempts) == ("retrying", 1)
    assert db_session.scalars(select(WeComGroupChat)).all() == [] and group_touchpoints(db_session) == []
    run_due_jobs(client.application)
    db_session.expire_all()
    assert (raw.status, raw.attempts) == ("processed", 3)
    assert chat_row(db_session).name == "群"
    assert group_touchpoints(db_session) == [("group_joined", "wmLate01")]


def test_member_change_without_member_list_is_dead_lettered_not_crashed(
    client: Any, db_session: Any, world: Any
) -> None:
    sb = world["sandbox"]
    sb.state.add_group_chat(CHAT, "群", OWNER)
    xml = sb.state.change_external_chat_xml(CHAT, "update", int(time.time()), update_detail="add_member")
    assert post_event(client, sb, xml).data == b"success"
    run_due_jobs(client.application)
    db_session.expire_all()
    raw = db_session.scalars(select(WeComRawEvent)).one()
    assert raw.status == "dead" and "MemChangeList" in raw.last_error
    assert group_touchpoints(db_session) == []


def test_group_chats_are_listed_in_the_owners_scope(
    client: Any, db_session: Any, world: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    sb = world["sandbox"]
    st = sb.state
    t = int(time.time()) - 10
    st.add_group_chat(CHAT, "SUV车主群", OWNER, create_time=t, members=[KNOWN, "wmStranger01", "advisor.li"])
    post_event(client, sb, st.change_external_chat_xml(CHAT, "create", t))
    st.add_group_chat("wrGone", "旧群", OWNER, create_time=t)
    post_event(client, sb, st.change_external_chat_xml("wrGone", "create", t))
    post_event(client, sb, st.change_external_chat_xml("wrGone", "dismiss", t + 1))
    url = "/api/workbench/v1/wecom/group-chats"

    mine = client.get(url, headers=staff_headers(world["owner"])).get_json()
    assert mine["total"] == 2
    chat = next(c for c in mine["items"] if c["chat_id"] == CHAT)
    assert (chat["name"], chat["owner_staff_id"], chat["customer_count"], chat["status"]) == (
        "SUV车主群",
        world["owner"].id,
        2,  # customers only: the advisor in the chat is not counted
        "active",
    )
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    active = client.get(url, headers=staff_headers(manager), query_string={"status": "active"}).get_json()
    assert [c["chat_id"] for c in active["items"]] == [CHAT]
    far = make_staff(tree.stores[3], "store_manager", userid="mgr3")
    assert client.get(url, headers=staff_headers(far)).get_json()["total"] == 0
    other_advisor = make_staff(tree.stores[0], "sales_advisor", userid="adv.other")
    assert client.get(url, headers=staff_headers(other_advisor)).get_json()["total"] == 0
    bad = client.get(url, headers=staff_headers(manager), query_string={"status": "archived"})
    assert (bad.status_code, bad.get_json()["code"]) == (422, "request.invalid")
