"""Nightly reconciliation against batch/get_by_user: a cursor that never ends, versions that let
late events win, the same-second tie, a mistaken closure undone, paging, unionid stitching,
failures that change nothing.

Written as review probes: the tests of the first part each showed a defect, since fixed (their
docstrings describe the failure they caught); the others confirmed behaviour that was right and
are kept as regression tests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.customers.models import Customer, CustomerIdentity, IdentityKind
from backend.platform.jobs import OutboxJob
from backend.platform.ports import UpstreamError
from backend.touchpoints.models import Kind, Touchpoint
from backend.wecom import reconcile
from backend.wecom import service as svc
from backend.wecom.models import FriendStatus, WeComFriend
from backend.wecom.reconcile import reconcile_advisor
from tests.wecom.helpers import add_store_channel, contact_xml, post_event, upstream_calls

ADVISOR = "advisor.probe"
BATCH = "/cgi-bin/externalcontact/batch/get_by_user"
URL = "/api/workbench/v1/wecom/friends/reconcile"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    advisor = make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR, name="张顾问")
    admin = make_staff(tree.group, "group_admin", userid="admin.probe")
    return {"sb": sandbox_reset, "advisor": advisor, "admin": admin, "tree": tree}


def friend_of(session: Any, ext: str) -> WeComFriend:
    session.expire_all()
    return session.scalars(
        select(WeComFriend).where(WeComFriend.userid == ADVISOR, WeComFriend.external_userid == ext)
    ).one()


def known(session: Any, advisor: Any, ext: str, status: FriendStatus, version: int = 1000) -> WeComFriend:
    customer = svc.ensure_customer(session, ext, {"external_contact": {"name": ext}})
    friend, _ = svc.lock_friend(session, advisor.corp_id, ADVISOR, ext, customer, advisor, status)
    friend.version = version
    return friend


def count(session: Any, model: Any, *where: Any) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).where(*where))


class LoopingGateway:
    """WeCom answering a next_cursor that never ends (page 2 points at itself)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(dict(body))
        row = lambda ext: {  # noqa: E731
            "external_contact": {"external_userid": ext, "name": ext, "type": 1},
            "follow_info": {"userid": ADVISOR, "createtime": 1_700_000_000, "tag_id": []},
        }
        if body["cursor"] == "":
            return {"errcode": 0, "external_contact_list": [row("wmPageOne")], "next_cursor": "CURSOR2"}
        return {"errcode": 0, "external_contact_list": [row("wmPageTwo")], "next_cursor": "CURSOR2"}


def test_a_next_cursor_loop_is_an_error_not_a_complete_picture(
    db_session: Any, app: Any, world: Any, monkeypatch: Any
) -> None:
    """A cursor that repeats never reaches the rest of the list. fetch_relations keeps asking
    (10,000 calls: WeCom's rate limit, 45009, long before), then treats what it saw as the
    complete list and closes every relation of ours on the pages it never reached."""
    gateway = LoopingGateway()
    monkeypatch.setattr(svc, "gateway_for", lambda corp_id, agent_id="": gateway)
    with app.app_context():
        for ext in ("wmPageOne", "wmPageTwo", "wmOnPageThree"):
            known(db_session, world["advisor"], ext, FriendStatus.ACTIVE)
        db_session.commit()
        raised: Exception | None = None
        try:
            reconcile_advisor(db_session, world["advisor"].corp_id, ADVISOR)
            db_session.commit()
        except Exception as exc:  # noqa: BLE001 - failing is the acceptable outcome
            raised = exc
            db_session.rollback()
    status = friend_of(db_session, "wmOnPageThree").status
    assert (len(gateway.calls) <= 3, status) == (True, FriendStatus.ACTIVE), (
        f"{len(gateway.calls)} calls for a looping cursor; relation on an unreached page: {status}; raised={raised!r}"
    )


def test_a_late_deletion_event_still_applies_to_a_relation_the_reconciliation_created(
    client: Any, db_session: Any, app: Any, world: Any
) -> None:
    """The customer added the advisor at t-600 and deleted them at t-300; both callbacks were
    delayed (WeCom retries). The reconciliation at t still finds the relation in the
    advisor's list (a one-way contact stays listed) and creates it, stamping it with its own
    clock (version t). The deletion's event, delivered afterwards, is then 'older' than the
    relation and no longer moves it: the customer who deleted the advisor stays ACTIVE (and an
    alert is raised for an active relation)."""
    sb = world["sb"]
    t = int(datetime.now(UTC).timestamp())
    sb.state.add_external_contact("wmLateDel", "赵女士", follow_userid=ADVISOR)
    with sb.state.lock:
        sb.state.follows[(ADVISOR, "wmLateDel")]["createtime"] = t - 600
    with app.app_context():
        stats = reconcile_advisor(db_session, world["advisor"].corp_id, ADVISOR)
        db_session.commit()
    assert stats["created"] == 1
    late = contact_xml(sb, "del_follow_user", ADVISOR, "wmLateDel", t - 300)
    assert post_event(client, sb, late).data == b"success"
    from backend.wecom.models import WeComAlert

    friend = friend_of(db_session, "wmLateDel")
    alerts = db_session.scalars(select(WeComAlert.kind).where(WeComAlert.friend_id == friend.id)).all()
    assert friend.status == FriendStatus.DELETED_BY_CUSTOMER, f"status {friend.status}, alerts {alerts}"


def test_an_add_applied_in_the_same_second_the_fetch_started_is_not_closed(
    client: Any, db_session: Any, app: Any, world: Any, monkeypatch: Any
) -> None:
    """The fetch starts at T+0.4s and does not see a relation added at T+0.7s (CreateTime T,
    whole seconds); the add's event is applied before the comparison. version (T) is not
    smaller than the relation's version (T), so the live relation is closed."""
    sb = world["sb"]
    t = int(datetime.now(UTC).timestamp()) - 5
    sb.state.add_external_contact("wmSameSecond", "钱先生")  # no follow yet: not in the advisor's list
    assert (
        post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, "wmSameSecond", t)).data == b"success"
    )
    assert friend_of(db_session, "wmSameSecond").status == FriendStatus.ACTIVE
    monkeypatch.setattr(reconcile, "utcnow", lambda: datetime.fromtimestamp(t + 0.4, UTC))
    with app.app_context():
        stats = reconcile_advisor(db_session, world["advisor"].corp_id, ADVISOR)
        db_session.commit()
    assert (stats["closed"], friend_of(db_session, "wmSameSecond").status) == (0, FriendStatus.ACTIVE)


def test_a_relation_closed_by_mistake_and_reopened_is_back_on_the_timeline_and_in_channel_stats(
    client: Any, db_session: Any, app: Any, world: Any, monkeypatch: Any
) -> None:
    """Night 1 recovers a relation (add event lost). Night 2 WeCom's answer misses it (a
    permission hiccup: the empty-answer guard only holds for >= 5 open relations) and it is
    closed: friend_reconciled on the timeline, a loss in the channel's statistics. Night 3 it
    is listed again with the same createtime and is reopened (stats say reopened: 1), but the
    reopen writes no friend_added touchpoint and no channel add: both keep its source_ref of
    night 1. The customer's timeline ends on 'closed' and the channel shows a loss although
    the customer is a friend."""
    sb = world["sb"]
    channel = add_store_channel(db_session, sb, world["tree"].stores[0].id, "store0-qr", [ADVISOR])
    sb.state.add_external_contact("wmFlaky", "孙女士", follow_userid=ADVISOR, state="store0-qr")
    now = datetime.now(UTC)
    with sb.state.lock:
        sb.state.follows[(ADVISOR, "wmFlaky")]["createtime"] = int((now - timedelta(days=3)).timestamp())
    corp = world["advisor"].corp_id
    nights = iter([now - timedelta(days=2), now - timedelta(days=1), now])
    with app.app_context():
        monkeypatch.setattr(reconcile, "utcnow", lambda: next(nights))
        assert reconcile_advisor(db_session, corp, ADVISOR)["created"] == 1
        db_session.commit()
        with sb.state.lock:
            follow = sb.state.follows.pop((ADVISOR, "wmFlaky"))
        assert reconcile_advisor(db_session, corp, ADVISOR)["closed"] == 1
        db_session.commit()
        with sb.state.lock:
            sb.state.follows[(ADVISOR, "wmFlaky")] = follow
        assert reconcile_advisor(db_session, corp, ADVISOR)["reopened"] == 1
        db_session.commit()
    friend = friend_of(db_session, "wmFlaky")
    assert friend.status == FriendStatus.ACTIVE
    kinds = db_session.scalars(
        select(Touchpoint.kind)
        .where(Touchpoint.customer_id == friend.customer_id)
        .order_by(Touchpoint.occurred_at, Touchpoint.id)
    ).all()
    day = svc.china_day(now)
    stats = svc.channel_stats(db_session, channel, day - timedelta(days=4), day)
    net = sum(r["added"] - r["lost"] for r in stats)
    assert (kinds[-1], net) == (Kind.FRIEND_ADDED, 1), f"timeline {kinds}; channel stats {stats}"


def test_relation_of_a_customer_known_by_unionid_joins_that_customer(db_session: Any, app: Any, world: Any) -> None:
    member = Customer(name="小程序会员", acquisition_channel="miniprogram")
    db_session.add(member)
    db_session.flush()
    db_session.add(CustomerIdentity(customer_id=member.id, kind=IdentityKind.UNIONID, value="unProbe001"))
    db_session.add(CustomerIdentity(customer_id=member.id, kind=IdentityKind.OPENID, value="opProbe001"))
    db_session.commit()
    world["sb"].state.add_external_contact("wmUnion", "周先生", unionid="unProbe001", follow_userid=ADVISOR)
    customers_before = count(db_session, Customer)
    with app.app_context():
        assert reconcile_advisor(db_session, world["advisor"].corp_id, ADVISOR)["created"] == 1
        db_session.commit()
    friend = friend_of(db_session, "wmUnion")
    assert friend.customer_id == member.id
    assert count(db_session, Customer) == customers_before
    ids = db_session.scalars(
        select(CustomerIdentity.value).where(
            CustomerIdentity.customer_id == member.id, CustomerIdentity.kind == IdentityKind.EXTERNAL_USERID
        )
    ).all()
    assert ids == ["wmUnion"]
    added = db_session.scalars(
        select(Touchpoint).where(Touchpoint.customer_id == member.id, Touchpoint.kind == Kind.FRIEND_ADDED)
    ).one()
    assert added.payload["reconciled"] is True


def test_twice_run_writes_touchpoints_and_channel_facts_once(db_session: Any, app: Any, world: Any) -> None:
    from backend.wecom.models import WeComChannelFact

    sb = world["sb"]
    for i in range(3):
        sb.state.add_external_contact(f"wmTwice{i}", f"客户{i}", follow_userid=ADVISOR)
    with app.app_context():
        known(db_session, world["advisor"], "wmGone", FriendStatus.ACTIVE)
        db_session.commit()
        first = reconcile_advisor(db_session, world["advisor"].corp_id, ADVISOR)
        db_session.commit()
        tps, facts = count(db_session, Touchpoint), count(db_session, WeComChannelFact)
        second = reconcile_advisor(db_session, world["advisor"].corp_id, ADVISOR)
        db_session.commit()
    assert (first["created"], first["closed"]) == (3, 1)
    assert not any(second.values())
    assert (count(db_session, Touchpoint), count(db_session, WeComChannelFact)) == (tps, facts)
    reconciled = db_session.scalars(select(Touchpoint).where(Touchpoint.kind == Kind.FRIEND_RECONCILED)).all()
    assert len(reconciled) == 1 and reconciled[0].payload["reconciled"] is True


def test_advisor_with_hundreds_of_contacts_is_paged_by_cursor(db_session: Any, app: Any, world: Any) -> None:
    sb = world["sb"]
    for i in range(350):
        sb.state.add_external_contact(f"wmMany{i:04d}", f"客户{i}", follow_userid=ADVISOR)
    with app.app_context():
        stats = reconcile_advisor(db_session, world["advisor"].corp_id, ADVISOR)
        db_session.commit()
    calls = [c["json"] for c in upstream_calls(sb, BATCH)]
    assert [(c["userid_list"], c["cursor"], c["limit"]) for c in calls] == [
        ([ADVISOR], cursor, 100) for cursor in ("", "100", "200", "300")
    ]
    assert stats["created"] == 350
    assert count(db_session, WeComFriend, WeComFriend.userid == ADVISOR, WeComFriend.status == "active") == 350


def test_staff_of_a_corp_without_app_are_not_reconciled(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, make_staff: Any
) -> None:
    other = make_staff(world["tree"].stores[1], "sales_advisor", userid="advisor.nocorp")
    other.corp_id = "wwCorpWithoutApp01"
    db_session.commit()
    resp = client.post(URL, headers=staff_headers(world["admin"]), json={})
    assert resp.status_code == 202
    args = [j.args for j in db_session.scalars(select(OutboxJob).where(OutboxJob.name == reconcile.ADVISOR_JOB))]
    assert {a["corp_id"] for a in args} == {world["advisor"].corp_id}
    assert "advisor.nocorp" not in {a["userid"] for a in args}


@pytest.mark.parametrize("fault", [{"mode": "errcode", "errcode": 42001}, {"mode": "down"}])
def test_failure_on_the_last_page_changes_nothing(db_session: Any, app: Any, world: Any, fault: Any) -> None:
    sb = world["sb"]
    for i in range(150):
        sb.state.add_external_contact(f"wmFail{i:03d}", f"客户{i}", follow_userid=ADVISOR)
    with app.app_context():
        known(db_session, world["advisor"], "wmGone", FriendStatus.ACTIVE)
        db_session.commit()
    original = sb.state.take_fault

    def last_page_fails(service: str, path: str) -> Any:
        from flask import request

        body = request.get_json(force=True, silent=True) or {}
        if path == BATCH and body.get("cursor") == "100":
            sb.state.take_fault = original  # type: ignore[method-assign]
            sb.state.set_fault(service="wecom", path=path, count=3, **fault)
        return original(service, path)

    sb.state.take_fault = last_page_fails  # type: ignore[method-assign]
    try:
        with app.app_context():
            with pytest.raises(UpstreamError):
                reconcile_advisor(db_session, world["advisor"].corp_id, ADVISOR)
            db_session.rollback()
    finally:
        sb.state.take_fault = original  # type: ignore[method-assign]
    assert count(db_session, WeComFriend) == 1
    assert friend_of(db_session, "wmGone").status == FriendStatus.ACTIVE
    assert count(db_session, Touchpoint) == 0


class EventDuringFetch:
    """The real gateway; right after the last page is fetched a live callback for the same
    relation is processed (before the reconciliation compares)."""

    def __init__(self, real: Any, on_last_page: Any) -> None:
        self.real, self.on_last_page, self.fired = real, on_last_page, False

    def __getattr__(self, name: str) -> Any:  # everything else (agent_id, get, ...) is the real one's
        return getattr(self.real, name)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        page = self.real.post(path, body)
        if path.endswith("batch/get_by_user") and not page.get("next_cursor") and not self.fired:
            self.fired = True
            self.on_last_page()
        return page


def test_a_deletion_event_processed_during_the_fetch_wins(
    client: Any, db_session: Any, app: Any, world: Any, monkeypatch: Any
) -> None:
    """WeCom's list (fetched at T) still has the relation; the customer deletes the advisor at
    T+5 and the callback is processed before the comparison: the relation stays deleted, no
    reconciled friend_added is written for it."""
    sb = world["sb"]
    t = int(datetime.now(UTC).timestamp())
    sb.state.add_external_contact("wmRace", "吴先生", follow_userid=ADVISOR)
    with app.app_context():
        real = svc.gateway_for(world["advisor"].corp_id)

    def deletion() -> None:
        xml = contact_xml(sb, "del_follow_user", ADVISOR, "wmRace", t + 5)
        assert post_event(client, sb, xml).data == b"success"

    monkeypatch.setattr(svc, "gateway_for", lambda corp_id, agent_id="": EventDuringFetch(real, deletion))
    with app.app_context():
        stats = reconcile_advisor(db_session, world["advisor"].corp_id, ADVISOR)
        db_session.commit()
    friend = friend_of(db_session, "wmRace")
    assert friend.status == FriendStatus.DELETED_BY_CUSTOMER, stats
    assert (
        count(
            db_session, Touchpoint, Touchpoint.customer_id == friend.customer_id, Touchpoint.kind == Kind.FRIEND_ADDED
        )
        == 0
    )
