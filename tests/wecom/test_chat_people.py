"""Who a chat's members and owner are (customers we know or not, unionids, staff
outside the directory, resigned owners, another corp) and where the touchpoints land.
The first part's tests each showed a defect (since fixed); the
others held on review."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import Customer, CustomerIdentity, IdentityKind
from backend.touchpoints.models import Touchpoint
from backend.wecom.models import WeComFriend, WeComGroupChat, WeComGroupMember
from integrations.sandbox import wecom_ops
from tests.wecom.helpers import (
    contact_xml,
    corp_staff,
    post_event,
    second_wecom_app,
    sign_post,
    upstream_calls,
)
from tests.wecom.test_directory_members import STORE_DEPARTMENT, add_listed_member, sync

OWNER = "advisor.zhang"
CHAT = "wrProbePeople01"
LISTING = "/api/workbench/v1/wecom/group-chats"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    owner = make_staff(tree.stores[0], "sales_advisor", userid=OWNER, name="张顾问")
    return {"sb": sandbox_reset, "st": sandbox_reset.state, "owner": owner, "store": tree.stores[0], "tree": tree}


def send(client: Any, sb: Any, xml: str) -> None:
    resp = post_event(client, sb, xml)
    assert (resp.status_code, resp.data) == (200, b"success")


def chat_row(session: Any, chat_id: str = CHAT, corp: str | None = None) -> WeComGroupChat:
    session.expire_all()
    stmt = select(WeComGroupChat).where(WeComGroupChat.chat_id == chat_id)
    if corp:
        stmt = stmt.where(WeComGroupChat.corp_id == corp)
    return session.scalars(stmt).one()


def member(session: Any, userid: str) -> WeComGroupMember:
    session.expire_all()
    return session.scalars(select(WeComGroupMember).where(WeComGroupMember.userid == userid)).one()


def group_tps(session: Any, ext: str | None = None) -> list[Touchpoint]:
    session.expire_all()
    rows = session.scalars(select(Touchpoint).where(Touchpoint.kind.in_(["group_joined", "group_left"])))
    return [t for t in rows if ext is None or t.payload["external_userid"] == ext]


def live(session: Any, customer_id: int) -> int:
    session.expire_all()
    while True:
        c = session.get(Customer, customer_id)
        if c.merged_into_id is None:
            return c.id
        customer_id = c.merged_into_id


# =============================================================================================
# 1. Defects found on review (fixed)
# =============================================================================================


def test_chat_of_an_owner_synced_later_is_adopted_by_the_directory_sync(
    client: Any, db_session: Any, app: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    """The chat's owner (advisor.new) is in WeCom but not yet in our directory when the chat's
    events arrive: chat.owner_staff_id is None, so neither the owner nor the store sees it.
    The directory sync then creates advisor.new at store 0. Expected (as adopt_relations does
    for friend relations): the chat becomes theirs and appears in their and their store
    manager's list. Actual: owner_staff_id stays None until the next event of that chat."""
    sb = sandbox_reset
    st = sb.state
    store = tree.stores[0]
    manager = make_staff(store, "store_manager", userid="mgr.adoptchat")
    wecom_ops.add_department(st, STORE_DEPARTMENT, store.name)
    add_listed_member(st, "advisor.new", "新顾问")
    t = int(time.time()) - 60
    st.add_group_chat(CHAT, "新顾问的群", "advisor.new", create_time=t, members=["wmNewOwnerCust01"])
    send(client, sb, st.change_external_chat_xml(CHAT, "create", t))
    assert chat_row(db_session).owner_staff_id is None
    db_session.commit()

    sync(app, db_session)
    db_session.expire_all()
    from backend.org.models import Staff

    new = db_session.scalars(select(Staff).where(Staff.wecom_userid == "advisor.new")).one()
    assert chat_row(db_session).owner_staff_id == new.id
    listed = client.get(LISTING, headers=staff_headers(manager)).get_json()
    assert [c["chat_id"] for c in listed["items"]] == [CHAT]


def test_member_first_seen_leaving_is_stitched_by_unionid_when_they_rejoin(
    client: Any, db_session: Any, world: Any
) -> None:
    """A mini-program member (openid + unionid) is in a chat that predates the integration.
    Their first event is a del_member (no roster entry: no unionid), so a WeCom-only customer is
    created for the external_userid. They rejoin later; groupchat/get now lists them with their
    unionid. Expected: the member row and the rejoin's group_joined belong to the mini-program
    member (stitched by unionid, as ensure_customer does). Actual: lock_member only resolves the
    customer when member.customer_id is None, so the unionid is never looked at again."""
    st = world["st"]
    member_customer = Customer(name="小程序会员")
    db_session.add(member_customer)
    db_session.flush()
    db_session.add_all(
        [
            CustomerIdentity(customer_id=member_customer.id, kind=IdentityKind.OPENID, value="oOpenIdProbe01"),
            CustomerIdentity(customer_id=member_customer.id, kind=IdentityKind.UNIONID, value="oUnionProbe01"),
        ]
    )
    db_session.commit()
    st.add_external_contact("wmUnionCust01", "吴先生", unionid="oUnionProbe01", follow_userid=OWNER)
    t = int(time.time()) - 120
    st.add_group_chat(CHAT, "老群", OWNER, create_time=t - 1000, members=[])
    send(
        client,
        world["sb"],
        st.change_external_chat_xml(
            CHAT, "update", t, update_detail="del_member", members=["wmUnionCust01"], CurMemVer="u1"
        ),
    )
    st.join_group_chat(CHAT, "wmUnionCust01", join_time=t + 30)
    send(
        client,
        world["sb"],
        st.change_external_chat_xml(
            CHAT, "update", t + 30, update_detail="add_member", members=["wmUnionCust01"], CurMemVer="u2"
        ),
    )

    row = member(db_session, "wmUnionCust01")
    assert live(db_session, row.customer_id) == member_customer.id
    joined = [tp for tp in group_tps(db_session, "wmUnionCust01") if tp.kind == "group_joined"]
    assert [live(db_session, tp.customer_id) for tp in joined] == [member_customer.id]


def test_staff_outside_the_directory_guessed_as_customer_is_corrected_by_the_roster(
    client: Any, db_session: Any, world: Any
) -> None:
    """ "wong.mei" is a corp member (a colleague from a department not mapped to a store, so not in
    our staff table). Her first event is a del_member (no roster entry): the "wo" prefix makes
    her a customer. She rejoins; groupchat/get lists her as type 1 (corp member). Expected: from
    then on she is a corp member (type 1, no customer) and no group_joined touchpoint is written
    on a customer timeline for her. Actual: lock_member never revisits member_type/customer_id
    of an existing row, so the roster's type is ignored and a phantom customer gets a second
    touchpoint."""
    sb, st = world["sb"], world["st"]
    st.add_member("wong.mei", "黄美")  # in WeCom's directory, not in dealerloop's staff
    t = int(time.time()) - 60
    st.add_group_chat(CHAT, "群", OWNER, create_time=t - 100, members=[])
    send(
        client,
        sb,
        st.change_external_chat_xml(
            CHAT, "update", t, update_detail="del_member", members=["wong.mei"], CurMemVer="w1"
        ),
    )
    st.join_group_chat(CHAT, "wong.mei", join_time=t + 10)
    with st.lock:
        assert [m["type"] for m in st.group_chats[CHAT]["member_list"] if m["userid"] == "wong.mei"] == [1]
    send(
        client,
        sb,
        st.change_external_chat_xml(
            CHAT, "update", t + 10, update_detail="add_member", members=["wong.mei"], CurMemVer="w2"
        ),
    )
    row = member(db_session, "wong.mei")
    assert (row.member_type, row.customer_id) == (1, None)
    assert [tp.kind for tp in group_tps(db_session, "wong.mei") if tp.kind == "group_joined"] == []


# =============================================================================================
# 2. Held on review (regression tests)
# =============================================================================================


def test_touchpoints_land_on_the_known_friend_customer_owner_and_store(
    client: Any, db_session: Any, world: Any
) -> None:
    """A customer who is already a friend (by external_userid) joins: the same customer, the
    chat owner as advisor and the owner's store."""
    sb, st = world["sb"], world["st"]
    t = int(time.time()) - 60
    send(client, sb, contact_xml(sb, "add_external_contact", OWNER, "wmDemoCustomer001", t - 500))
    db_session.expire_all()
    friend = db_session.scalars(select(WeComFriend).where(WeComFriend.external_userid == "wmDemoCustomer001")).one()
    db_session.commit()  # end the read before the next request (it uses this session)
    st.add_group_chat(CHAT, "SUV群", OWNER, create_time=t - 100, members=[])
    send(client, sb, st.change_external_chat_xml(CHAT, "create", t - 100))
    st.join_group_chat(CHAT, "wmDemoCustomer001", join_time=t)
    send(
        client,
        sb,
        st.change_external_chat_xml(
            CHAT, "update", t, update_detail="add_member", members=["wmDemoCustomer001"], CurMemVer="k"
        ),
    )
    (tp,) = group_tps(db_session, "wmDemoCustomer001")
    assert (tp.customer_id, tp.advisor_id, tp.store_id, tp.kind) == (
        friend.customer_id,
        world["owner"].id,
        world["store"].id,
        "group_joined",
    )
    assert tp.payload["chat_id"] == CHAT and tp.payload["chat_name"] == "SUV群"


def test_unknown_customer_joining_becomes_the_same_customer_when_they_add_an_advisor(
    client: Any, db_session: Any, world: Any
) -> None:
    sb, st = world["sb"], world["st"]
    t = int(time.time()) - 60
    st.add_group_chat(CHAT, "群", OWNER, create_time=t - 100, members=[])
    st.add_external_contact("wmNewbie01", "赵女士", follow_userid=OWNER)
    st.join_group_chat(CHAT, "wmNewbie01", join_time=t - 50)
    send(
        client,
        sb,
        st.change_external_chat_xml(
            CHAT, "update", t - 50, update_detail="add_member", members=["wmNewbie01"], CurMemVer="n"
        ),
    )
    row = member(db_session, "wmNewbie01")
    assert row.member_type == 2 and row.customer_id is not None
    db_session.commit()
    send(client, sb, contact_xml(sb, "add_external_contact", OWNER, "wmNewbie01", t))
    db_session.expire_all()
    friend = db_session.scalars(select(WeComFriend).where(WeComFriend.external_userid == "wmNewbie01")).one()
    assert live(db_session, friend.customer_id) == live(db_session, row.customer_id)


def test_owner_not_in_directory_leaves_touchpoints_without_advisor_and_store(
    client: Any, db_session: Any, world: Any
) -> None:
    sb, st = world["sb"], world["st"]
    t = int(time.time()) - 60
    st.add_group_chat(CHAT, "外部群主", "stranger.owner", create_time=t, members=["wmX01"])
    send(client, sb, st.change_external_chat_xml(CHAT, "create", t))
    chat = chat_row(db_session)
    assert (chat.owner_userid, chat.owner_staff_id) == ("stranger.owner", None)
    (tp,) = group_tps(db_session, "wmX01")
    assert (tp.advisor_id, tp.store_id) == (None, None)
    owner_row = member(db_session, "stranger.owner")
    assert (owner_row.member_type, owner_row.customer_id, owner_row.staff_id) == (1, None, None)


def test_change_owner_moves_attribution_of_later_joins_to_the_new_owner(
    client: Any, db_session: Any, world: Any, make_staff: Any, staff_headers: Any
) -> None:
    sb, st, tree = world["sb"], world["st"], world["tree"]
    other = make_staff(tree.stores[1], "sales_advisor", userid="advisor.wu", name="吴顾问")
    t = int(time.time()) - 60
    st.add_group_chat(CHAT, "群", OWNER, create_time=t - 100, members=["wmBefore01"])
    send(client, sb, st.change_external_chat_xml(CHAT, "create", t - 100))
    with st.lock:
        st.group_chats[CHAT]["owner"] = "advisor.wu"
    st.join_group_chat(CHAT, "advisor.wu", join_time=t - 10)
    send(client, sb, st.change_external_chat_xml(CHAT, "update", t - 5, update_detail="change_owner"))
    st.join_group_chat(CHAT, "wmAfter01", join_time=t)
    send(
        client,
        sb,
        st.change_external_chat_xml(
            CHAT, "update", t, update_detail="add_member", members=["wmAfter01"], CurMemVer="o"
        ),
    )
    chat = chat_row(db_session)
    assert (chat.owner_userid, chat.owner_staff_id) == ("advisor.wu", other.id)
    (before,) = group_tps(db_session, "wmBefore01")
    (after,) = group_tps(db_session, "wmAfter01")
    assert (before.advisor_id, before.store_id) == (world["owner"].id, world["store"].id)
    assert (after.advisor_id, after.store_id) == (other.id, tree.stores[1].id)
    mine = client.get(LISTING, headers=staff_headers(other)).get_json()
    assert [c["chat_id"] for c in mine["items"]] == [CHAT]
    assert client.get(LISTING, headers=staff_headers(world["owner"])).get_json()["total"] == 0


def test_change_owner_to_a_resigned_advisor_records_weCom_owner(
    client: Any, db_session: Any, world: Any, make_staff: Any
) -> None:
    sb, st, tree = world["sb"], world["st"], world["tree"]
    gone = make_staff(tree.stores[0], "sales_advisor", userid="advisor.gone", name="离职顾问", status="resigned")
    t = int(time.time()) - 60
    st.add_group_chat(CHAT, "群", OWNER, create_time=t - 100, members=["wmR01"])
    send(client, sb, st.change_external_chat_xml(CHAT, "create", t - 100))
    with st.lock:
        st.group_chats[CHAT]["owner"] = "advisor.gone"
    send(client, sb, st.change_external_chat_xml(CHAT, "update", t, update_detail="change_owner"))
    chat = chat_row(db_session)
    assert (chat.owner_userid, chat.owner_staff_id, chat.status) == ("advisor.gone", gone.id, "active")
    assert member(db_session, "wmR01").active is True


def test_chat_of_another_corp_is_kept_apart_and_fetched_from_that_corp(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    monkeypatch: Any,
) -> None:
    """The same chat id and owner userid in corp A and corp B: two chats, each fetched from its
    own corp, each owned by that corp's staff."""
    sb = sandbox_reset
    zhang_a = make_staff(tree.stores[0], "sales_advisor", userid=OWNER, name="张A")
    t = int(time.time()) - 60
    sb.state.add_group_chat(CHAT, "A群", OWNER, create_time=t, members=["wmCorpA01"])
    send(client, sb, sb.state.change_external_chat_xml(CHAT, "create", t))
    with second_wecom_app(app, sb, monkeypatch) as (second, creds):
        corp_b = creds["WECOM_CORP_ID"]
        zhang_b = corp_staff(db_session, corp_b, tree.stores[1], OWNER, "sales_advisor", "张B")
        second.state.add_member(OWNER, "张B")
        second.state.add_group_chat(CHAT, "B群", OWNER, create_time=t, members=["wmCorpB01"])
        sign_post(client, creds, second.state.change_external_chat_xml(CHAT, "create", t + 1))
        db_session.expire_all()
        a = chat_row(db_session, corp=zhang_a.corp_id)
        b = chat_row(db_session, corp=corp_b)
        assert (a.name, a.owner_staff_id) == ("A群", zhang_a.id)
        assert (b.name, b.owner_staff_id) == ("B群", zhang_b.id)
        # Each corp's event asked its own corp ("B群" is known to the second sandbox alone); at
        # least once: a call that timed out on a loaded machine is tried again.
        assert len(second.state.received("/cgi-bin/externalcontact/groupchat/get", "wecom")) >= 1
        assert len(upstream_calls(sb, "/cgi-bin/externalcontact/groupchat/get")) >= 1
        (tp,) = group_tps(db_session, "wmCorpB01")
        assert (tp.advisor_id, tp.store_id) == (zhang_b.id, tree.stores[1].id)
        members_b = {
            m.userid for m in db_session.scalars(select(WeComGroupMember).where(WeComGroupMember.chat_pk == b.id))
        }
        assert members_b == {OWNER, "wmCorpB01"}
