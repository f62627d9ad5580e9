"""Issue 3 acceptance, "a burst of 1,000 events shuffled with duplicates → the end state
(relations, tags, touchpoints, alerts) is identical to each distinct event applied once in
order", compared field by field: every relation with its status and version, the tags each
relation carries (from WeCom and a channel's auto-tags) and the tag library (create, update,
delete, shuffle callbacks), every touchpoint with its customer, advisor and time (a tag change
with its tag: see _touchpoint_key), every alert with its relation, time and state, and the app
messages recorded and received by WeCom.

The sandbox emits the events (signed and encrypted as WeCom does): first each distinct one once,
in CreateTime order; then, from the same WeCom state and an empty database, 1,000 deliveries —
the distinct events and duplicates, shuffled."""

from __future__ import annotations

import copy
import time
from collections import Counter
from typing import Any

from sqlalchemy import select

from backend.customers.models import CustomerIdentity, IdentityKind
from backend.org.models import Staff
from backend.touchpoints.models import Touchpoint
from backend.wecom.models import AppMessage, WeComAlert, WeComFriend, WeComFriendTag, WeComRawEvent, WeComTag
from integrations.sandbox.wecom_emit import FlaskClientTransport, emit, plan
from tests.wecom.helpers import URL, add_store_channel, callback_world, contact_xml, run_due_jobs, tag_id
from tests.wecom.helpers import count_rows as n

A, B, TAKEOVER = "advisor.zhang", "advisor.qian", "advisor.wang"

WIPE = (
    "wecom_alert",
    "wecom_channel_fact",
    "wecom_friend_tag",
    "wecom_friend_mobile",
    "wecom_friend",
    "wecom_app_message_recipient",
    "wecom_app_message",
    "wecom_tag",
    "wecom_sync_state",
    "touchpoint",
    "customer_kind_count",
    "customer_profile",
    "customer_advisor",
    "customer_identity",
    "wecom_raw_event",
    "outbox_job",
    "audit_log",
    "customer_merge",
)


def _world(sb: Any, base: int, state: str) -> list[str]:
    """About 400 distinct events, in CreateTime order: 100 customers x 2 advisors (adds, some
    through the channel `state`; losses either way, re-adds, edits, handovers, failed
    handovers), and the tag library changing in WeCom."""
    corp = sb.credentials["WECOM_CORP_ID"]
    suv, sedan = tag_id(sb, "SUV"), tag_id(sb, "轿车")
    grade = sb.state.add_tag_group("活动", ["试驾", "车展", "旧标签"])
    drive, show, old = (t["id"] for t in grade["tag"])
    events: list[tuple[int, str]] = []
    for c in range(100):
        ext = f"wmAB{c:04d}"
        sb.state.add_external_contact(ext, f"客户{c}", unionid=f"oAB{c}")
        for a, userid in enumerate((A, B)):
            tags = [[], [suv], [sedan, drive], [suv, show]][(c + a) % 4]
            sb.state.add_follow(userid, ext, tags=tags, state=state if c % 5 == 0 else None)
            t = base + c * 20 + a * 9
            extra = {"State": state} if c % 5 == 0 else {}
            events.append((t, contact_xml(sb, "add_external_contact", userid, ext, t, **extra)))
            if c % 4 == 1:
                events.append((t + 1, contact_xml(sb, "edit_external_contact", userid, ext, t + 1)))
            if c % 3 == 0:
                events.append((t + 2, contact_xml(sb, "del_follow_user", userid, ext, t + 2)))
            if c % 6 == 0:
                events.append((t + 3, contact_xml(sb, "add_external_contact", userid, ext, t + 3)))
            if c % 10 == 7:
                events.append((t + 4, contact_xml(sb, "del_external_contact", userid, ext, t + 4)))
            if c % 10 == 3 and a == 0:
                events.append(
                    (t + 4, contact_xml(sb, "del_external_contact", userid, ext, t + 4, Source="DELETE_BY_TRANSFER"))
                )
            if c % 10 == 5 and a == 0:
                events.append(
                    (t + 5, contact_xml(sb, "transfer_fail", TAKEOVER, ext, t + 5, FailReason="customer_refused"))
                )
    # The library changes in WeCom: a tag renamed, one deleted, the group reordered, one created.
    end = base + 100 * 20
    with sb.state.lock:
        group = sb.state.tag_groups[grade["group_id"]]
        group["tag"][1]["name"] = "车展2024"
        group["tag"] = [t for t in group["tag"] if t["id"] != old]
        group["order"] = 99
    added = sb.state.add_tag_group("新组", ["新标签"])

    def tag_event(at: int, **fields: str) -> tuple[int, str]:
        return at, sb.state.wecom_event_xml(corp, "change_external_tag", at, StrategyId="0", **fields)

    events += [
        tag_event(base + 50, Id=grade["group_id"], TagType="tag_group", ChangeType="create"),
        tag_event(end + 1, Id=show, TagType="tag", ChangeType="update"),
        tag_event(end + 2, Id=old, TagType="tag", ChangeType="delete"),
        tag_event(end + 3, Id=grade["group_id"], TagType="tag_group", ChangeType="shuffle"),
        tag_event(end + 4, Id=added["group_id"], TagType="tag_group", ChangeType="create"),
    ]
    return [xml for _, xml in sorted(events, key=lambda e: e[0])]


TAG_KINDS = ("tag_added", "tag_removed")


def _touchpoint_key(tp: Touchpoint, ext_of: dict, userid_of: dict) -> tuple:
    """Every touchpoint with its customer, advisor and time; a tag change with its tag instead of
    its time. WeCom tells a relation's tags as they are now (externalcontact/get), not when each
    was set: the first event of the relation processed applies them at its own time, whichever
    event that is. Which tags each relation gained or lost, and how often, is compared."""
    who = (tp.kind, ext_of.get(tp.customer_id), userid_of.get(tp.advisor_id))
    if tp.kind in TAG_KINDS:
        return (*who, (tp.payload or {}).get("tag_id"))
    return (*who, int(tp.occurred_at.timestamp()))


def _snapshot(session: Any, sb: Any) -> dict[str, Any]:
    session.expire_all()
    ext_of = dict(
        session.execute(
            select(CustomerIdentity.customer_id, CustomerIdentity.value).where(
                CustomerIdentity.kind == IdentityKind.EXTERNAL_USERID
            )
        ).all()
    )
    userid_of = dict(session.execute(select(Staff.id, Staff.wecom_userid)).all())
    friends = {f.id: f for f in session.scalars(select(WeComFriend))}
    pair = {fid: (f.userid, f.external_userid) for fid, f in friends.items()}
    return {
        "relations": sorted(
            (f.userid, f.external_userid, f.status.value, f.version, f.state or "", userid_of.get(f.staff_id))
            for f in friends.values()
        ),
        "tags": sorted((*pair[ft.friend_id], ft.tag_id) for ft in session.scalars(select(WeComFriendTag))),
        "library": sorted(
            (t.tag_id, t.name, t.group_name, t.group_order, t.sort_order, t.deleted)
            for t in session.scalars(select(WeComTag))
        ),
        "touchpoints": Counter(_touchpoint_key(tp, ext_of, userid_of) for tp in session.scalars(select(Touchpoint))),
        "alerts": sorted(
            (
                a.kind.value,
                *pair[a.friend_id],
                ext_of.get(a.customer_id),
                userid_of.get(a.staff_id),
                int(a.occurred_at.timestamp()),
                a.resolved_at is None,
            )
            for a in session.scalars(select(WeComAlert))
        ),
        # What each message says names the customer as known when it was sent, and a burst meets
        # the recipients' rate limit (deferred, sent later): who is told about what is compared.
        "messages": Counter((m.kind, tuple(sorted(m.touser))) for m in session.scalars(select(AppMessage))),
    }


def test_a_thousand_shuffled_deliveries_with_duplicates_end_like_each_event_once_in_order(
    client: Any, db_session: Any, app: Any, sandbox_reset: Any, tree: Any, make_staff: Any
) -> None:
    sb = sandbox_reset
    callback_world(sb, tree, make_staff)  # Zhang and store manager Li at store 0, an admin
    make_staff(tree.stores[0], "sales_advisor", userid=B, name="钱顾问")
    make_staff(tree.stores[0], "sales_advisor", userid=TAKEOVER, name="王顾问")
    auto = sb.state.add_tag_group("来源", ["活码"])["tag"][0]["id"]
    add_store_channel(db_session, sb, tree.stores[0].id, "store0-burst", [A, B], auto_tag_ids=[auto])
    events = _world(sb, int(time.time()) - 4000, "store0-burst")
    assert 380 <= len(events) <= 480
    with sb.state.lock:  # WeCom as it is before anything is applied (mark_tag changes it)
        wecom = copy.deepcopy((sb.state.follows, sb.state.tag_groups))

    in_order = emit(URL, events, sb.credentials, client=FlaskClientTransport(client))
    assert in_order.acknowledged == len(events)
    run_due_jobs(app)
    expected = _snapshot(db_session, sb)
    assert n(db_session, WeComRawEvent, WeComRawEvent.status != "processed") == 0
    assert 200 <= len(expected["relations"]) <= 210  # and records of failed handovers of lost customers
    kinds = {a[0] for a in expected["alerts"]}
    assert kinds == {"deleted_by_customer", "deleted_by_advisor", "transfer_failed"}, kinds
    assert any(a[-1] is False for a in expected["alerts"])  # re-adds resolved some
    assert any(t[2] == auto for t in expected["tags"]) and expected["messages"]
    assert {"试驾", "车展2024", "新标签"} <= {t[1] for t in expected["library"] if not t[5]}

    for table in WIPE:
        if table in WeComFriend.metadata.tables:
            db_session.execute(WeComFriend.metadata.tables[table].delete())
    db_session.execute(WeComFriend.metadata.tables["customer"].delete())
    db_session.commit()
    with sb.state.lock:
        sb.state.follows, sb.state.tag_groups = copy.deepcopy(wecom)
        sb.state.app_messages.clear()

    order = plan(events, duplicates=1000 - len(events), shuffle=True, seed=3)
    assert len(order) == 1000 and max(Counter(order).values()) >= 3 and order != sorted(order)
    burst = emit(
        URL,
        events,
        sb.credentials,
        duplicates=1000 - len(events),
        shuffle=True,
        seed=3,
        client=FlaskClientTransport(client),
    )
    assert burst.acknowledged == 1000, burst.failed[:3]
    run_due_jobs(app)
    assert n(db_session, WeComRawEvent) == len(events)
    assert n(db_session, WeComRawEvent, WeComRawEvent.status != "processed") == 0
    got = _snapshot(db_session, sb)
    diffs = {}
    for part, want in expected.items():
        if isinstance(want, Counter):
            missing, extra = want - got[part], got[part] - want
        else:
            missing, extra = Counter(want) - Counter(got[part]), Counter(got[part]) - Counter(want)
        if missing or extra:
            diffs[part] = {"in order only": sorted(missing.elements()), "burst only": sorted(extra.elements())}
    assert diffs == {}
