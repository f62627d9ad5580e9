"""WeCom faults: upstream failures (retry, dead letter, replay), expired tokens, a shuffled burst
with duplicates, and a Redis outage while events arrive."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from backend.platform.jobs import Dispatcher, OutboxJob
from backend.touchpoints.models import Touchpoint
from backend.wecom.models import FriendStatus, WeComAlert, WeComFriend, WeComRawEvent
from tests.wecom.helpers import contact_xml, post_event, run_due_jobs
from tests.wecom.helpers import count_rows as n

ADVISOR = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    advisor = make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR)
    make_staff(tree.stores[0], "store_manager", userid="advisor.li")
    admin = make_staff(tree.group, "group_admin", userid="admin")
    return {"sandbox": sandbox_reset, "advisor": advisor, "admin": admin}


@pytest.mark.parametrize(
    "fault",
    [
        {"mode": "down"},  # HTTP 503
        {"mode": "errcode", "errcode": 45009},  # rate limited
    ],
)
def test_upstream_failure_is_retried_then_applied_once(client: Any, db_session: Any, world: Any, fault: Any) -> None:
    sb = world["sandbox"]
    sb.state.set_fault(service="wecom", path="/cgi-bin/externalcontact/get", count=2, **fault)
    assert post_event(
        client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, int(time.time()))
    ).data == (b"success")
    raw = db_session.scalars(select(WeComRawEvent)).one()
    assert (raw.status, raw.attempts) == ("retrying", 1)
    assert n(db_session, WeComFriend) == 0 and n(db_session, Touchpoint) == 0  # nothing half-applied
    run_due_jobs(client.application)
    db_session.expire_all()
    assert (raw.status, raw.attempts, raw.last_error) == ("processed", 3, None)
    assert n(db_session, Touchpoint, Touchpoint.kind == "friend_added") == 1


def test_timeout_then_expired_token_are_survived(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sandbox"]
    sb.state.set_fault("slow", seconds=3, service="wecom", path="/cgi-bin/externalcontact/get", count=1)
    post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, int(time.time())))
    assert db_session.scalars(select(WeComRawEvent.last_error)).one().startswith("UpstreamError")
    sb.state.expire_tokens("wecom")  # the next call answers 42001: the client refreshes once
    tokens_before = sb.hits("/cgi-bin/gettoken", "wecom")
    run_due_jobs(client.application)
    assert db_session.scalars(select(WeComRawEvent.status)).one() == "processed"
    assert sb.hits("/cgi-bin/gettoken", "wecom") == tokens_before + 1


def test_permanent_failure_is_dead_lettered_visible_and_replayable(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    sb = world["sandbox"]
    sb.state.set_fault("errcode", errcode=-1, service="wecom", path="/cgi-bin/externalcontact/get")
    post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, int(time.time())))
    run_due_jobs(client.application)
    raw = db_session.scalars(select(WeComRawEvent)).one()
    assert (raw.status, raw.attempts) == ("dead", client.application.config["JOB_MAX_ATTEMPTS"])
    assert n(db_session, WeComFriend) == 0 and n(db_session, Touchpoint) == 0

    admin_h = staff_headers(world["admin"])
    page = client.get("/api/workbench/v1/wecom/events?status=dead", headers=admin_h).get_json()
    assert [e["id"] for e in page["items"]] == [raw.id]
    detail = client.get(f"/api/workbench/v1/wecom/events/{raw.id}", headers=admin_h).get_json()
    assert "add_external_contact" in detail["xml"] and "errcode=-1" in detail["last_error"]
    advisor_h = staff_headers(world["advisor"])
    assert client.get("/api/workbench/v1/wecom/events", headers=advisor_h).status_code == 403
    assert client.get(f"/api/workbench/v1/wecom/events/{raw.id}", headers=advisor_h).status_code == 404

    sb.state.clear_faults()
    resp = client.post(f"/api/workbench/v1/wecom/events/{raw.id}/replay", headers=admin_h, json={"reason": "fixed"})
    assert resp.status_code == 202
    db_session.expire_all()
    assert raw.status == "processed"
    assert n(db_session, Touchpoint, Touchpoint.kind == "friend_added") == 1
    again = client.post(f"/api/workbench/v1/wecom/events/{raw.id}/replay", headers=admin_h, json={})
    assert (again.status_code, again.get_json()["code"]) == (409, "wecom.event_not_replayable")


def _burst_events(sb: Any, base: int) -> list[str]:
    """add / del / re-add / edit sequences for 20 customers x 2 advisors (distinct CreateTimes)."""
    events = []
    for c in range(20):
        ext = f"wmBurst{c:03d}"
        sb.state.add_external_contact(ext, f"客户{c}", unionid=f"oBurst{c}")
        for a, userid in enumerate((ADVISOR, "advisor.li")):
            sb.state.add_follow(userid, ext)
            t = base + c * 10 + a * 5
            events.append(contact_xml(sb, "add_external_contact", userid, ext, t))
            if c % 3 == 0:
                events.append(contact_xml(sb, "del_follow_user", userid, ext, t + 1))
            if c % 6 == 0:
                events.append(contact_xml(sb, "add_external_contact", userid, ext, t + 2))
            if c % 4 == 1:
                events.append(contact_xml(sb, "edit_external_contact", userid, ext, t + 3))
    return events


def _snapshot(session: Any) -> dict[str, Any]:
    session.expire_all()
    friends = sorted(
        (f.userid, f.external_userid, f.status.value, f.version) for f in session.scalars(select(WeComFriend))
    )
    touchpoints = Counter(
        (k, e)
        for k, e in session.execute(
            select(Touchpoint.kind, WeComFriend.external_userid).join(
                WeComFriend, WeComFriend.customer_id == Touchpoint.customer_id
            )
        ).all()
    )
    alerts = sorted((a.kind.value, a.resolved_at is None) for a in session.scalars(select(WeComAlert)))
    return {"friends": friends, "touchpoints": touchpoints, "alerts": alerts}


def test_shuffled_burst_with_duplicates_ends_like_in_order(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sandbox"]
    events = _burst_events(sb, int(time.time()) - 200)
    for xml in events:  # each distinct event once, in order
        assert post_event(client, sb, xml).status_code == 200
    expected = _snapshot(db_session)
    assert len(events) >= 70 and expected["alerts"]

    db_session.execute(WeComAlert.__table__.delete())
    for table in (
        "wecom_friend_tag",
        "wecom_friend",
        "wecom_app_message",
        "touchpoint",
        "customer_kind_count",
        "customer_profile",
        "customer_advisor",
        "customer_identity",
        "wecom_raw_event",
        "outbox_job",
    ):
        db_session.execute(WeComFriend.metadata.tables[table].delete())
    db_session.execute(WeComFriend.metadata.tables["customer"].delete())
    db_session.commit()

    rng = random.Random(7)
    burst = events + rng.sample(events, 60) + rng.sample(events, 30)  # duplicates, some three times
    rng.shuffle(burst)
    for xml in burst:
        assert post_event(client, sb, xml).status_code == 200
    assert n(db_session, WeComRawEvent) == len(events)
    assert _snapshot(db_session) == expected
    lost = {(f[0], f[1]) for f in expected["friends"] if f[2] == FriendStatus.DELETED_BY_CUSTOMER.value}
    assert len(lost) == 2 * len([c for c in range(20) if c % 3 == 0 and c % 6 != 0])


@pytest.mark.redis
def test_redis_down_while_events_arrive_then_all_processed(
    client: Any, db_session: Any, world: Any, redis_url: str, monkeypatch: Any
) -> None:
    import redis
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    from backend.platform import intake, jobs
    from backend.platform.jobs import relay

    app = client.application
    sb = world["sandbox"]
    down = Dispatcher(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2), max_attempts=3)
    monkeypatch.setitem(app.extensions, "dealerloop.jobs", down)
    t = int(time.time())
    for i, ext in enumerate(["wmDemoCustomer001", "wmDemoCustomer002"]):
        resp = post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, ext, t + i))
        assert resp.status_code == 200 and resp.data == b"success"
    # acknowledged and stored; the acknowledgement never needs Redis, and no job exists yet
    assert n(db_session, WeComRawEvent, WeComRawEvent.status == "accepted") == 2
    assert n(db_session, OutboxJob) == 0
    assert n(db_session, WeComFriend) == 0

    up_client = redis.Redis.from_url(redis_url)
    up_client.flushdb()
    try:
        monkeypatch.setitem(app.extensions, "dealerloop.jobs", Dispatcher(up_client, max_attempts=3))
        # a worker's pump admits them (db_session ends its savepoint first: the app contexts
        # below remove it when they pop)
        db_session.close()
        assert intake.pump_once(app, "wecom") == 2
        assert n(db_session, WeComRawEvent, WeComRawEvent.status == "received") == 2
        assert n(db_session, OutboxJob, OutboxJob.status == "enqueued") == 2  # handed to RQ at commit
        assert relay(app=app) == 0
        db_session.close()
        jobs.set_worker_app(app)
        SimpleWorker(list(jobs.QUEUES), connection=up_client, serializer=JSONSerializer).work(burst=True)
    finally:
        up_client.flushdb()
        up_client.close()
    assert n(db_session, WeComRawEvent, WeComRawEvent.status == "processed") == 2
    assert n(db_session, WeComFriend, WeComFriend.status == FriendStatus.ACTIVE) == 2


WIPE = (
    "wecom_alert",
    "wecom_channel_fact",
    "wecom_friend_tag",
    "wecom_friend",
    "wecom_app_message",
    "wecom_welcome_message",
    "touchpoint",
    "customer_kind_count",
    "customer_profile",
    "customer_advisor",
    "customer_identity",
    "wecom_raw_event",
    "outbox_job",
    "customer",
)


def _wipe_committed(app: Any) -> None:
    from sqlalchemy import text

    from backend.platform.db import db

    with app.app_context(), db.engine.begin() as conn:
        conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
        for table in WIPE:
            conn.execute(WeComFriend.metadata.tables[table].delete())
        conn.execute(text("SET FOREIGN_KEY_CHECKS=1"))


def _thousand_events(sb: Any, base: int) -> list[str]:
    """~350 distinct events: adds, losses, re-adds, edits and advisor deletions of 100 customers x 2
    advisors (each costs ~50 statements; the duplicates that fill the burst up to 1,000 are cheap)."""
    events = []
    for c in range(100):
        ext = f"wmK{c:04d}"
        sb.state.add_external_contact(ext, f"客户{c}", unionid=f"oK{c}")
        for a, userid in enumerate((ADVISOR, "advisor.li")):
            sb.state.add_follow(userid, ext)
            t = base + c * 10 + a * 5
            events.append(contact_xml(sb, "add_external_contact", userid, ext, t))
            if c % 3 == 0:
                events.append(contact_xml(sb, "del_follow_user", userid, ext, t + 1))
            if c % 6 == 0:
                events.append(contact_xml(sb, "add_external_contact", userid, ext, t + 2))
            if c % 4 == 1:
                events.append(contact_xml(sb, "edit_external_contact", userid, ext, t + 3))
            if c % 10 == 7:
                events.append(contact_xml(sb, "del_external_contact", userid, ext, t + 4))
    return events


@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_burst_of_a_thousand_shuffled_with_duplicates_over_http_ends_like_in_order(
    app: Any, client: Any, sandbox_reset: Any, tree: Any, make_staff: Any
) -> None:
    """In order through the test client, then 1,000 deliveries (the distinct events plus
    duplicates, shuffled) over real HTTP from 8 threads, as WeCom bursts: same end state."""
    from backend.platform.db import db
    from integrations.sandbox.wecom_emit import FlaskClientTransport, emit
    from tests.wecom.helpers import URL, live_server

    sb = sandbox_reset
    make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR)
    make_staff(tree.stores[0], "store_manager", userid="advisor.li")
    events = _thousand_events(sb, int(time.time()) - 5000)
    assert 300 <= len(events) < 500

    in_order = emit(URL, events, sb.credentials, client=FlaskClientTransport(client))
    assert in_order.acknowledged == len(events)
    with app.app_context():
        session = db.session_factory()
        expected = _snapshot(session)
        session.close()
    assert expected["alerts"] and len(expected["friends"]) == 200
    _wipe_committed(app)

    with live_server(app) as url:
        burst = emit(url, events, sb.credentials, duplicates=1000 - len(events), shuffle=True, seed=1000, concurrency=8)
    assert len(burst.deliveries) == 1000
    assert burst.acknowledged == 1000, burst.failed[:3]
    run_due_jobs(app)  # events whose try lost a lock race are retried by the outbox
    with app.app_context():
        session = db.session_factory()
        assert n(session, WeComRawEvent) == len(events)
        assert n(session, WeComRawEvent, WeComRawEvent.status != "processed") == 0
        assert _snapshot(session) == expected
        session.close()


def _waiting_for_a_lock(conn: Any) -> int:
    """The connection (MySQL thread id) of this test's database that is reading the event's row
    FOR UPDATE, i.e. waiting for `conn`'s lock on it."""
    from sqlalchemy import text

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        waiting = conn.execute(
            text(
                "SELECT id FROM information_schema.processlist WHERE db = DATABASE() "
                "AND id <> CONNECTION_ID() AND info LIKE 'SELECT wecom_raw_event.%FOR UPDATE'"
            )  # this test's database: another xdist worker's tests run on the same server
        ).scalar()
        if waiting:
            return int(waiting)
        time.sleep(0.05)
    raise AssertionError("the job never read the event's row")


@pytest.mark.redis
@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_an_event_whose_job_keeps_losing_its_database_is_dead_lettered_and_replayable(
    client: Any, db_session: Any, world: Any, staff_headers: Any, redis_dispatcher: Any
) -> None:
    """Every try of the processing job loses its connection (killed while it waits for the
    event's row): a database failing under the job, which the event's own tries do not count.
    When the outbox gives up, the event is a dead letter that an admin sees and replays; it
    does not stay `received` with no job left to run it."""
    import threading

    from sqlalchemy import text

    from backend.platform import intake, jobs
    from backend.platform.db import db

    app = client.application
    sb = world["sandbox"]
    admin_h = staff_headers(world["admin"])
    xml = contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, int(time.time()))
    assert post_event(client, sb, xml).data == b"success"
    raw_id = db_session.scalars(select(WeComRawEvent.id)).one()
    db_session.close()
    (process_job,) = intake.admit_now(app, "wecom", None).deferred_job_ids

    for _ in range(redis_dispatcher_attempts(app)):
        outcome: list[Any] = []

        def run_job(outcome: list[Any] = outcome) -> None:
            try:
                outcome.append(jobs.execute(process_job, app=app))
            except Exception as exc:  # what RQ would see: it retries the job
                outcome.append(exc)

        with db.engine.connect() as holder:  # another transaction holds the event's row
            holder.execute(text("SELECT id FROM wecom_raw_event WHERE id = :id FOR UPDATE"), {"id": raw_id})
            worker = threading.Thread(target=run_job)
            worker.start()
            holder.execute(text(f"KILL {_waiting_for_a_lock(holder)}"))
            holder.rollback()  # the failure is recorded in a new transaction, which locks the row too
        worker.join(15)
        assert len(outcome) == 1 and isinstance(outcome[0], Exception), outcome

    try:
        assert db_session.get(OutboxJob, process_job).status == "failed"
        raw = db_session.get(WeComRawEvent, raw_id)
        assert raw.status == "dead" and raw.last_error.startswith("processing job gave up")
        assert n(db_session, WeComFriend) == 0 and n(db_session, Touchpoint) == 0
        page = client.get("/api/workbench/v1/wecom/events?status=dead", headers=admin_h).get_json()
        assert [e["id"] for e in page["items"]] == [raw_id]
    finally:
        db_session.close()
    resp = client.post(f"/api/workbench/v1/wecom/events/{raw_id}/replay", headers=admin_h, json={"reason": "db back"})
    assert resp.status_code == 202
    try:
        (replayed,) = db_session.scalars(select(OutboxJob.id).where(OutboxJob.id != process_job)).all()
    finally:
        db_session.close()
    assert jobs.execute(replayed, app=app) == "done"  # what the RQ worker does with it
    try:
        assert db_session.get(WeComRawEvent, raw_id).status == "processed"
        assert n(db_session, Touchpoint, Touchpoint.kind == "friend_added") == 1
    finally:
        db_session.close()


def redis_dispatcher_attempts(app: Any) -> int:
    return int(app.extensions["dealerloop.jobs"].max_attempts)
