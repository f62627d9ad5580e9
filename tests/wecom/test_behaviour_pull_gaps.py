"""The daily behaviour pull and the managers' back-fill: missed days caught up, advisors who
resigned in the period, corps without an app, 30-day windows of one userid, China days, failures
retried.

Written as review probes: the tests of the first part each showed a defect, since fixed (their
docstrings describe the failure they caught); the others confirmed behaviour that was right and
are kept as regression tests.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from backend.platform.db import commit
from backend.platform.jobs import OutboxJob, enqueue
from backend.wecom import behaviour
from backend.wecom.ops_models import WeComBehaviourDay
from integrations.sandbox import wecom_ops
from tests.wecom.helpers import run_due_jobs, second_wecom_app, upstream_calls

PATH = "/cgi-bin/externalcontact/get_user_behavior_data"
URL = "/api/workbench/v1/wecom/behaviour"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    return {
        "sandbox": sandbox_reset,
        "zhang": make_staff(tree.stores[0], "sales_advisor", userid="advisor.zhang"),
        "manager": make_staff(tree.stores[0], "store_manager", userid="manager.0"),
        "tree": tree,
    }


def ts(d: date) -> int:
    return behaviour.day_start(d)


def rows(session: Any, userid: str, corp_id: str | None = None) -> dict[date, WeComBehaviourDay]:
    session.expire_all()
    stmt = select(WeComBehaviourDay).where(WeComBehaviourDay.userid == userid)
    if corp_id:
        stmt = stmt.where(WeComBehaviourDay.corp_id == corp_id)
    return {r.stat_date: r for r in session.scalars(stmt)}


def run_daily(app: Any, db_session: Any, slot: int) -> None:
    with app.app_context():
        enqueue(db_session, behaviour.ALL_JOB, {"slot": slot}, dedup_key=f"probe:{slot}")
        commit(db_session)


def test_daily_job_catches_up_days_missed_while_it_did_not_run(db_session: Any, app: Any, world: Any) -> None:
    """The job ran on Dec 2 (Nov 29..Dec 1 stored), then did not run for two weeks (outage,
    worker down). On Dec 16 it runs again: the days Dec 2..Dec 12 (well inside WeCom's
    180 days) must be pulled too, otherwise they are missing for good unless a manager notices
    and back-fills by hand. Only the 3-day re-pull window is fetched."""
    sb = world["sandbox"]
    busy = date(2026, 12, 5)
    sb.state.set_behavior(
        "advisor.zhang", ts(busy), chat_cnt=5, message_cnt=40, reply_percentage=80.0, avg_reply_time=9
    )
    with freeze_time(datetime(2026, 12, 2, 1, 0, tzinfo=UTC)):
        run_daily(app, db_session, 101)
    assert sorted(rows(db_session, "advisor.zhang")) == [date(2026, 11, 29), date(2026, 11, 30), date(2026, 12, 1)]
    with freeze_time(datetime(2026, 12, 16, 1, 0, tzinfo=UTC)):
        run_daily(app, db_session, 102)
    stored = rows(db_session, "advisor.zhang")
    expected = {date(2026, 11, 29) + timedelta(days=i) for i in range(17)}  # Nov 29 .. Dec 15
    missing = sorted(expected - set(stored))
    assert missing == [], f"days never pulled after the gap: {missing}"
    assert stored[busy].chat_cnt == 5


def test_store_backfill_includes_an_advisor_who_resigned_mid_period(
    client: Any, db_session: Any, app: Any, world: Any, make_staff: Any, staff_headers: Any
) -> None:
    """A store manager back-fills the last two weeks for every advisor of the store. Wang
    worked there until 5 days ago: his days before leaving belong to the period and to the
    store's figures. request_pull only selects ACTIVE staff, so his days are never pulled."""
    sb = world["sandbox"]
    today = behaviour.china_today()
    wang = make_staff(world["tree"].stores[0], "sales_advisor", userid="advisor.wang", status="resigned")
    wang.resigned_at = datetime.now(UTC) - timedelta(days=5)
    db_session.commit()
    worked = today - timedelta(days=10)
    sb.state.set_behavior(
        "advisor.wang", ts(worked), chat_cnt=8, message_cnt=30, reply_percentage=75.0, avg_reply_time=5
    )
    body = {"start_date": (today - timedelta(days=14)).isoformat(), "end_date": (today - timedelta(days=1)).isoformat()}
    resp = client.post(f"{URL}/pull", headers=staff_headers(world["manager"]), json=body)
    assert resp.status_code == 202
    called = {c["json"]["userid"][0] for c in sb.state.received(PATH)}
    assert "advisor.wang" in called, f"userids pulled: {called}"
    assert rows(db_session, "advisor.wang")[worked].chat_cnt == 8


def test_daily_job_still_pulls_the_last_days_of_an_advisor_who_resigned_yesterday(
    db_session: Any, app: Any, world: Any
) -> None:
    """Wang resigned on Dec 1 at 18:00 China time (directory sync marked him resigned). Dec 1 and
    the days before were never pulled (or were zeros): the 08:00 job of Dec 2 should still
    fetch his last days (WeCom answering 60111 would be skipped anyway)."""
    sb = world["sandbox"]
    from backend.org.models import Role, Staff, StaffRole

    wang = Staff(
        corp_id=world["zhang"].corp_id,
        wecom_userid="advisor.wang",
        name="王顾问",
        org_unit_id=world["tree"].stores[0].id,
        status="resigned",
        resigned_at=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
    )
    wang.role_rows = [StaffRole(role=Role.SALES_ADVISOR)]
    db_session.add(wang)
    db_session.commit()
    sb.state.add_member("advisor.wang", "王顾问", status="resigned")
    sb.state.set_behavior("advisor.wang", ts(date(2026, 12, 1)), chat_cnt=6, message_cnt=12)
    with freeze_time(datetime(2026, 12, 2, 1, 0, tzinfo=UTC)):
        run_daily(app, db_session, 103)
    stored = rows(db_session, "advisor.wang")
    assert date(2026, 12, 1) in stored, "the resigned advisor's last working day was never pulled"
    assert stored[date(2026, 12, 1)].chat_cnt == 6


def test_backfill_for_an_advisor_of_a_corp_without_wecom_app_is_refused(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any
) -> None:
    """An advisor whose corp has no WeCom app configured (taken out of the settings): the
    back-fill cannot be done. Expected a clear 422 `wecom.corp_not_configured` (as other
    requests naming a corp answer); actually 202 and a job that fails with LookupError on
    every retry until it is given up."""
    zhang = world["zhang"]
    zhang.corp_id = "wwCorpWithoutApp01"
    db_session.commit()
    today = behaviour.china_today()
    body = {
        "start_date": (today - timedelta(days=3)).isoformat(),
        "end_date": (today - timedelta(days=1)).isoformat(),
        "staff_id": zhang.id,
    }
    resp = client.post(f"{URL}/pull", headers=staff_headers(world["manager"]), json=body)
    jobs = db_session.scalars(select(OutboxJob).where(OutboxJob.name == behaviour.PULL_JOB)).all()
    detail = [(j.status, j.attempts, (j.last_error or "")[:80]) for j in jobs]
    assert (resp.status_code, (resp.get_json() or {}).get("code")) == (422, "wecom.corp_not_configured"), (
        resp.status_code,
        resp.get_json(),
        detail,
    )


def test_180_day_backfill_is_six_calls_of_one_userid_each_covering_exactly(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any
) -> None:
    sb = world["sandbox"]
    today = behaviour.china_today()
    start = today - timedelta(days=behaviour.MAX_AGE_DAYS - 1)
    wecom_ops.seed_behaviour(sb.state, "advisor.zhang", ts(start), 180)
    body = {"start_date": start.isoformat(), "end_date": today.isoformat(), "staff_id": world["zhang"].id}
    resp = client.post(f"{URL}/pull", headers=staff_headers(world["manager"]), json=body)
    assert (resp.status_code, resp.get_json()) == (202, {"enqueued": 6})
    calls = upstream_calls(sb, PATH)
    assert all(c["json"]["userid"] == ["advisor.zhang"] and "partyid" not in c["json"] for c in calls)
    ranges = sorted({(c["json"]["start_time"], c["json"]["end_time"]) for c in calls})
    assert len(ranges) == 6
    assert all((e - s) // 86400 + 1 <= 30 for s, e in ranges)
    assert ranges[0][0] == ts(start) and ranges[-1][1] == ts(today)
    assert all(ranges[i + 1][0] == ranges[i][1] + 86400 for i in range(5))  # contiguous, no overlap
    assert len(rows(db_session, "advisor.zhang")) == 180
    # one more day back is refused before anything is asked of WeCom
    before = len(sb.state.received(PATH))
    too_old = {**body, "start_date": (start - timedelta(days=1)).isoformat()}
    resp = client.post(f"{URL}/pull", headers=staff_headers(world["manager"]), json=too_old)
    assert (resp.status_code, resp.get_json()["code"]) == (422, "wecom.behaviour_range_invalid")
    assert len(sb.state.received(PATH)) == before


def test_daily_job_just_after_china_midnight_uses_china_days(db_session: Any, app: Any, world: Any) -> None:
    """2026-12-01 16:30 UTC is already Dec 2 00:30 in China: yesterday is Dec 1 (not Nov 30)."""
    sb = world["sandbox"]
    sb.state.set_behavior("advisor.zhang", ts(date(2026, 12, 1)), chat_cnt=2, message_cnt=4, reply_percentage=50.0)
    with freeze_time(datetime(2026, 12, 1, 16, 30, tzinfo=UTC)):
        run_daily(app, db_session, 201)
    calls = sb.state.received(PATH)
    assert {(c["json"]["start_time"], c["json"]["end_time"]) for c in calls} == {
        (ts(date(2026, 11, 29)), ts(date(2026, 12, 1)))
    }
    assert ts(date(2026, 12, 1)) == int(datetime(2026, 11, 30, 16, 0, tzinfo=UTC).timestamp())
    stored = rows(db_session, "advisor.zhang")
    assert sorted(stored) == [date(2026, 11, 29), date(2026, 11, 30), date(2026, 12, 1)]
    assert stored[date(2026, 12, 1)].chat_cnt == 2 and stored[date(2026, 11, 30)].reply_percentage is None


@pytest.mark.parametrize("fault", [{"mode": "down"}, {"mode": "errcode", "errcode": 45009}])
def test_backfill_failing_halfway_then_retried_and_rerun_gives_the_same_rows(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, fault: Any
) -> None:
    sb = world["sandbox"]
    today = behaviour.china_today()
    start = today - timedelta(days=59)
    wecom_ops.seed_behaviour(sb.state, "advisor.zhang", ts(start), 59)
    original = sb.state.take_fault

    def second_chunk_fails_once(service: str, path: str) -> Any:
        from flask import request

        body = request.get_json(force=True, silent=True) or {}
        if path == PATH and body.get("start_time") != ts(start):
            sb.state.take_fault = original  # type: ignore[method-assign]
            sb.state.set_fault(service="wecom", path=path, count=1, **fault)
        return original(service, path)

    sb.state.take_fault = second_chunk_fails_once  # type: ignore[method-assign]
    body = {"start_date": start.isoformat(), "end_date": (today - timedelta(days=1)).isoformat()}
    try:
        assert (
            client.post(
                f"{URL}/pull", headers=staff_headers(world["manager"]), json=body | {"staff_id": world["zhang"].id}
            ).status_code
            == 202
        )
    finally:
        sb.state.take_fault = original  # type: ignore[method-assign]
    stored = rows(db_session, "advisor.zhang")
    assert len(stored) == 30  # the first chunk only: the failed one wrote nothing
    assert max(stored) == start + timedelta(days=29)
    sb.state.expire_tokens("wecom")
    run_due_jobs(app)
    first = {
        d: (r.chat_cnt, r.reply_percentage, r.avg_reply_time) for d, r in rows(db_session, "advisor.zhang").items()
    }
    assert len(first) == 59
    client.post(f"{URL}/pull", headers=staff_headers(world["manager"]), json=body | {"staff_id": world["zhang"].id})
    again = {
        d: (r.chat_cnt, r.reply_percentage, r.avg_reply_time) for d, r in rows(db_session, "advisor.zhang").items()
    }
    assert again == first
    assert db_session.scalar(select(func.count()).select_from(WeComBehaviourDay)) == 59


def test_revised_figures_overwrite_and_vanished_reply_figures_become_null(
    db_session: Any, app: Any, world: Any
) -> None:
    sb = world["sandbox"]
    day = behaviour.china_today() - timedelta(days=2)
    corp = world["zhang"].corp_id
    sb.state.set_behavior("advisor.zhang", ts(day), chat_cnt=3, message_cnt=9, reply_percentage=66.6, avg_reply_time=7)
    with app.app_context():
        behaviour.pull(db_session, corp, "advisor.zhang", day, day)
        db_session.commit()
    sb.state.set_behavior("advisor.zhang", ts(day), chat_cnt=0, message_cnt=0, new_contact_cnt=2)
    with app.app_context():
        behaviour.pull(db_session, corp, "advisor.zhang", day, day)
        db_session.commit()
    r = rows(db_session, "advisor.zhang")[day]
    assert (r.chat_cnt, r.reply_percentage, r.avg_reply_time, r.new_contact_cnt) == (0, None, None, 2)
    sb.state.set_behavior("advisor.zhang", ts(day), chat_cnt=1, message_cnt=1, reply_percentage=0.0, avg_reply_time=0)
    with app.app_context():
        behaviour.pull(db_session, corp, "advisor.zhang", day, day)
        db_session.commit()
    r = rows(db_session, "advisor.zhang")[day]
    assert (r.reply_percentage, r.avg_reply_time) == (0.0, 0.0)  # a real 0 stays 0, not NULL


def test_daily_job_per_corp_same_userid_not_merged(db_session: Any, app: Any, world: Any, monkeypatch: Any) -> None:
    from backend.org.models import Role, Staff, StaffRole

    sb = world["sandbox"]
    with second_wecom_app(app, sb, monkeypatch) as (second, creds):
        corp_b = creds["WECOM_CORP_ID"]
        other = Staff(
            corp_id=corp_b, wecom_userid="advisor.zhang", name="另一位张", org_unit_id=world["tree"].stores[1].id
        )
        other.role_rows = [StaffRole(role=Role.SALES_ADVISOR)]
        db_session.add(other)
        db_session.commit()
        second.state.add_member("advisor.zhang", "另一位张")
        day = date(2026, 12, 1)
        sb.state.set_behavior("advisor.zhang", ts(day), chat_cnt=4, message_cnt=8)
        second.state.set_behavior("advisor.zhang", ts(day), chat_cnt=9, message_cnt=90)
        with freeze_time(datetime(2026, 12, 2, 1, 0, tzinfo=UTC)):
            run_daily(app, db_session, 301)
            run_due_jobs(app)
        assert all(c["json"]["userid"] == ["advisor.zhang"] for c in second.state.received(PATH))
        assert second.state.received(PATH) and sb.state.received(PATH)
    a = rows(db_session, "advisor.zhang", world["zhang"].corp_id)[day]
    b = rows(db_session, "advisor.zhang", corp_b)[day]
    assert (a.chat_cnt, a.staff_id) == (4, world["zhang"].id)
    assert (b.chat_cnt, b.staff_id, b.store_id) == (9, other.id, world["tree"].stores[1].id)
