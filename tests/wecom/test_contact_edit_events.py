"""WeCom edit_external_contact (re-fetch externalcontact/get, apply remark, description,
remark_mobiles, corp tags per relation). Review probes: the first part's
each showed a defect (since fixed), the others held."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.customers.models import Customer, CustomerAdvisor, CustomerIdentity, IdentityKind
from backend.touchpoints.models import Touchpoint
from backend.wecom import service as svc
from backend.wecom.models import FriendStatus, WeComFriend, WeComFriendMobile, WeComFriendTag, WeComRawEvent, WeComTag
from tests.wecom.helpers import callback_world, contact_xml, post_event, tag_id

ZHANG = "advisor.zhang"
LI = "advisor.li"
EXT = "wmProbeEdit001"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    return callback_world(sandbox_reset, tree, make_staff)


def now() -> int:
    return int(time.time())


def friend_of(session: Any, userid: str, ext: str) -> WeComFriend | None:
    session.expire_all()
    return session.scalars(
        select(WeComFriend).where(WeComFriend.userid == userid, WeComFriend.external_userid == ext)
    ).one_or_none()


def tags_of(session: Any, friend_id: int) -> set[str]:
    session.expire_all()
    return set(session.scalars(select(WeComFriendTag.tag_id).where(WeComFriendTag.friend_id == friend_id)))


def notes(client: Any, friend: WeComFriend) -> dict[str, Any]:
    with client.application.app_context():
        return svc.friend_notes(friend)


def numbers(client: Any, session: Any, friend_id: int) -> set[str]:
    session.expire_all()
    vault = client.application.extensions["dealerloop.phone_vault"]
    rows = session.scalars(select(WeComFriendMobile).where(WeComFriendMobile.friend_id == friend_id))
    return {vault.decrypt(r.phone_encrypted) for r in rows}


def ok(resp: Any) -> None:
    assert (resp.status_code, resp.data) == (200, b"success"), resp.get_data(as_text=True)[:300]


def last_raw(session: Any) -> WeComRawEvent:
    session.expire_all()
    return session.scalars(select(WeComRawEvent).order_by(WeComRawEvent.id.desc()).limit(1)).one()


# =============================================================================================
# Defects found on review (fixed)
# =============================================================================================


def test_edit_answered_84061_for_a_relation_never_seen_opens_no_active_friend(
    client: Any, db_session: Any, world: Any
) -> None:
    """An edit_external_contact for a pair we never saw added, and WeCom answers 84061 (not an
    external contact any more). Nothing says this customer is our advisor's friend: no ACTIVE
    relation (a phantom friend counted in every active list) and no empty customer."""
    sb = world["sandbox"]
    customers_before = db_session.scalar(select(func.count()).select_from(Customer))
    db_session.commit()
    ok(post_event(client, sb, contact_xml(sb, "edit_external_contact", ZHANG, "wmGoneAlready01", now())))
    assert last_raw(db_session).status.value in ("processed", "ignored")
    friend = friend_of(db_session, ZHANG, "wmGoneAlready01")
    assert friend is None or friend.status != FriendStatus.ACTIVE, (friend.status, friend.added_at)
    assert db_session.scalar(select(func.count()).select_from(Customer)) == customers_before


def test_edit_for_a_pair_whose_advisor_is_not_in_follow_user_opens_no_active_friend(
    client: Any, db_session: Any, world: Any
) -> None:
    """The contact exists but WeCom's follow_user does not list the event's advisor (they were
    deleted meanwhile): the edit must not open an ACTIVE relation for that advisor."""
    sb = world["sandbox"]
    sb.state.add_external_contact(EXT, "赵先生", follow_userid=LI)  # only Li follows
    db_session.commit()
    ok(post_event(client, sb, contact_xml(sb, "edit_external_contact", ZHANG, EXT, now())))
    friend = friend_of(db_session, ZHANG, EXT)
    assert friend is None or friend.status != FriendStatus.ACTIVE, friend.status


def test_edit_first_for_an_unseen_relation_makes_the_customer_visible_to_its_advisor(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    """The add was never delivered (or is late); WeCom sends an edit of the relation. An ACTIVE
    relation is created from it, so the advisor who follows the customer (WeCom says so) must
    be able to open that customer in the workbench: they are the customer's advisor."""
    sb = world["sandbox"]
    sb.state.add_external_contact(EXT, "赵先生", follow_userid=ZHANG, remark="赵总")
    headers = staff_headers(world["advisor"])
    db_session.commit()
    ok(post_event(client, sb, contact_xml(sb, "edit_external_contact", ZHANG, EXT, now())))
    friend = friend_of(db_session, ZHANG, EXT)
    assert friend is not None and friend.status == FriendStatus.ACTIVE
    advisors = db_session.scalars(
        select(CustomerAdvisor.staff_id).where(CustomerAdvisor.customer_id == friend.customer_id)
    ).all()
    db_session.commit()
    resp = client.get(f"/api/workbench/v1/customers/{friend.customer_id}", headers=headers)
    assert (resp.status_code, advisors) == (200, [world["advisor"].id]), (resp.status_code, advisors)


def test_edit_whose_userid_differs_in_case_from_follow_user_still_applies_the_remark(
    client: Any, db_session: Any, world: Any
) -> None:
    """WeCom userids are case-insensitive (service.active_members says the events' spelling may
    differ in case). The event says "Advisor.Zhang", follow_user says "advisor.zhang": the
    relation is the same one (the database matches it) and its remark/tags must be applied."""
    sb = world["sandbox"]
    suv = tag_id(sb, "SUV")
    sb.state.add_external_contact(EXT, "赵先生", follow_userid=ZHANG)
    db_session.commit()
    t = now()
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, EXT, t)))
    with sb.state.lock:
        sb.state.follows[(ZHANG, EXT)]["remark"] = "赵总-换车"
        sb.state.follows[(ZHANG, EXT)]["tag_ids"] = [suv]
    ok(post_event(client, sb, contact_xml(sb, "edit_external_contact", "Advisor.Zhang", EXT, t + 1)))
    assert db_session.scalar(select(func.count()).select_from(WeComFriend)) == 1
    friend = friend_of(db_session, ZHANG, EXT)
    assert notes(client, friend)["remark"] == "赵总-换车"
    assert tags_of(db_session, friend.id) == {suv}


def test_a_nickname_changed_in_wechat_reaches_the_customer_created_from_wecom(
    client: Any, db_session: Any, world: Any
) -> None:
    """The customer exists only through WeCom (its name came from external_contact.name). The
    customer changes their WeChat nickname; the next edit re-fetches the contact: the name the
    workbench shows should follow (nobody else set it)."""
    sb = world["sandbox"]
    sb.state.add_external_contact(EXT, "旧昵称", follow_userid=ZHANG)
    db_session.commit()
    t = now()
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, EXT, t)))
    with sb.state.lock:
        sb.state.external_contacts[EXT]["name"] = "新昵称"
        sb.state.follows[(ZHANG, EXT)]["remark"] = "改了备注"
    ok(post_event(client, sb, contact_xml(sb, "edit_external_contact", ZHANG, EXT, t + 1)))
    friend = friend_of(db_session, ZHANG, EXT)
    assert notes(client, friend)["remark"] == "改了备注"  # the edit was applied
    assert db_session.get(Customer, friend.customer_id).name == "新昵称"


# =============================================================================================
# Held on review (regression tests)
# =============================================================================================


def test_edits_processed_out_of_order_keep_the_newest_remark(client: Any, db_session: Any, world: Any) -> None:
    """Edit at t+2 (remark B) processed before the edit at t+1 (remark A, already replaced in
    WeCom): the re-fetch makes the late one apply WeCom's current state, never the older remark."""
    sb = world["sandbox"]
    sb.state.add_external_contact(EXT, "赵先生", follow_userid=ZHANG)
    db_session.commit()
    t = now() - 10
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, EXT, t)))
    with sb.state.lock:
        sb.state.follows[(ZHANG, EXT)]["remark"] = "B-新备注"
    ok(post_event(client, sb, contact_xml(sb, "edit_external_contact", ZHANG, EXT, t + 2)))
    ok(post_event(client, sb, contact_xml(sb, "edit_external_contact", ZHANG, EXT, t + 1)))
    friend = friend_of(db_session, ZHANG, EXT)
    assert notes(client, friend)["remark"] == "B-新备注"
    assert friend.status == FriendStatus.ACTIVE


def test_two_advisors_each_keep_their_own_remark_and_tags(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sandbox"]
    suv, grade_a = tag_id(sb, "SUV"), tag_id(sb, "A")
    sb.state.add_external_contact(EXT, "赵先生", follow_userid=ZHANG, remark="张的备注", tags=[suv])
    sb.state.add_follow(LI, EXT, remark="李的备注", tags=[grade_a])
    db_session.commit()
    t = now()
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, EXT, t)))
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", LI, EXT, t + 1)))
    with sb.state.lock:
        sb.state.follows[(LI, EXT)]["remark"] = "李改了"
        sb.state.follows[(LI, EXT)]["tag_ids"] = []
    ok(post_event(client, sb, contact_xml(sb, "edit_external_contact", LI, EXT, t + 2)))
    zhang, li = friend_of(db_session, ZHANG, EXT), friend_of(db_session, LI, EXT)
    assert zhang.customer_id == li.customer_id
    assert notes(client, zhang)["remark"] == "张的备注" and tags_of(db_session, zhang.id) == {suv}
    assert notes(client, li)["remark"] == "李改了" and tags_of(db_session, li.id) == set()


def test_personal_and_rule_tags_are_not_taken_as_corp_tags(
    client: Any, db_session: Any, world: Any, monkeypatch: Any
) -> None:
    """follow_user.tags: type 1 corp (kept), type 2 the advisor's own (no tag of the corp: not
    carried), type 3 rule-group (not in get_corp_tag_list): carried, and known to the library
    as a rule-group tag, never as a corporate one (tests/wecom/test_strategy_tags.py)."""
    sb = world["sandbox"]
    suv = tag_id(sb, "SUV")
    sb.state.add_external_contact(EXT, "赵先生", follow_userid=ZHANG, tags=[suv])
    db_session.commit()
    real = svc.fetch_contact

    def with_other_tags(gateway: Any, ext: str) -> Any:
        detail = real(gateway, ext)
        for follow in (detail or {}).get("follow_user") or []:
            follow["tags"] = [
                *follow.get("tags", []),
                {"group_name": "", "tag_name": "爱钓鱼", "tag_id": "etPersonal0001", "type": 2},
                {"group_name": "规则组", "tag_name": "高净值", "tag_id": "etRule0000001", "type": 3},
            ]
        return detail

    monkeypatch.setattr(svc, "fetch_contact", with_other_tags)
    ok(post_event(client, sb, contact_xml(sb, "edit_external_contact", ZHANG, EXT, now())))
    friend = friend_of(db_session, ZHANG, EXT)
    assert tags_of(db_session, friend.id) == {suv, "etRule0000001"}
    rule = db_session.scalars(select(WeComTag).where(WeComTag.tag_id == "etRule0000001")).one()
    assert (rule.kind, rule.name, rule.group_name, rule.listed) == ("strategy", "高净值", "规则组", False)
    assert db_session.scalars(select(WeComTag).where(WeComTag.tag_id == "etPersonal0001")).first() is None


def test_remark_mobiles_normalised_encrypted_searchable_then_removed(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    sb = world["sandbox"]
    vault = client.application.extensions["dealerloop.phone_vault"]
    sb.state.add_external_contact(EXT, "赵先生", follow_userid=ZHANG)
    headers = staff_headers(world["manager"])
    db_session.commit()
    t = now()
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, EXT, t)))
    with sb.state.lock:
        sb.state.follows[(ZHANG, EXT)]["remark_mobiles"] = [
            "+86 139 1234 5678",
            "0086-13612345678",
            "8613712345678",
            "12345",  # not a mobile: kept as typed, no index
            "",
            "139-1234-5678",  # the first one again
        ]
    ok(post_event(client, sb, contact_xml(sb, "edit_external_contact", ZHANG, EXT, t + 1)))
    friend = friend_of(db_session, ZHANG, EXT)
    assert numbers(client, db_session, friend.id) == {"13912345678", "13612345678", "13712345678", "12345"}
    rows = db_session.scalars(select(WeComFriendMobile).where(WeComFriendMobile.friend_id == friend.id)).all()
    assert sorted(r.phone_index is None for r in rows) == [False, False, False, True]
    assert all(b"1234" not in r.phone_encrypted for r in rows)
    db_session.commit()
    search = "/api/workbench/v1/customers/search-by-phone"
    found = client.post(search, json={"phone": "136 1234 5678"}, headers=headers)
    assert [c["id"] for c in found.get_json()] == [friend.customer_id]
    assert "13612345678" not in found.get_data(as_text=True)
    with sb.state.lock:
        sb.state.follows[(ZHANG, EXT)]["remark_mobiles"] = []
    ok(post_event(client, sb, contact_xml(sb, "edit_external_contact", ZHANG, EXT, t + 2)))
    assert numbers(client, db_session, friend.id) == set()
    db_session.commit()
    assert client.post(search, json={"phone": "13612345678"}, headers=headers).get_json() == []
    assert vault.blind_index("13612345678")  # sanity


def test_edit_answered_84061_leaves_a_known_relation_as_it_was(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sandbox"]
    suv = tag_id(sb, "SUV")
    sb.state.add_external_contact(EXT, "赵先生", follow_userid=ZHANG, remark="赵总", tags=[suv])
    db_session.commit()
    t = now()
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, EXT, t)))
    with sb.state.lock:
        del sb.state.external_contacts[EXT]
    ok(post_event(client, sb, contact_xml(sb, "edit_external_contact", ZHANG, EXT, t + 1)))
    assert last_raw(db_session).status.value == "processed"
    friend = friend_of(db_session, ZHANG, EXT)
    assert friend.status == FriendStatus.ACTIVE and notes(client, friend)["remark"] == "赵总"
    assert tags_of(db_session, friend.id) == {suv}


def test_unionid_first_seen_on_an_edit_stitches_with_the_member(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sandbox"]
    login = client.post("/api/app/v1/auth/login", json={"code": sb.state.issue_login_code("o-probe-1", "uProbe1")})
    member_id = login.get_json()["customer_id"]
    sb.state.add_external_contact(EXT, "赵先生", follow_userid=ZHANG)  # no unionid yet
    db_session.commit()
    t = now()
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, EXT, t)))
    friend = friend_of(db_session, ZHANG, EXT)
    assert friend.customer_id != member_id
    with sb.state.lock:
        sb.state.external_contacts[EXT]["unionid"] = "uProbe1"
    ok(post_event(client, sb, contact_xml(sb, "edit_external_contact", ZHANG, EXT, t + 1)))
    friend = friend_of(db_session, ZHANG, EXT)
    assert friend.customer_id == member_id
    idents = set(
        db_session.execute(
            select(CustomerIdentity.kind, CustomerIdentity.value).where(CustomerIdentity.customer_id == member_id)
        ).all()
    )
    assert {(IdentityKind.EXTERNAL_USERID, EXT), (IdentityKind.UNIONID, "uProbe1")} <= idents


def test_a_redelivered_edit_is_applied_once(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sandbox"]
    sb.state.add_external_contact(EXT, "赵先生", follow_userid=ZHANG)
    db_session.commit()
    t = now()
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, EXT, t)))
    xml = contact_xml(sb, "edit_external_contact", ZHANG, EXT, t + 1)
    for _ in range(3):
        ok(post_event(client, sb, xml))
    db_session.expire_all()
    assert db_session.scalar(select(func.count()).select_from(WeComRawEvent)) == 2
    friend = friend_of(db_session, ZHANG, EXT)
    edited = db_session.scalar(
        select(func.count())
        .select_from(Touchpoint)
        .where(Touchpoint.customer_id == friend.customer_id, Touchpoint.kind == "friend_edited")
    )
    assert edited == 1


@pytest.mark.parametrize("missing", ["ExternalUserID", "UserID"])
def test_an_edit_without_its_ids_is_no_500_and_writes_nothing(
    app: Any, client: Any, db_session: Any, world: Any, missing: str
) -> None:
    from tests.wecom.helpers import run_due_jobs

    sb = world["sandbox"]
    corp = sb.credentials["WECOM_CORP_ID"]
    fields = {"ChangeType": "edit_external_contact", "UserID": ZHANG, "ExternalUserID": EXT}
    del fields[missing]
    xml = sb.state.wecom_event_xml(corp, "change_external_contact", now(), **fields)
    customers = db_session.scalar(select(func.count()).select_from(Customer))
    db_session.commit()
    resp = post_event(client, sb, xml)
    assert resp.status_code < 500
    run_due_jobs(app)
    db_session.expire_all()
    assert db_session.scalar(select(func.count()).select_from(WeComFriend)) == 0
    assert db_session.scalar(select(func.count()).select_from(Customer)) == customers
    if resp.status_code == 200:
        assert last_raw(db_session).status.value in ("ignored", "dead", "retrying")
