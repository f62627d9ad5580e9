"""Nightly reconciliation of friend relations against `batch/get_by_user` through the real
client and the sandbox: paging (limit 100, cursor), relations created / reopened / closed with
touchpoints flagged `reconciled`, idempotent re-runs, upstream faults retried with nothing
half-applied, the periodic schedule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.customers.models import CustomerAdvisor
from backend.platform import jobs
from backend.platform.jobs import OutboxJob
from backend.touchpoints.models import Touchpoint
from backend.wecom import service as svc
from backend.wecom.models import FriendStatus, WeComFriend, WeComFriendTag
from tests.wecom.helpers import run_due_jobs, second_wecom_app

URL = "/api/workbench/v1/wecom/friends/reconcile"
ADVISOR = "advisor.zhang"
BATCH = "/cgi-bin/externalcontact/batch/get_by_user"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, db_session: Any, app: Any) -> dict[str, Any]:
    sb = sandbox_reset
    advisor = make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR, name="张顾问")
    make_staff(tree.stores[0], "store_manager", userid="advisor.li")
    admin = make_staff(tree.group, "group_admin", userid="admin.not.in.wecom")
    for i in range(130):
        sb.state.add_external_contact(f"wmRecon{i:03d}", f"客户{i}", follow_userid=ADVISOR, state="store01")
    with app.app_context():
        for ext, status in (
            ("wmDemoCustomer001", FriendStatus.ACTIVE),  # both sides agree
            ("wmGoneAway", FriendStatus.ACTIVE),  # WeCom no longer has it
            ("wmRecon005", FriendStatus.DELETED_BY_CUSTOMER),  # we think lost, WeCom has it
        ):
            customer = svc.ensure_customer(db_session, ext, {"external_contact": {"name": ext}})
            friend, _ = svc.lock_friend(db_session, advisor.corp_id, ADVISOR, ext, customer, advisor, status)
            friend.version = 1000
        db_session.commit()
    return {"sandbox": sb, "advisor": advisor, "admin": admin}


def count(session: Any, model: Any, *where: Any) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).where(*where))


def statuses(session: Any) -> dict[str, str]:
    session.expire_all()
    return dict(
        session.execute(
            select(WeComFriend.external_userid, WeComFriend.status).where(WeComFriend.userid == ADVISOR)
        ).all()
    )


def test_reconciliation_creates_reopens_and_closes_with_flagged_touchpoints(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any
) -> None:
    sb = world["sandbox"]
    headers = staff_headers(world["admin"])
    resp = client.post(URL, headers=headers, json={})
    assert resp.status_code == 202 and resp.get_json() == {"enqueued": 3}  # one job per active advisor

    calls = [c["json"] for c in sb.state.received(BATCH) if c["json"]["userid_list"] == [ADVISOR]]
    assert [(c["cursor"], c["limit"]) for c in calls] == [("", 100), ("100", 100)]
    now = statuses(db_session)
    assert len(now) == 132
    assert now["wmGoneAway"] == "closed" and now["wmRecon005"] == "active" and now["wmDemoCustomer001"] == "active"
    assert sum(1 for s in now.values() if s == "active") == 131

    added = db_session.scalars(select(Touchpoint).where(Touchpoint.kind == "friend_added")).all()
    assert len(added) == 130 and all(t.payload["reconciled"] is True for t in added)
    assert all(t.advisor_id == world["advisor"].id and t.store_id == world["advisor"].org_unit_id for t in added)
    closed = db_session.scalars(select(Touchpoint).where(Touchpoint.kind == "friend_reconciled")).one()
    assert closed.payload == {
        "reconciled": True,
        "action": "closed",
        "userid": ADVISOR,
        "external_userid": "wmGoneAway",
    }
    # New relations carry WeCom's add time, state and the advisor assignment.
    friend = db_session.scalars(select(WeComFriend).where(WeComFriend.external_userid == "wmRecon042")).one()
    follow = sb.state.follows[(ADVISOR, "wmRecon042")]
    assert friend.added_at == datetime.fromtimestamp(follow["createtime"], UTC) and friend.state == "store01"
    assert db_session.scalars(
        select(CustomerAdvisor.staff_id).where(CustomerAdvisor.customer_id == friend.customer_id)
    ).all() == [world["advisor"].id]

    # Re-run: nothing changes, nothing is written twice.
    before = count(db_session, Touchpoint)
    assert client.post(URL, headers=headers, json={}).status_code == 202
    assert statuses(db_session) == now
    assert count(db_session, Touchpoint) == before


def test_tags_of_missing_relations_are_taken_from_wecom(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any
) -> None:
    sb = world["sandbox"]
    tag_id = next(iter(sb.state.tag_groups.values()))["tag"][1]["id"]
    sb.state.follows[(ADVISOR, "wmRecon007")]["tag_ids"] = [tag_id]
    with app.app_context():
        from backend.wecom.reconcile import reconcile_advisor

        stats = reconcile_advisor(db_session, world["advisor"].corp_id, ADVISOR)
        db_session.commit()
    assert stats == {"created": 129, "reopened": 1, "closed": 1, "skipped": 0, "one_way": 0}
    friend = db_session.scalars(select(WeComFriend).where(WeComFriend.external_userid == "wmRecon007")).one()
    assert db_session.scalars(select(WeComFriendTag.tag_id).where(WeComFriendTag.friend_id == friend.id)).all() == [
        tag_id
    ]


@pytest.mark.parametrize(
    "fault",
    [
        {"mode": "errcode", "errcode": 45009},
        {"mode": "down"},
    ],
)
def test_a_failing_page_is_retried_and_nothing_is_half_applied(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, fault: Any
) -> None:
    sb = world["sandbox"]
    original = sb.state.take_fault

    def second_page_fails_once(service: str, path: str) -> Any:
        from flask import request

        body = request.get_json(force=True, silent=True) or {}
        if path == BATCH and body.get("cursor") == "100":
            sb.state.take_fault = original  # type: ignore[method-assign]
            sb.state.set_fault(service="wecom", path=path, count=1, **fault)
        return original(service, path)

    sb.state.take_fault = second_page_fails_once  # type: ignore[method-assign]
    try:
        assert client.post(URL, headers=staff_headers(world["admin"]), json={}).status_code == 202
    finally:
        sb.state.take_fault = original  # type: ignore[method-assign]
    # The first page was fetched but nothing of it applied: the advisor's job failed as a whole.
    assert count(db_session, WeComFriend) == 3 and statuses(db_session)["wmGoneAway"] == "active"
    assert count(db_session, Touchpoint) == 0
    failed = db_session.scalars(select(OutboxJob).where(OutboxJob.args["userid"].as_string() == ADVISOR)).one()
    assert failed.status == "pending" and failed.attempts == 1

    sb.state.expire_tokens("wecom")  # 42001 on the retry: refreshed once, then it goes through
    tokens_before = sb.hits("/cgi-bin/gettoken")
    run_due_jobs(app)
    assert sb.hits("/cgi-bin/gettoken") == tokens_before + 1
    assert statuses(db_session)["wmGoneAway"] == "closed"
    assert count(db_session, Touchpoint, Touchpoint.kind == "friend_added") == 130


def test_an_event_newer_than_the_look_wins(db_session: Any, app: Any, world: Any) -> None:
    """A relation whose last event is newer than the reconciliation's fetch is left alone."""
    future = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp())
    friend = db_session.scalars(select(WeComFriend).where(WeComFriend.external_userid == "wmGoneAway")).one()
    friend.version = future
    db_session.commit()
    with app.app_context():
        from backend.wecom.reconcile import reconcile_advisor

        stats = reconcile_advisor(db_session, world["advisor"].corp_id, ADVISOR)
        db_session.commit()
    assert stats["closed"] == 0 and statuses(db_session)["wmGoneAway"] == "active"


def test_nightly_schedule_fans_out_per_advisor(db_session: Any, app: Any, world: Any, monkeypatch: Any) -> None:
    registered = {p.name for p in jobs._PERIODIC}
    assert {"wecom.reconcile.all", "wecom.behaviour.pull_all", "wecom.directory.sync"} <= registered
    monkeypatch.setattr(jobs, "_PERIODIC", [p for p in jobs._PERIODIC if p.name == "wecom.reconcile.all"])
    night = datetime(2026, 12, 2, 0, 0, 5, tzinfo=UTC)
    assert jobs.tick_periodic(app, now=night) == ["wecom.reconcile.all"]
    assert jobs.tick_periodic(app, now=night) == []  # the same slot fires once
    assert statuses(db_session)["wmGoneAway"] == "closed"
    per_advisor = db_session.scalars(
        select(OutboxJob.dedup_key).where(OutboxJob.name == "wecom.reconcile.advisor")
    ).all()
    slot = int(night.timestamp()) // 86400 * 86400
    assert sorted(per_advisor) == sorted(
        f"wecom.reconcile.advisor:{slot}:{world['advisor'].corp_id}:{u}"
        for u in ("admin.not.in.wecom", "advisor.li", ADVISOR)
    )


def test_nightly_runs_cover_every_configured_corp(db_session: Any, app: Any, world: Any, monkeypatch: Any) -> None:
    """Each periodic run becomes one run per corp: an extra app's corp is reconciled too (the
    nightly jobs used to look at the primary corp only)."""
    from backend.org.models import Role, Staff, StaffRole

    with second_wecom_app(app, world["sandbox"], monkeypatch) as (second, creds2):
        # the same userid as an advisor of the first corp: each corp's run is its own
        second.state.add_member(ADVISOR, "二号顾问")
        second.state.add_external_contact("wmSecondCorp1", "王先生", follow_userid=ADVISOR)
        staff = Staff(
            corp_id=creds2["WECOM_CORP_ID"],
            wecom_userid=ADVISOR,
            name="二号顾问",
            org_unit_id=world["advisor"].org_unit_id,
        )
        staff.role_rows = [StaffRole(role=Role.SALES_ADVISOR)]
        db_session.add(staff)
        db_session.commit()
        monkeypatch.setattr(jobs, "_PERIODIC", [p for p in jobs._PERIODIC if p.name == "wecom.reconcile.all"])
        night = datetime(2026, 12, 3, 0, 0, 5, tzinfo=UTC)
        assert jobs.tick_periodic(app, now=night) == ["wecom.reconcile.all"]
        run_due_jobs(app)
        slot = int(night.timestamp()) // 86400 * 86400
        per_corp = db_session.scalars(
            select(OutboxJob.dedup_key).where(OutboxJob.name == "wecom.reconcile.all", OutboxJob.status == "done")
        ).all()
        assert sorted(per_corp) == sorted(
            [
                f"periodic:wecom.reconcile.all:{slot}",
                f"wecom.reconcile.all:{world['advisor'].corp_id}:{slot}",
                f"wecom.reconcile.all:{creds2['WECOM_CORP_ID']}:{slot}",
            ]
        )
        # the second corp's relation was found by its own WeCom and created, marked as reconciled
        friend = db_session.scalars(select(WeComFriend).where(WeComFriend.external_userid == "wmSecondCorp1")).one()
        assert (friend.corp_id, friend.staff_id, friend.status) == (creds2["WECOM_CORP_ID"], staff.id, "active")
        assert second.state.received("/cgi-bin/externalcontact/batch/get_by_user")


def test_an_empty_answer_for_an_advisor_with_customers_closes_nothing(
    db_session: Any, app: Any, world: Any, make_staff: Any, tree: Any
) -> None:
    """WeCom listing no customers for an advisor we know with several is a lost permission far
    more often than a night in which all of them left: nothing is closed."""
    from backend.wecom.reconcile import EMPTY_ANSWER_GUARD, reconcile_advisor

    advisor = make_staff(tree.stores[0], "sales_advisor", userid="advisor.quiet")
    world["sandbox"].state.add_member("advisor.quiet", "安静顾问")
    externals = [f"wmQuiet{i}" for i in range(EMPTY_ANSWER_GUARD)]
    with app.app_context():
        for ext in externals:
            customer = svc.ensure_customer(db_session, ext, {"external_contact": {"name": ext}})
            svc.lock_friend(db_session, advisor.corp_id, "advisor.quiet", ext, customer, advisor, FriendStatus.ACTIVE)
        db_session.commit()
        stats = reconcile_advisor(db_session, advisor.corp_id, "advisor.quiet")
        db_session.commit()
    assert (stats["closed"], stats["held"]) == (0, EMPTY_ANSWER_GUARD)
    db_session.expire_all()
    assert set(db_session.scalars(select(WeComFriend.status).where(WeComFriend.userid == "advisor.quiet"))) == {
        FriendStatus.ACTIVE
    }


def test_a_customer_who_deleted_the_advisor_stays_lost_though_wecom_still_lists_them(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any
) -> None:
    """A customer who deletes the advisor stays in the advisor's WeCom list (a one-way contact,
    as in WeChat), so batch/get_by_user still returns them. The nightly reconciliation leaves
    that relation lost: still on the lost list, no reconciled friend_added. When the customer
    adds the advisor again (a follow createtime after the loss) and that add's event never
    came, the reconciliation reopens the relation."""
    from backend.wecom.models import WeComAlert
    from backend.wecom.reconcile import reconcile_advisor
    from tests.wecom.helpers import contact_xml, post_event

    sb = world["sandbox"]
    t = int(datetime.now(UTC).timestamp()) - 600
    sb.state.add_external_contact("wmOneWay", "陈女士", follow_userid=ADVISOR)
    with sb.state.lock:
        sb.state.follows[(ADVISOR, "wmOneWay")]["createtime"] = t
    assert post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, "wmOneWay", t)).data == b"success"
    assert post_event(client, sb, contact_xml(sb, "del_follow_user", ADVISOR, "wmOneWay", t + 60)).data == b"success"
    with app.app_context():
        stats = reconcile_advisor(db_session, world["advisor"].corp_id, ADVISOR)
        db_session.commit()
    assert stats["one_way"] == 1
    db_session.expire_all()
    assert statuses(db_session)["wmOneWay"] == "deleted_by_customer"
    alert = db_session.scalars(select(WeComAlert).where(WeComAlert.kind == "deleted_by_customer")).one()
    assert alert.resolved_at is None

    with sb.state.lock:  # the customer adds the advisor again; its event is lost
        sb.state.follows[(ADVISOR, "wmOneWay")]["createtime"] = t + 300
    with app.app_context():
        stats = reconcile_advisor(db_session, world["advisor"].corp_id, ADVISOR)
        db_session.commit()
    assert (stats["one_way"], stats["reopened"]) == (0, 1)
    db_session.expire_all()
    assert statuses(db_session)["wmOneWay"] == "active"
    assert db_session.get(WeComAlert, alert.id).resolved_at is not None
