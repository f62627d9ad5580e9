"""Advisor behaviour figures through the real client and the sandbox: one advisor per call,
≤ 30 days per call, the last 180 days only, stored per advisor per day (upsert), days without
chats keep reply figures NULL, the daily job re-pulls late figures, faults are retried."""

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
from tests.wecom.helpers import run_due_jobs

PATH = "/cgi-bin/externalcontact/get_user_behavior_data"
URL = "/api/workbench/v1/wecom/behaviour"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    return {
        "sandbox": sandbox_reset,
        "zhang": make_staff(tree.stores[0], "sales_advisor", userid="advisor.zhang"),
        "li": make_staff(tree.stores[0], "service_advisor", userid="advisor.li"),
        "manager": make_staff(tree.stores[0], "store_manager", userid="manager.0"),
        "far_manager": make_staff(tree.stores[3], "store_manager", userid="manager.3"),
        "tree": tree,
    }


def day_ts(d: date) -> int:
    return behaviour.day_start(d)


def rows(session: Any, userid: str) -> dict[date, WeComBehaviourDay]:
    session.expire_all()
    return {
        r.stat_date: r for r in session.scalars(select(WeComBehaviourDay).where(WeComBehaviourDay.userid == userid))
    }


def run_daily(app: Any, db_session: Any, slot: int) -> None:
    with app.app_context():
        enqueue(db_session, behaviour.ALL_JOB, {"slot": slot}, dedup_key=f"test:{slot}")
        commit(db_session)


def test_daily_pull_per_advisor_nulls_and_late_figures(db_session: Any, app: Any, world: Any) -> None:
    sb = world["sandbox"]
    nov29, nov30, dec1 = date(2026, 11, 29), date(2026, 11, 30), date(2026, 12, 1)
    sb.state.set_behavior(
        "advisor.zhang", day_ts(nov29), chat_cnt=4, message_cnt=20, reply_percentage=87.5, avg_reply_time=12
    )
    sb.state.set_behavior("advisor.zhang", day_ts(nov30), new_contact_cnt=1)  # no chats: no reply figures
    sb.state.set_behavior(
        "advisor.li", day_ts(nov29), chat_cnt=1, message_cnt=2, reply_percentage=100.0, avg_reply_time=3
    )
    # 2026-12-02 09:00 China time: the job pulls Nov 29 .. Dec 1 (Dec 1 is still all zeros).
    with freeze_time(datetime(2026, 12, 2, 1, 0, tzinfo=UTC)):
        run_daily(app, db_session, 1)
    calls = sb.state.received(PATH)
    assert {c["json"]["userid"][0] for c in calls} == {"advisor.li", "advisor.zhang"}
    assert all(len(c["json"]["userid"]) == 1 for c in calls)  # one advisor per call: no merged figures
    assert {(c["json"]["start_time"], c["json"]["end_time"]) for c in calls} == {(day_ts(nov29), day_ts(dec1))}
    zhang = rows(db_session, "advisor.zhang")
    assert sorted(zhang) == [nov29, nov30, dec1]
    assert (zhang[nov29].reply_percentage, zhang[nov29].avg_reply_time, zhang[nov29].chat_cnt) == (87.5, 12.0, 4)
    assert (zhang[nov30].reply_percentage, zhang[nov30].avg_reply_time) == (None, None)  # NULL, not 0
    assert zhang[nov30].new_contact_cnt == 1 and zhang[nov30].staff_id == world["zhang"].id
    assert rows(db_session, "advisor.li")[nov29].reply_percentage == 100.0  # li's own, not merged

    # The figures for Dec 1 come in late; the next morning's job re-pulls it (upsert, no duplicates).
    sb.state.set_behavior(
        "advisor.zhang", day_ts(dec1), chat_cnt=6, message_cnt=30, reply_percentage=50.0, avg_reply_time=40
    )
    with freeze_time(datetime(2026, 12, 3, 1, 0, tzinfo=UTC)):
        run_daily(app, db_session, 2)
    zhang = rows(db_session, "advisor.zhang")
    assert sorted(zhang) == [nov29, nov30, dec1, date(2026, 12, 2)]
    assert (zhang[dec1].chat_cnt, zhang[dec1].reply_percentage, zhang[dec1].avg_reply_time) == (6, 50.0, 40.0)
    assert db_session.scalar(select(func.count()).select_from(WeComBehaviourDay)) == 8


def test_backfill_is_chunked_by_30_days_and_read_in_scope(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, monkeypatch: Any
) -> None:
    sb = world["sandbox"]
    today = behaviour.china_today()
    start, end = today - timedelta(days=59), today - timedelta(days=1)
    quiet = wecom_ops.seed_behaviour(sb.state, "advisor.zhang", day_ts(start), 59)
    headers = staff_headers(world["manager"])
    body = {"start_date": start.isoformat(), "end_date": end.isoformat(), "staff_id": world["zhang"].id}
    resp = client.post(f"{URL}/pull", headers=headers, json=body)
    assert (resp.status_code, resp.get_json()) == (202, {"enqueued": 2})
    # (a call answered "invalid token" is sent again with a fresh one: distinct ranges count)
    ranges = {(c["json"]["start_time"], c["json"]["end_time"]) for c in sb.state.received(PATH)}
    spans = sorted((e - s) // 86400 + 1 for s, e in ranges)
    assert spans == [29, 30]
    stored = rows(db_session, "advisor.zhang")
    assert len(stored) == 59
    nulls = {d for d, r in stored.items() if r.reply_percentage is None}
    assert {day_ts(d) for d in nulls} == set(quiet) and all(stored[d].avg_reply_time is None for d in nulls)
    assert all(r.reply_percentage is not None and r.reply_percentage > 0 for d, r in stored.items() if d not in nulls)

    listed = client.get(
        URL, headers=headers, query_string={"start_date": start.isoformat(), "end_date": end.isoformat()}
    )
    items = listed.get_json()
    assert listed.status_code == 200 and len(items) == 59
    assert sum(1 for i in items if i["reply_percentage"] is None) == len(quiet)
    far = client.get(
        URL,
        headers=staff_headers(world["far_manager"]),
        query_string={"start_date": start.isoformat(), "end_date": end.isoformat()},
    )
    assert far.status_code == 200 and far.get_json() == []
    # A listing larger than the cap is refused with a clear code, never cut short.
    monkeypatch.setattr(behaviour, "LIST_MAX", 58)
    capped = client.get(
        URL, headers=headers, query_string={"start_date": start.isoformat(), "end_date": end.isoformat()}
    )
    assert (capped.status_code, capped.get_json()["code"]) == (422, "wecom.behaviour_too_many")


def test_backfill_of_an_advisor_in_another_corp_asks_that_corp(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, monkeypatch: Any
) -> None:
    """The same userid can be two people in two corps: an advisor of the second corp is pulled
    from the second corp's app, not the primary one."""
    from tests.wecom.helpers import second_wecom_app

    today = behaviour.china_today()
    with second_wecom_app(app, world["sandbox"], monkeypatch) as (second, creds):
        zhang = world["zhang"]
        zhang.corp_id = creds["WECOM_CORP_ID"]
        db_session.commit()
        second.state.add_member("advisor.zhang", "另一位张顾问")
        second.state.set_behavior("advisor.zhang", day_ts(today - timedelta(days=2)), chat_cnt=3, message_cnt=9)
        body = {
            "start_date": (today - timedelta(days=3)).isoformat(),
            "end_date": (today - timedelta(days=1)).isoformat(),
        }
        resp = client.post(f"{URL}/pull", headers=staff_headers(world["manager"]), json=body | {"staff_id": zhang.id})
        assert (resp.status_code, resp.get_json()) == (202, {"enqueued": 1})
        assert len(second.state.received(PATH)) >= 1
        assert world["sandbox"].state.received(PATH) == []
    stored = rows(db_session, "advisor.zhang")
    assert {r.corp_id for r in stored.values()} == {creds["WECOM_CORP_ID"]}
    assert stored[today - timedelta(days=2)].chat_cnt == 3


def test_bad_ranges_and_scope_are_clear_4xx(client: Any, world: Any, staff_headers: Any) -> None:
    headers = staff_headers(world["manager"])
    advisor_headers = staff_headers(world["zhang"])
    far_advisor = world["far_manager"].id
    today = behaviour.china_today()
    cases = [
        (
            {"start_date": (today - timedelta(days=200)).isoformat(), "end_date": today.isoformat()},
            422,
            "wecom.behaviour_range_invalid",
        ),
        (
            {"start_date": today.isoformat(), "end_date": (today + timedelta(days=1)).isoformat()},
            422,
            "wecom.behaviour_range_invalid",
        ),
        (
            {"start_date": today.isoformat(), "end_date": (today - timedelta(days=1)).isoformat()},
            422,
            "request.invalid",
        ),
        ({"start_date": "yesterday", "end_date": today.isoformat()}, 422, "request.invalid"),
        (
            {"start_date": today.isoformat(), "end_date": today.isoformat(), "staff_id": far_advisor},
            404,
            "staff.not_found",
        ),
    ]
    for body, status, code in cases:
        resp = client.post(f"{URL}/pull", headers=headers, json=body)
        assert (resp.status_code, resp.get_json()["code"]) == (status, code), body
    resp = client.post(f"{URL}/pull", headers=advisor_headers, json=cases[0][0])
    assert (resp.status_code, resp.get_json()["code"]) == (403, "auth.forbidden")
    for query in ({}, {"start_date": "2026-13-01", "end_date": "2026-12-01"}, {"start_date": today.isoformat()}):
        resp = client.get(URL, headers=headers, query_string=query)
        assert (resp.status_code, resp.get_json()["code"]) == (422, "request.invalid"), query
    hidden = client.get(
        URL,
        headers=headers,
        query_string={"start_date": today.isoformat(), "end_date": today.isoformat(), "staff_id": far_advisor},
    )
    assert (hidden.status_code, hidden.get_json()["code"]) == (404, "staff.not_found")


@pytest.mark.parametrize("fault", [{"mode": "errcode", "errcode": 45009}, {"mode": "down"}])
def test_upstream_failure_is_retried_nothing_stored_meanwhile(
    db_session: Any, app: Any, world: Any, fault: Any
) -> None:
    sb = world["sandbox"]
    sb.state.set_fault(service="wecom", path=PATH, count=1, **fault)
    with app.app_context():
        enqueue(
            db_session,
            behaviour.PULL_JOB,
            {"corp_id": world["zhang"].corp_id, "userid": "advisor.zhang", "start": "2026-11-01", "end": "2026-11-30"},
        )
        commit(db_session)
    assert rows(db_session, "advisor.zhang") == {}
    job = db_session.scalars(select(OutboxJob).where(OutboxJob.name == behaviour.PULL_JOB)).one()
    assert (job.status, job.attempts) == ("pending", 1)
    sb.state.expire_tokens("wecom")  # the retry meets 42001: the token is refreshed once
    tokens_before = sb.hits("/cgi-bin/gettoken")
    run_due_jobs(app)
    assert len(rows(db_session, "advisor.zhang")) == 30
    assert sb.hits("/cgi-bin/gettoken") == tokens_before + 1


def test_unknown_member_is_skipped_not_retried(db_session: Any, app: Any, world: Any) -> None:
    with app.app_context():
        assert behaviour.pull(db_session, world["zhang"].corp_id, "ghost", date(2026, 11, 1), date(2026, 11, 2)) == 0
        with pytest.raises(ValueError):
            behaviour.pull(db_session, world["zhang"].corp_id, "advisor.zhang", date(2026, 10, 1), date(2026, 11, 30))
