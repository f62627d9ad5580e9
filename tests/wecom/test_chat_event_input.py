"""Malformed change_external_chat events (never a 500, never half written) and chats at
WeCom's size limit (500 members). The first part's tests each showed a defect (since fixed); the
others held on review."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.customers.models import Customer
from backend.touchpoints.models import Touchpoint
from backend.wecom.models import WeComGroupChat, WeComGroupMember, WeComRawEvent
from tests.wecom.helpers import post_event, run_due_jobs

OWNER = "advisor.zhang"
CHAT = "wrProbeInput01"
LISTING = "/api/workbench/v1/wecom/group-chats"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    owner = make_staff(tree.stores[0], "sales_advisor", userid=OWNER, name="张顾问")
    return {"sb": sandbox_reset, "st": sandbox_reset.state, "owner": owner, "store": tree.stores[0]}


def header(world: Any, t: int | None) -> str:
    corp = world["sb"].credentials["WECOM_CORP_ID"]
    ct = "" if t is None else f"<CreateTime>{t}</CreateTime>"
    return (
        f"<ToUserName><![CDATA[{corp}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>{ct}"
        "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_chat]]></Event>"
    )


def post_raw(client: Any, world: Any, body: str, t: int | None) -> Any:
    return post_event(client, world["sb"], f"<xml>{header(world, t)}{body}</xml>")


def counts(session: Any) -> tuple[int, int, int, int]:
    session.expire_all()
    n = lambda m, *w: session.scalar(select(func.count()).select_from(m).where(*w))  # noqa: E731
    out = (
        n(WeComGroupChat),
        n(WeComGroupMember),
        n(Touchpoint, Touchpoint.kind.in_(["group_joined", "group_left"])),
        n(Customer),
    )
    session.commit()  # end the read: the test's session is the one the next request uses
    return out


def seed_chat(client: Any, world: Any, t: int) -> None:
    st = world["st"]
    st.add_group_chat(CHAT, "车主群", OWNER, create_time=t, members=["wmSeed01"])
    resp = post_event(client, world["sb"], st.change_external_chat_xml(CHAT, "create", t))
    assert resp.data == b"success"


# =============================================================================================
# 1. Defects found on review (fixed)
# =============================================================================================


def test_repeated_chat_id_does_not_create_a_chat_named_after_a_python_list(
    client: Any, db_session: Any, world: Any
) -> None:
    """An event carrying two <ChatId> elements is malformed (which chat?). Expected: acknowledged,
    nothing written (ignored or dead-lettered). Actual: on_chat takes str(fields["ChatId"]),
    i.e. "['wrA', 'wrB']", and creates (and dismisses) a chat of that id."""
    t = int(time.time()) - 30
    before = counts(db_session)
    body = (
        "<ChatId><![CDATA[wrA]]></ChatId><ChatId><![CDATA[wrB]]></ChatId><ChangeType><![CDATA[dismiss]]></ChangeType>"
    )
    resp = post_raw(client, world, body, t)
    assert resp.status_code == 200
    run_due_jobs(client.application)
    db_session.expire_all()
    ids = list(db_session.scalars(select(WeComGroupChat.chat_id)))
    assert ids == [], ids
    assert counts(db_session) == before


def test_nested_member_item_is_not_taken_for_a_member(client: Any, db_session: Any, world: Any) -> None:
    """<MemChangeList><Item><wmGhost01>x</wmGhost01></Item></MemChangeList> is malformed.
    Expected: no member, customer or touchpoint for a tag name. Actual: _mem_change_list
    iterates the nested dict's keys, so an element NAME becomes a member: a customer
    "wmGhost01" is created with a group_joined touchpoint."""
    t = int(time.time()) - 60
    seed_chat(client, world, t - 100)
    before = counts(db_session)
    body = (
        f"<ChatId><![CDATA[{CHAT}]]></ChatId><ChangeType><![CDATA[update]]></ChangeType>"
        "<UpdateDetail><![CDATA[add_member]]></UpdateDetail><MemChangeCnt>1</MemChangeCnt>"
        "<MemChangeList><Item><wmGhost01>x</wmGhost01></Item></MemChangeList>"
    )
    assert post_raw(client, world, body, t).status_code == 200
    run_due_jobs(client.application)
    db_session.expire_all()
    assert db_session.scalars(select(WeComGroupMember).where(WeComGroupMember.userid == "wmGhost01")).all() == []
    assert counts(db_session) == before


def test_member_event_without_create_time_is_not_half_applied(client: Any, db_session: Any, world: Any) -> None:
    """An add_member without <CreateTime> (malformed) is accepted with version 0. Expected:
    either refused/ignored with nothing written, or fully applied (member active). Actual: the
    group_joined touchpoint is written but the member row is left inactive (version 0 is not
    newer than the new row's 0): a half-applied event, and the customer is not counted."""
    st = world["st"]
    t = int(time.time()) - 60
    seed_chat(client, world, t - 100)
    st.join_group_chat(CHAT, "wmNoTime01", join_time=t)
    body = (
        f"<ChatId><![CDATA[{CHAT}]]></ChatId><ChangeType><![CDATA[update]]></ChangeType>"
        "<UpdateDetail><![CDATA[add_member]]></UpdateDetail><MemChangeCnt>1</MemChangeCnt>"
        "<MemChangeList><Item><![CDATA[wmNoTime01]]></Item></MemChangeList>"
    )
    resp = post_raw(client, world, body, None)
    assert resp.status_code in (200, 400)
    run_due_jobs(client.application)
    db_session.expire_all()
    rows = db_session.scalars(select(WeComGroupMember).where(WeComGroupMember.userid == "wmNoTime01")).all()
    tps = [
        tp
        for tp in db_session.scalars(select(Touchpoint).where(Touchpoint.kind == "group_joined"))
        if tp.payload["external_userid"] == "wmNoTime01"
    ]
    applied = len(rows) == 1 and rows[0].active and len(tps) == 1
    nothing = not rows and not tps
    assert applied or nothing, (
        [(r.active, r.version) for r in rows],
        len(tps),
    )


# =============================================================================================
# 2. Held on review (regression tests)
# =============================================================================================


@pytest.mark.parametrize(
    "body",
    [
        "<ChangeType><![CDATA[create]]></ChangeType>",  # no ChatId
        f"<ChatId><![CDATA[{CHAT}]]></ChatId><ChangeType><![CDATA[archive]]></ChangeType>",  # unknown change
        f"<ChatId><![CDATA[{CHAT}]]></ChatId>",  # no ChangeType
        f"<ChatId><![CDATA[{CHAT}]]></ChatId><ChangeType>create</ChangeType><ChangeType>dismiss</ChangeType>",
    ],
    ids=["no-chatid", "unknown-change", "no-changetype", "two-changetypes"],
)
def test_malformed_chat_event_is_acknowledged_and_ignored(client: Any, db_session: Any, world: Any, body: str) -> None:
    world["st"].add_group_chat(CHAT, "群", OWNER, members=["wmM01"])
    before = counts(db_session)
    resp = post_raw(client, world, body, int(time.time()) - 5)
    assert (resp.status_code, resp.data) == (200, b"success")
    run_due_jobs(client.application)
    db_session.expire_all()
    assert counts(db_session) == before
    assert set(db_session.scalars(select(WeComRawEvent.status))) == {"ignored"}


@pytest.mark.parametrize(
    "members_xml",
    ["", "<MemChangeList></MemChangeList>", "<MemChangeList><Item></Item></MemChangeList>"],
    ids=["absent", "empty-list", "empty-item"],
)
def test_del_member_without_members_is_dead_lettered_and_writes_nothing(
    client: Any, db_session: Any, world: Any, members_xml: str
) -> None:
    t = int(time.time()) - 60
    seed_chat(client, world, t - 100)
    with world["st"].lock:
        world["st"].group_chats[CHAT]["name"] = "改名不该写入"
    before = counts(db_session)
    body = (
        f"<ChatId><![CDATA[{CHAT}]]></ChatId><ChangeType><![CDATA[update]]></ChangeType>"
        f"<UpdateDetail><![CDATA[del_member]]></UpdateDetail>{members_xml}"
    )
    assert post_raw(client, world, body, t).data == b"success"
    run_due_jobs(client.application)
    db_session.expire_all()
    raw = db_session.scalars(select(WeComRawEvent).order_by(WeComRawEvent.id.desc())).first()
    assert raw.status == "dead"
    assert counts(db_session) == before
    chat = db_session.scalars(select(WeComGroupChat)).one()
    assert (chat.name, chat.version) == ("车主群", t - 100)  # the snapshot rolled back with the event


def test_overlong_chat_id_never_500s_nor_writes(client: Any, db_session: Any, world: Any) -> None:
    before = counts(db_session)
    body = f"<ChatId><![CDATA[wr{'x' * 200}]]></ChatId><ChangeType><![CDATA[dismiss]]></ChangeType>"
    resp = post_raw(client, world, body, int(time.time()) - 5)
    assert resp.status_code == 200
    run_due_jobs(client.application)
    assert counts(db_session) == before
    db_session.expire_all()
    assert db_session.scalars(select(WeComRawEvent.status)).one() in ("dead", "ignored")


def test_non_numeric_scene_and_count_fields_do_not_break_processing(client: Any, db_session: Any, world: Any) -> None:
    t = int(time.time()) - 60
    seed_chat(client, world, t - 100)
    world["st"].join_group_chat(CHAT, "wmScene01", join_time=t)
    xml = world["st"].change_external_chat_xml(
        CHAT, "update", t, update_detail="add_member", members=["wmScene01"], JoinScene="abc", CurMemVer="s"
    )
    assert post_event(client, world["sb"], xml).data == b"success"
    db_session.expire_all()
    m = db_session.scalars(select(WeComGroupMember).where(WeComGroupMember.userid == "wmScene01")).one()
    assert m.active is True
    tp = [
        x
        for x in db_session.scalars(select(Touchpoint).where(Touchpoint.kind == "group_joined"))
        if x.payload["external_userid"] == "wmScene01"
    ]
    assert len(tp) == 1 and tp[0].payload["join_scene"] is None


def test_a_500_member_chat_is_created_and_a_499_member_add_applied(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    """WeCom's customer group limit: 500 members. A create with owner + 249 customers, then one
    add_member event listing 250 more (total 500), then a del_member of 100 at once."""
    st, sb = world["st"], world["sb"]
    t = int(time.time()) - 300
    first = [f"wmBig{i:03d}aaaaaaaaaaaaaaaaaaaaaaaaaa" for i in range(249)]
    more = [f"wmBig{i:03d}bbbbbbbbbbbbbbbbbbbbbbbbbb" for i in range(250)]
    st.add_group_chat(CHAT, "大群", OWNER, create_time=t, members=first)
    assert post_event(client, sb, st.change_external_chat_xml(CHAT, "create", t)).data == b"success"
    for ext in more:
        st.join_group_chat(CHAT, ext, join_time=t + 10, join_scene=3)
    xml = st.change_external_chat_xml(CHAT, "update", t + 10, update_detail="add_member", members=more, CurMemVer="big")
    assert post_event(client, sb, xml).data == b"success"
    gone = first[:100]
    for ext in gone:
        st.leave_group_chat(CHAT, ext)
    xml = st.change_external_chat_xml(
        CHAT, "update", t + 20, update_detail="del_member", members=gone, CurMemVer="big2"
    )
    assert post_event(client, sb, xml).data == b"success"
    run_due_jobs(client.application)
    db_session.expire_all()
    assert set(db_session.scalars(select(WeComRawEvent.status))) == {"processed"}
    active = db_session.scalar(
        select(func.count())
        .select_from(WeComGroupMember)
        .where(WeComGroupMember.active.is_(True), WeComGroupMember.member_type == 2)
    )
    assert active == 399
    kinds = Counter(
        db_session.scalars(select(Touchpoint.kind).where(Touchpoint.kind.in_(["group_joined", "group_left"])))
    )
    assert kinds == Counter({"group_joined": 499, "group_left": 100})
    listed = client.get(LISTING, headers=staff_headers(world["owner"])).get_json()
    assert listed["items"][0]["customer_count"] == 399
