"""WeCom callbacks end to end: encrypted events from the sandbox through /callbacks/wecom, the
outbox job path, and the database, touchpoints, alerts and upstream calls that result."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from sqlalchemy import func, select, text

from backend.customers.models import CustomerAdvisor, CustomerIdentity, IdentityKind
from backend.platform.jobs import OutboxJob
from backend.touchpoints.models import Touchpoint
from backend.wecom import service as svc
from backend.wecom.models import (
    AppMessage,
    FriendStatus,
    WeComAlert,
    WeComChannel,
    WeComFriend,
    WeComFriendMobile,
    WeComFriendTag,
    WeComGroupChat,
    WeComRawEvent,
    WeComTag,
    WelcomeMessage,
    WelcomeTemplate,
)
from tests.wecom.helpers import (
    URL,
    add_store_channel,
    callback_world,
    contact_xml,
    post_event,
    run_due_jobs,
    second_wecom_app,
    upstream_calls,
)

ADVISOR = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    return callback_world(sandbox_reset, tree, make_staff)


def count(session: Any, model: Any, *where: Any) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).where(*where))


def kinds(session: Any, customer_id: int) -> list[str]:
    session.expire_all()
    return sorted(session.scalars(select(Touchpoint.kind).where(Touchpoint.customer_id == customer_id)))


def friend_of(session: Any, userid: str, ext: str) -> WeComFriend:
    session.expire_all()
    return session.scalars(
        select(WeComFriend).where(WeComFriend.userid == userid, WeComFriend.external_userid == ext)
    ).one()


def now() -> int:
    return int(time.time())


def phone_vault(client: Any) -> Any:
    return client.application.extensions["dealerloop.phone_vault"]


def noted_numbers(client: Any, session: Any, friend_id: int) -> set[str]:
    """The numbers noted on a relation, decrypted."""
    session.expire_all()
    rows = session.scalars(select(WeComFriendMobile).where(WeComFriendMobile.friend_id == friend_id))
    return {phone_vault(client).decrypt(row.phone_encrypted) for row in rows}


# --- intake -------------------------------------------------------------------------------


def test_url_verification_answers_the_plaintext(client: Any, world: Any) -> None:
    params = world["sandbox"].state.wecom_verify_url_params("echo-12345")
    resp = client.get(URL, query_string=params)
    assert resp.status_code == 200
    assert resp.data == b"echo-12345"
    bad = dict(params, msg_signature="0" * 40)
    assert client.get(URL, query_string=bad).status_code == 403


def test_bad_callbacks_are_refused_and_nothing_is_stored(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sandbox"]
    xml = contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, now())
    params, body = sb.state.wecom_callback(xml)

    wrong_sig = client.post(URL, query_string=dict(params, msg_signature="a" * 40), data=body)
    assert (wrong_sig.status_code, wrong_sig.get_json()["code"]) == (403, "wecom.signature_invalid")

    start = body.index("CDATA[", body.index("<Encrypt>")) + 6
    tampered_body = body[:start] + ("Z" if body[start] != "Z" else "Y") + body[start + 1 :]
    tampered = client.post(URL, query_string=params, data=tampered_body)
    assert tampered.status_code in (400, 403)

    p2, b2 = sb.state.wecom_callback_for(xml, receive_id="wwSomeOtherCorp")
    wrong_corp = client.post(URL, query_string=p2, data=b2)
    assert (wrong_corp.status_code, wrong_corp.get_json()["code"]) == (403, "wecom.receive_id_mismatch")

    p3, b3 = sb.state.wecom_callback(xml, timestamp=str(now() - 600))
    stale = client.post(URL, query_string=p3, data=b3)
    assert (stale.status_code, stale.get_json()["code"]) == (400, "wecom.callback_stale")

    garbage = client.post(URL, query_string=params, data="<xml><Encrypt>")
    assert garbage.status_code == 400
    assert garbage.get_json()["code"] == "wecom.callback_malformed"

    # A document type is refused before any parsing, in the envelope and in the signed event:
    # no entity is ever declared, so none can expand (a "billion laughs" or an external file).
    bomb = '<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><xml><Encrypt>&b;</Encrypt></xml>'
    entity_envelope = client.post(URL, query_string=params, data=bomb)
    assert (entity_envelope.status_code, entity_envelope.get_json()["code"]) == (400, "wecom.callback_malformed")
    behind_a_bom = client.post(URL, query_string=params, data="\ufeff" + bomb)
    assert (behind_a_bom.status_code, behind_a_bom.get_json()["code"]) == (400, "wecom.callback_malformed")
    p4, b4 = sb.state.wecom_callback(
        xml.replace("<xml>", '<!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml>', 1)
    )
    entity_event = client.post(URL, query_string=p4, data=b4)
    assert (entity_event.status_code, entity_event.get_json()["code"]) == (400, "wecom.callback_malformed")
    # Nesting no event has, before any signature is checked: refused, not a RecursionError.
    deep = client.post(URL, query_string=params, data="<xml>" + "<a>" * 3000 + "</a>" * 3000 + "</xml>")
    assert (deep.status_code, deep.get_json()["code"]) == (400, "wecom.callback_malformed")

    assert count(db_session, WeComRawEvent) == 0
    assert count(db_session, OutboxJob) == 0
    assert sb.hits("/cgi-bin/externalcontact", "wecom") == 0


def test_a_document_type_inside_a_messages_text_is_text(client: Any, db_session: Any, world: Any) -> None:
    """Only a real document type is refused: `<!DOCTYPE` pasted into a message is content, and
    the event is stored like any other (a refusal would be retried by WeCom until it gave up)."""
    corp = world["sandbox"].credentials["WECOM_CORP_ID"]
    xml = (
        f"<xml><ToUserName><![CDATA[{corp}]]></ToUserName><FromUserName><![CDATA[{ADVISOR}]]></FromUserName>"
        f"<CreateTime>{now()}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        "<Content><![CDATA[<!DOCTYPE html><p>报价单</p>]]></Content><MsgId>7001</MsgId><AgentID>1</AgentID></xml>"
    )
    params, body = world["sandbox"].state.wecom_callback(xml)
    resp = client.post(URL, query_string=params, data=body)
    assert (resp.status_code, resp.data) == (200, b"success")
    stored = db_session.scalars(select(WeComRawEvent)).one()
    assert "<!DOCTYPE html>" in stored.xml and stored.event == "text"


def test_add_event_creates_customer_relation_touchpoint_tags_and_welcome(
    client: Any, db_session: Any, world: Any
) -> None:
    sb = world["sandbox"]
    template = WelcomeTemplate(
        name="门店欢迎",
        text="{customer_name}您好，我是{store_name}的{advisor_name}",
        attachments=[{"msgtype": "link", "link": {"title": "保养预约", "url": "https://example.com/b"}}],
    )
    db_session.add(template)
    db_session.flush()
    vip = sb.state.add_tag_group("来源", ["门店活码"])["tag"][0]["id"]
    add_store_channel(
        db_session,
        sb,
        world["tree"].stores[0].id,
        "store01",
        [ADVISOR],
        auto_tag_ids=[vip],
        welcome_template_id=template.id,
    )
    code = sb.state.issue_welcome_code(ADVISOR, CUSTOMER)
    xml = contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, now(), State="store01", WelcomeCode=code)

    resp = post_event(client, sb, xml)
    assert resp.status_code == 200 and resp.data == b"success"

    friend = friend_of(db_session, ADVISOR, CUSTOMER)
    assert friend.status == FriendStatus.ACTIVE
    assert friend.staff_id == world["advisor"].id
    assert friend.channel_id is not None and friend.state == "store01"
    cust = friend.customer_id
    idents = dict(
        db_session.execute(
            select(CustomerIdentity.kind, CustomerIdentity.value).where(CustomerIdentity.customer_id == cust)
        ).all()
    )
    assert idents[IdentityKind.EXTERNAL_USERID] == CUSTOMER and idents[IdentityKind.UNIONID] == "oDemoUnion001"
    assert count(db_session, CustomerAdvisor, CustomerAdvisor.customer_id == cust) == 1
    # SUV came from WeCom, the channel's auto-tag was marked through the API and recorded by us
    tags = set(db_session.scalars(select(WeComFriendTag.tag_id).where(WeComFriendTag.friend_id == friend.id)))
    assert vip in tags and len(tags) == 2
    assert sb.hits("/cgi-bin/externalcontact/mark_tag", "wecom") == 1
    assert kinds(db_session, cust) == ["friend_added", "tag_added", "tag_added", "welcome_sent"]
    sent = sb.state.welcome_messages
    assert len(sent) == 1
    assert sent[0]["text"]["content"] == "陈先生您好，我是门店0-0的张顾问"
    assert sent[0]["attachments"][0]["msgtype"] == "link"
    row = db_session.scalars(select(WelcomeMessage)).one()
    assert row.status == "sent" and row.latency_ms is not None
    assert db_session.get(WeComRawEvent, friend.id and db_session.scalars(select(WeComRawEvent.id)).one()).status == (
        "processed"
    )


@pytest.mark.parametrize("refusal", ["deleted_from_library", 84061, 40068])
def test_auto_tags_refused_by_wecom_do_not_hold_the_add_back(
    client: Any, db_session: Any, world: Any, refusal: Any
) -> None:
    """A channel's auto-tag that WeCom refuses (the customer left meanwhile, a tag deleted in the
    console) costs the tag, not the add: the relation, touchpoint and attribution are applied."""
    sb = world["sandbox"]
    vip = sb.state.add_tag_group("来源", ["门店活码"])["tag"][0]["id"]
    add_store_channel(db_session, sb, world["tree"].stores[0].id, "store01", [ADVISOR], auto_tag_ids=[vip])
    if refusal == "deleted_from_library":
        db_session.add(
            WeComTag(
                corp_id=sb.credentials["WECOM_CORP_ID"],
                tag_id=vip,
                group_id="g",
                group_name="来源",
                name="门店活码",
                deleted=True,
            )
        )
    else:
        sb.state.set_fault("errcode", errcode=refusal, service="wecom", path="/cgi-bin/externalcontact/mark_tag")
    db_session.commit()

    resp = post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, now(), State="store01"))
    assert resp.data == b"success"
    db_session.expire_all()
    raw = db_session.scalars(select(WeComRawEvent)).one()
    assert (raw.status, raw.attempts) == ("processed", 1)
    friend = friend_of(db_session, ADVISOR, CUSTOMER)
    assert friend.status == FriendStatus.ACTIVE and friend.channel_id is not None
    tags = set(db_session.scalars(select(WeComFriendTag.tag_id).where(WeComFriendTag.friend_id == friend.id)))
    assert vip not in tags
    assert kinds(db_session, friend.customer_id)[0] == "friend_added"
    assert sb.hits("/cgi-bin/externalcontact/mark_tag", "wecom") == (0 if refusal == "deleted_from_library" else 1)


@pytest.mark.parametrize("answer", [45009, -1])
def test_auto_tags_rate_limited_are_retried_with_the_event(
    client: Any, db_session: Any, world: Any, answer: int
) -> None:
    """WeCom busy or rate limiting is "not now", not "no": the add is tried again and the tag
    lands, once; the first try's writes were rolled back with it."""
    sb = world["sandbox"]
    vip = sb.state.add_tag_group("来源", ["门店活码"])["tag"][0]["id"]
    add_store_channel(db_session, sb, world["tree"].stores[0].id, "store01", [ADVISOR], auto_tag_ids=[vip])
    sb.state.set_fault("errcode", errcode=answer, service="wecom", path="/cgi-bin/externalcontact/mark_tag", count=1)
    db_session.commit()

    resp = post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, now(), State="store01"))
    assert resp.data == b"success"
    raw = db_session.scalars(select(WeComRawEvent)).one()
    assert (raw.status, raw.attempts) == ("retrying", 1)
    assert db_session.scalars(select(WeComFriend)).all() == []  # nothing half-applied

    run_due_jobs(client.application)
    db_session.expire_all()
    assert (raw.status, raw.attempts) == ("processed", 2)
    friend = friend_of(db_session, ADVISOR, CUSTOMER)
    tags = set(db_session.scalars(select(WeComFriendTag.tag_id).where(WeComFriendTag.friend_id == friend.id)))
    assert vip in tags
    assert kinds(db_session, friend.customer_id).count("friend_added") == 1
    assert sb.hits("/cgi-bin/externalcontact/mark_tag", "wecom") == 2


def test_auto_tags_still_rate_limited_on_the_last_try_cost_the_tags_not_the_add(
    client: Any, db_session: Any, world: Any, monkeypatch: Any
) -> None:
    sb = world["sandbox"]
    monkeypatch.setitem(client.application.config, "WECOM_EVENT_MAX_ATTEMPTS", 2)
    vip = sb.state.add_tag_group("来源", ["门店活码"])["tag"][0]["id"]
    add_store_channel(db_session, sb, world["tree"].stores[0].id, "store01", [ADVISOR], auto_tag_ids=[vip])
    sb.state.set_fault("errcode", errcode=45009, service="wecom", path="/cgi-bin/externalcontact/mark_tag")
    db_session.commit()

    post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, now(), State="store01"))
    run_due_jobs(client.application)
    db_session.expire_all()
    raw = db_session.scalars(select(WeComRawEvent)).one()
    assert (raw.status, raw.attempts) == ("processed", 2)
    friend = friend_of(db_session, ADVISOR, CUSTOMER)
    assert friend.status == FriendStatus.ACTIVE
    tags = set(db_session.scalars(select(WeComFriendTag.tag_id).where(WeComFriendTag.friend_id == friend.id)))
    assert vip not in tags
    assert sb.hits("/cgi-bin/externalcontact/mark_tag", "wecom") == 2


def test_a_loss_applied_before_its_add_is_stitched_to_the_member_by_unionid(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    """The loss came first (the add's first try failed): it stored the contact without knowing
    who it is. The add then learns the unionid of a mini-program member: one customer, by an
    audited merge, not two."""
    from backend.customers.models import Customer, CustomerMerge

    sb = world["sandbox"]
    member = Customer(name="陈先生")
    db_session.add(member)
    db_session.flush()
    db_session.add(CustomerIdentity(customer_id=member.id, kind=IdentityKind.UNIONID, value="oDemoUnion001"))
    db_session.commit()
    member_id = member.id
    t = now()
    assert post_event(client, sb, contact_xml(sb, "del_follow_user", ADVISOR, CUSTOMER, t + 5)).data == b"success"
    early = friend_of(db_session, ADVISOR, CUSTOMER).customer_id
    assert early != member_id
    assert post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, t)).data == b"success"

    db_session.expire_all()
    friend = friend_of(db_session, ADVISOR, CUSTOMER)
    assert friend.customer_id == member_id
    assert friend.status == FriendStatus.DELETED_BY_CUSTOMER  # the newer event's state stands
    merge = db_session.scalars(select(CustomerMerge)).one()
    assert (merge.source_id, merge.target_id) == (early, member_id)
    assert db_session.get(Customer, early).merged_into_id == member_id
    idents = set(
        db_session.execute(
            select(CustomerIdentity.kind, CustomerIdentity.value).where(CustomerIdentity.customer_id == member_id)
        ).all()
    )
    assert {(IdentityKind.UNIONID, "oDemoUnion001"), (IdentityKind.EXTERNAL_USERID, CUSTOMER)} <= idents
    assert {"friend_added", "friend_deleted_by_customer"} <= set(kinds(db_session, member_id))

    # A group admin undoes the merge: the next event naming the unionid does not merge again.
    resp = client.post(f"/api/workbench/v1/customer-merges/{merge.id}/reverse", headers=staff_headers(world["admin"]))
    assert resp.status_code == 200, resp.get_json()
    edit = contact_xml(sb, "edit_external_contact", ADVISOR, CUSTOMER, t + 10)
    assert post_event(client, sb, edit).data == b"success"
    db_session.expire_all()
    assert db_session.scalar(select(func.count()).select_from(CustomerMerge)) == 1
    assert db_session.get(Customer, early).merged_into_id is None


def test_same_event_three_times_is_applied_once(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sandbox"]
    xml = contact_xml(sb, "del_follow_user", ADVISOR, CUSTOMER, now())
    for _ in range(3):
        resp = post_event(client, sb, xml)  # a fresh nonce and signature each time, as WeCom does
        assert resp.status_code == 200 and resp.data == b"success"
    assert count(db_session, WeComRawEvent) == 1
    friend = friend_of(db_session, ADVISOR, CUSTOMER)
    assert friend.status == FriendStatus.DELETED_BY_CUSTOMER
    assert kinds(db_session, friend.customer_id) == ["friend_deleted_by_customer", "lost_customer_alerted"]
    assert count(db_session, WeComAlert) == 1
    assert sorted(m["touser"] for m in sb.state.app_messages) == ["advisor.li", ADVISOR]  # one each


def test_lost_customer_alert_goes_to_advisor_and_manager_and_readd_leaves_the_list(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    sb = world["sandbox"]
    t = now()
    post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, t))
    post_event(client, sb, contact_xml(sb, "del_follow_user", ADVISOR, CUSTOMER, t + 1))
    # One message per person (a manager at their rate limit holds back no advisor's alert),
    # listed under its kind.
    assert sorted(m["touser"] for m in sb.state.app_messages) == ["advisor.li", ADVISOR]
    assert all("陈先生" in m["text"]["content"] for m in sb.state.app_messages)
    records = db_session.scalars(select(AppMessage)).all()
    assert [(r.status, r.kind) for r in records] == [("sent", "lost_customer")] * 2 and all(r.msgid for r in records)

    headers = staff_headers(world["manager"])
    lost = client.get("/api/workbench/v1/wecom/lost-customers", headers=headers).get_json()
    assert lost["total"] == 1
    advisor_view = client.get("/api/workbench/v1/wecom/lost-customers", headers=staff_headers(world["advisor"]))
    assert advisor_view.get_json()["total"] == 1

    post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, t + 2))
    assert friend_of(db_session, ADVISOR, CUSTOMER).status == FriendStatus.ACTIVE
    assert client.get("/api/workbench/v1/wecom/lost-customers", headers=headers).get_json()["total"] == 0
    assert len(sb.state.app_messages) == 2  # the re-add sends nothing


def test_delete_by_transfer_is_a_handover_not_a_loss(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sandbox"]
    post_event(
        client, sb, contact_xml(sb, "del_external_contact", ADVISOR, CUSTOMER, now(), Source="DELETE_BY_TRANSFER")
    )
    friend = friend_of(db_session, ADVISOR, CUSTOMER)
    assert friend.status == FriendStatus.TRANSFERRED
    assert kinds(db_session, friend.customer_id) == ["friend_transferred"]
    assert count(db_session, WeComAlert) == 0 and sb.state.app_messages == []

    post_event(client, sb, contact_xml(sb, "del_external_contact", "advisor.li", CUSTOMER, now()))
    assert friend_of(db_session, "advisor.li", CUSTOMER).status == FriendStatus.DELETED_BY_ADVISOR
    assert count(db_session, WeComAlert) == 1


def test_transfer_fail_is_recorded_and_the_manager_alerted(
    client: Any, db_session: Any, world: Any, make_staff: Any
) -> None:
    """transfer_fail's UserID is the takeover whose takeover failed: the customer stays with the
    advisor who was handing them over, and no relation of the takeover's is opened. The failure
    is recorded on a closed record of the takeover's relation (not on whichever relation of the
    customer happens to be open when the event is processed: that depends on the order)."""
    sb = world["sandbox"]
    make_staff(world["tree"].stores[0], "sales_advisor", userid="advisor.wang", name="王顾问")
    post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, now() - 60))
    sb.state.app_messages.clear()
    post_event(
        client, sb, contact_xml(sb, "transfer_fail", "advisor.wang", CUSTOMER, now(), FailReason="customer_refused")
    )
    record = friend_of(db_session, "advisor.wang", CUSTOMER)
    assert record.status == FriendStatus.CLOSED  # a record for the alert, not a friendship
    keeper = friend_of(db_session, ADVISOR, CUSTOMER)
    assert keeper.status == FriendStatus.ACTIVE
    tp = db_session.scalars(select(Touchpoint).where(Touchpoint.kind == "transfer_failed")).one()
    assert tp.payload["reason"] == "customer_refused" and tp.customer_id == keeper.customer_id
    alert = db_session.scalars(select(WeComAlert)).one()
    assert (alert.kind, alert.friend_id) == ("transfer_failed", record.id)
    assert [m["touser"] for m in sb.state.app_messages] == ["advisor.li"]
    assert "转接失败" in sb.state.app_messages[0]["text"]["content"]


def test_transfer_fail_for_a_customer_we_do_not_know_opens_no_friendship(
    client: Any, db_session: Any, world: Any
) -> None:
    sb = world["sandbox"]
    post_event(
        client, sb, contact_xml(sb, "transfer_fail", ADVISOR, CUSTOMER, now(), FailReason="customer_limit_exceed")
    )
    record = friend_of(db_session, ADVISOR, CUSTOMER)
    assert record.status == FriendStatus.CLOSED  # a record for the alert, not a friendship
    assert count(db_session, Touchpoint, Touchpoint.kind == "transfer_failed") == 1
    assert [m["touser"] for m in sb.state.app_messages] == ["advisor.li"]


def test_unknown_advisor_and_unknown_customer_are_created_not_crashed(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sandbox"]
    post_event(client, sb, contact_xml(sb, "add_external_contact", "not.in.dealerloop", "wmNobodyKnows", now()))
    friend = friend_of(db_session, "not.in.dealerloop", "wmNobodyKnows")
    assert friend.staff_id is None and friend.status == FriendStatus.ACTIVE
    assert kinds(db_session, friend.customer_id) == ["friend_added"]
    assert db_session.scalars(select(WeComRawEvent.status)).one() == "processed"
    # an event type we do not act on is kept, marked ignored
    xml = sb.state.wecom_event_xml(sb.credentials["WECOM_CORP_ID"], "msgaudit_notify", now(), AgentID="1000002")
    assert post_event(client, sb, xml).status_code == 200
    assert count(db_session, WeComRawEvent, WeComRawEvent.status == "ignored") == 1
    # a group chat WeCom no longer knows (groupchat/get answers 40050) is kept as a bare row
    xml = sb.state.wecom_event_xml(
        sb.credentials["WECOM_CORP_ID"], "change_external_chat", now(), ChatId="wrUnknown", ChangeType="create"
    )
    assert post_event(client, sb, xml).status_code == 200
    assert count(db_session, WeComRawEvent, WeComRawEvent.status == "processed") == 2
    chat = db_session.scalars(select(WeComGroupChat)).one()
    assert (chat.chat_id, chat.name, chat.status) == ("wrUnknown", None, "active")


def test_edit_applies_remark_and_tags_and_tag_events_sync_the_library(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sandbox"]
    t = now()
    post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, t))
    friend = friend_of(db_session, ADVISOR, CUSTOMER)
    old_tags = set(db_session.scalars(select(WeComFriendTag.tag_id).where(WeComFriendTag.friend_id == friend.id)))
    group = sb.state.add_tag_group("到店", ["已到店"])
    new_tag = group["tag"][0]["id"]
    with sb.state.lock:
        follow = sb.state.follows[(ADVISOR, CUSTOMER)]
        follow["tag_ids"] = [new_tag]
        follow["remark"] = "陈总"
        follow["description"] = "老客户，太太手机 13912345678"
        follow["remark_mobiles"] = ["13800000000"]
    post_event(client, sb, contact_xml(sb, "edit_external_contact", ADVISOR, CUSTOMER, t + 1))
    friend = friend_of(db_session, ADVISOR, CUSTOMER)
    with client.application.app_context():
        assert svc.friend_notes(friend) == {"remark": "陈总", "description": "老客户，太太手机 13912345678"}
    # The notes are encrypted at rest: the number typed in them is nowhere in the row.
    row = db_session.execute(text("SELECT * FROM wecom_friend WHERE id = :id"), {"id": friend.id}).one()
    assert not any(b"13912345678" in (v if isinstance(v, bytes) else str(v).encode()) for v in row)
    assert noted_numbers(client, db_session, friend.id) == {"13800000000"}
    tags = set(db_session.scalars(select(WeComFriendTag.tag_id).where(WeComFriendTag.friend_id == friend.id)))
    assert tags == {new_tag}
    assert kinds(db_session, friend.customer_id).count("tag_removed") == len(old_tags)

    corp = sb.credentials["WECOM_CORP_ID"]
    xml = sb.state.wecom_event_xml(
        corp,
        "change_external_tag",
        t + 2,
        Id=group["group_id"],
        TagType="tag_group",
        ChangeType="create",
        StrategyId="0",
    )
    post_event(client, sb, xml)
    names = set(db_session.scalars(select(WeComTag.name).where(WeComTag.deleted.is_(False))))
    assert {"SUV", "A", "已到店"} <= names
    with sb.state.lock:
        del sb.state.tag_groups[group["group_id"]]
    post_event(
        client,
        sb,
        sb.state.wecom_event_xml(
            corp, "change_external_tag", t + 3, Id=group["group_id"], TagType="tag_group", ChangeType="delete"
        ),
    )
    assert count(db_session, WeComTag, WeComTag.name == "已到店", WeComTag.deleted.is_(True)) == 1


def test_welcome_code_already_used_is_recorded_not_retried(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sandbox"]
    template = WelcomeTemplate(name="w", text="hi {customer_name}")
    db_session.add(template)
    db_session.flush()
    db_session.add(
        WeComChannel(
            corp_id=sb.credentials["WECOM_CORP_ID"],
            name="c",
            kind="campaign",
            state="camp1",
            userids=[ADVISOR],
            welcome_template_id=template.id,
        )
    )
    db_session.commit()
    code = sb.state.issue_welcome_code(ADVISOR, CUSTOMER)
    assert sb.state.consume_welcome_code(code)[0] == "ok"  # another app sent first
    post_event(
        client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, now(), State="camp1", WelcomeCode=code)
    )
    run_due_jobs(client.application)
    row = db_session.scalars(select(WelcomeMessage)).one()
    assert (row.status, row.errcode) == ("already_sent", 41051)
    assert sb.hits("/cgi-bin/externalcontact/send_welcome_msg", "wecom") == 1
    assert count(db_session, OutboxJob, OutboxJob.name == "wecom.send_welcome", OutboxJob.status == "done") == 1


def test_two_apps_each_selected_by_corp_and_agent_with_its_own_credentials(
    app: Any, client: Any, db_session: Any, world: Any, monkeypatch: Any
) -> None:
    from integrations.sandbox.wecom_emit import sign_event

    sb = world["sandbox"]
    with second_wecom_app(app, sb, monkeypatch) as (second, creds2):
        second.state.add_member("adv.two", "二号顾问")
        second.state.add_external_contact("wmSecondCorp1", "王先生", follow_userid="adv.two")

        t = now()
        assert post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, t)).data == (
            b"success"
        )
        xml2 = second.state.change_external_contact_xml(
            creds2["WECOM_CORP_ID"], "add_external_contact", "adv.two", "wmSecondCorp1", t
        )
        params, body = sign_event(xml2, creds2)
        resp = client.post(URL, query_string=params, data=body, content_type="text/xml")
        assert (resp.status_code, resp.data) == (200, b"success")

        db_session.expire_all()
        raws = {r.corp_id: r for r in db_session.scalars(select(WeComRawEvent))}
        assert set(raws) == {sb.credentials["WECOM_CORP_ID"], creds2["WECOM_CORP_ID"]}
        assert raws[creds2["WECOM_CORP_ID"]].agent_id == "1000009"
        assert {r.status for r in raws.values()} == {"processed"}
        second_friend = friend_of(db_session, "adv.two", "wmSecondCorp1")
        assert second_friend.corp_id == creds2["WECOM_CORP_ID"] and second_friend.staff_id is None
        # each app's calls went to its own WeCom, with its own secret
        assert [c["query"]["external_userid"] for c in upstream_calls(second, "/cgi-bin/externalcontact/get")] == [
            "wmSecondCorp1"
        ]
        assert [c["query"]["corpsecret"] for c in second.state.received("/cgi-bin/gettoken")] == ["S" * 43]
        assert "wmSecondCorp1" not in [
            c["query"].get("external_userid") for c in sb.state.received("/cgi-bin/externalcontact/get")
        ]

        # app 2's event signed with app 1's token, or naming an agent we do not have: refused
        forged_params, forged_body = sign_event(
            xml2, dict(creds2, WECOM_CALLBACK_TOKEN=sb.credentials["WECOM_CALLBACK_TOKEN"])
        )
        forged = client.post(URL, query_string=forged_params, data=forged_body, content_type="text/xml")
        assert (forged.status_code, forged.get_json()["code"]) == (403, "wecom.signature_invalid")
        p3, b3 = sign_event(xml2, dict(creds2, WECOM_AGENT_ID="1000777"))
        wrong_agent = client.post(URL, query_string=p3, data=b3, content_type="text/xml")
        assert (wrong_agent.status_code, wrong_agent.get_json()["code"]) == (403, "wecom.receive_id_mismatch")
        assert count(db_session, WeComRawEvent) == 2


def test_an_event_naming_no_agent_is_verified_by_whichever_app_of_its_corp_signed_it(
    app: Any, client: Any, db_session: Any, world: Any, monkeypatch: Any
) -> None:
    """Two apps of one corp, and an envelope without AgentID (customer-contact callbacks may
    name none): the app whose token verifies the signature takes it (the first app of the corp
    used to be the only one tried, refusing the second's events with 403)."""
    from integrations.sandbox.wecom_emit import sign_event

    sb = world["sandbox"]
    with second_wecom_app(app, sb, monkeypatch, corp_id=sb.credentials["WECOM_CORP_ID"]) as (_second, creds2):
        xml = contact_xml(sb, "del_follow_user", ADVISOR, CUSTOMER, now())
        params, body = sign_event(xml, creds2)
        body = re.sub(r"<AgentID>.*?</AgentID>", "", body)
        resp = client.post(URL, query_string=params, data=body, content_type="text/xml")
        assert (resp.status_code, resp.data) == (200, b"success")
        raw = db_session.scalars(select(WeComRawEvent)).one()
        assert raw.agent_id == creds2["WECOM_AGENT_ID"]
        # signed by neither app: still refused
        forged, forged_body = sign_event(xml, dict(creds2, WECOM_CALLBACK_TOKEN="someoneElsesToken0001"))
        resp = client.post(URL, query_string=forged, data=re.sub(r"<AgentID>.*?</AgentID>", "", forged_body))
        assert (resp.status_code, resp.get_json()["code"]) == (403, "wecom.signature_invalid")


def test_remark_mobiles_are_encrypted_at_rest_and_found_by_a_phone_search(
    client: Any, db_session: Any, world: Any, make_staff: Any, staff_headers: Any
) -> None:
    vault = phone_vault(client)
    sb = world["sandbox"]
    t = now()
    post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, t))
    friend = friend_of(db_session, ADVISOR, CUSTOMER)
    with sb.state.lock:  # what the advisor typed on the contact in WeCom
        sb.state.follows[(ADVISOR, CUSTOMER)]["remark_mobiles"] = ["+86 138-0013-8000", "021-5555 1234", "13800138000"]
    post_event(client, sb, contact_xml(sb, "edit_external_contact", ADVISOR, CUSTOMER, t + 1))

    rows = db_session.scalars(select(WeComFriendMobile).where(WeComFriendMobile.friend_id == friend.id)).all()
    assert len(rows) == 2  # the same mobile typed twice is noted once
    assert noted_numbers(client, db_session, friend.id) == {"13800138000", "021-5555 1234"}
    by_number = {vault.decrypt(r.phone_encrypted): r.phone_index for r in rows}
    assert by_number == {"13800138000": vault.blind_index("13800138000"), "021-5555 1234": None}
    # Nothing in clear at rest: not in the mobiles' rows, not left on the relation.
    stored = db_session.execute(text("SELECT * FROM wecom_friend_mobile")).all()
    stored += db_session.execute(text("SELECT * FROM wecom_friend")).all()
    for row in stored:
        for value in row:
            raw = value if isinstance(value, bytes) else str(value).encode()
            assert b"13800138000" not in raw and b"5555 1234" not in raw

    # Staff who may call the customer find them by the noted number; other stores' staff do not.
    manager, elsewhere = world["manager"], make_staff(world["tree"].stores[1], "store_manager", userid="mgr.other")
    search = "/api/workbench/v1/customers/search-by-phone"
    found = client.post(search, json={"phone": "13800138000"}, headers=staff_headers(manager))
    assert found.status_code == 200 and [c["id"] for c in found.get_json()] == [friend.customer_id]
    assert client.post(search, json={"phone": "13800138000"}, headers=staff_headers(elsewhere)).get_json() == []

    # WeCom is authoritative: the next edit's numbers replace the noted ones.
    with sb.state.lock:
        sb.state.follows[(ADVISOR, CUSTOMER)]["remark_mobiles"] = ["13900139000"]
    post_event(client, sb, contact_xml(sb, "edit_external_contact", ADVISOR, CUSTOMER, t + 2))
    assert noted_numbers(client, db_session, friend.id) == {"13900139000"}
    assert client.post(search, json={"phone": "13800138000"}, headers=staff_headers(manager)).get_json() == []
