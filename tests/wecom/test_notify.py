"""Notifications to advisors (WeCom `message/send`) through the real client and the sandbox:
text and text cards, deduplication by key, per-recipient sliding window (Redis, and the database
when Redis is down), failures retried through the outbox, everything sent recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from backend.platform.db import commit, rollback
from backend.platform.jobs import OutboxJob
from backend.wecom import notify
from backend.wecom import service as wecom_service
from backend.wecom.models import AppMessage
from backend.wecom.ops_models import AppMessageRecipient
from tests.wecom.helpers import run_due_jobs

ADVISOR = "advisor.zhang"
SEND = "/cgi-bin/message/send"


@pytest.fixture
def corp(app: Any, sandbox_reset: Any) -> str:
    return app.config["WECOM_CORP_ID"]


def count(session: Any, model: Any, *where: Any) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).where(*where))


def sent_bodies(sb: Any) -> list[dict[str, Any]]:
    return list(sb.state.app_messages)


def test_text_and_card_are_sent_once_per_key_and_recorded(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any
) -> None:
    sb = sandbox_reset
    with app.app_context():
        first = notify.new_lead(db_session, corp, "L1", ADVISOR, "陈先生", "抖音")
        again = notify.new_lead(db_session, corp, "L1", ADVISOR, "陈先生", "抖音")  # same key: nothing new
        notify.lost_customer(db_session, corp, "A9", [ADVISOR, "advisor.li", ADVISOR], "刘女士", "王顾问")
        commit(db_session)
    assert len(first) == 1 and again == []
    bodies = sent_bodies(sb)
    assert len(bodies) == 3
    card = next(b for b in bodies if b["msgtype"] == "textcard")
    assert card["touser"] == ADVISOR and card["agentid"] == int(app.config["WECOM_AGENT_ID"])
    assert card["textcard"]["title"] == "新线索" and "陈先生" in card["textcard"]["description"]
    primary = wecom_service.app_key(app.extensions["dealerloop.gateways"].wecom)  # the app it came through
    assert (
        card["textcard"]["url"].endswith(f"/workbench/leads/L1?msg={first[0].id}&app={primary}")
        and card["textcard"]["btntxt"] == "详情"
    )
    texts = sorted(b["touser"] for b in bodies if b["msgtype"] == "text")
    assert texts == ["advisor.li", ADVISOR]  # one message per recipient, duplicates dropped
    messages = db_session.scalars(select(AppMessage).order_by(AppMessage.id)).all()
    assert [(m.kind, m.status, bool(m.msgid)) for m in messages] == [
        ("new_lead", "sent", True),
        ("lost_customer", "sent", True),
        ("lost_customer", "sent", True),
    ]
    assert count(db_session, AppMessageRecipient) == 3


def test_nothing_is_sent_for_a_rolled_back_change(app: Any, db_session: Any, corp: str, sandbox_reset: Any) -> None:
    with app.app_context():
        notify.new_consultation(db_session, corp, "C1", ADVISOR, "陈先生", "保养多少钱？")
        rollback(db_session)
    assert count(db_session, AppMessage) == 0 and sandbox_reset.state.app_messages == []


def test_bad_calls_are_refused(app: Any, db_session: Any, corp: str) -> None:
    with app.app_context():
        with pytest.raises(ValueError):
            notify.notify(db_session, corp, "new_lead", "k", [ADVISOR])
        with pytest.raises(ValueError):
            notify.notify(db_session, corp, "gossip", "k", [ADVISOR], text="hi")


def test_window_in_the_database_defers_over_the_limit(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any, monkeypatch: Any
) -> None:
    sb = sandbox_reset
    monkeypatch.setitem(app.config, "WECOM_NOTIFY_RATE_LIMIT", 3)
    monkeypatch.setitem(app.config, "WECOM_NOTIFY_RATE_WINDOW", 600)
    assert app.extensions["dealerloop.redis"] is None  # this app has no Redis: the database counts
    start = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    with freeze_time(start) as frozen:
        with app.app_context():
            for i in range(5):
                notify.weak_item(db_session, corp, f"W{i}", [ADVISOR], f"第{i}项")
                frozen.tick(1)
            notify.weak_item(db_session, corp, "other", ["advisor.li"], "别人的")  # another recipient
            commit(db_session)
        statuses = db_session.scalars(select(AppMessage.status).order_by(AppMessage.id)).all()
        assert statuses == ["sent", "sent", "sent", "deferred", "deferred", "sent"]
        assert len(sb.state.app_messages) == 4
        deferred = db_session.scalars(
            select(OutboxJob).where(OutboxJob.status == "pending", OutboxJob.run_after.is_not(None))
        ).all()
        assert len(deferred) == 2
        assert all(j.run_after >= start + timedelta(seconds=600) for j in deferred)  # when the window frees

        frozen.move_to(start + timedelta(seconds=700))
        run_due_jobs(app)
    assert db_session.scalars(select(AppMessage.status)).all() == ["sent"] * 6
    assert len(sb.state.app_messages) == 6


@pytest.mark.redis
def test_window_in_redis_and_degrading_to_the_database_when_redis_is_down(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any, monkeypatch: Any, redis_url: str
) -> None:
    import redis

    up = redis.Redis.from_url(redis_url)
    key = f"dealerloop:wecom:notify:{corp}:{ADVISOR}"
    up.delete(key)
    monkeypatch.setitem(app.config, "WECOM_NOTIFY_RATE_LIMIT", 2)
    monkeypatch.setitem(app.extensions, "dealerloop.redis", up)
    try:
        with app.app_context():
            for i in range(3):
                notify.weak_item(db_session, corp, f"R{i}", [ADVISOR], f"第{i}项")
            commit(db_session)
        assert db_session.scalars(select(AppMessage.status).order_by(AppMessage.id)).all() == [
            "sent",
            "sent",
            "deferred",
        ]
        assert up.zcard(key) == 2  # the deferred one gave its reservation back

        # Redis goes away: the limit still holds, counted from the recipient rows in the database.
        monkeypatch.setitem(app.extensions, "dealerloop.redis", redis.Redis(port=1, socket_connect_timeout=0.2))
        with app.app_context():
            notify.weak_item(db_session, corp, "R3", [ADVISOR], "第3项")
            notify.weak_item(db_session, corp, "R4", ["advisor.li"], "别人的")
            commit(db_session)
        assert db_session.scalars(select(AppMessage.status).order_by(AppMessage.id)).all() == [
            "sent",
            "sent",
            "deferred",
            "deferred",
            "sent",
        ]
        assert len(sandbox_reset.state.app_messages) == 3
    finally:
        up.delete(key)
        up.close()


@pytest.mark.parametrize(
    "fault",
    [
        {"mode": "errcode", "errcode": 45009},
        {"mode": "down"},
    ],
)
def test_failed_sends_are_retried_through_the_outbox(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any, fault: Any
) -> None:
    sb = sandbox_reset
    sb.state.set_fault(service="wecom", path=SEND, count=2, **fault)
    with app.app_context():
        notify.new_lead(db_session, corp, "L7", ADVISOR, "陈先生", "官网")
        commit(db_session)
    message = db_session.scalars(select(AppMessage)).one()
    assert (message.status, message.attempts) == ("retrying", 1)
    assert message.last_error.startswith("wecom ")
    assert count(db_session, AppMessageRecipient) == 0
    sb.state.expire_tokens("wecom")  # a 42001 on the way: refreshed once by the client
    run_due_jobs(app)
    db_session.refresh(message)
    assert (message.status, message.attempts, message.last_error) == ("sent", 2, None)
    assert len(sb.state.app_messages) == 1 and count(db_session, AppMessageRecipient) == 1


def test_a_send_that_never_succeeds_is_left_failed(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any, monkeypatch: Any
) -> None:
    sb = sandbox_reset
    monkeypatch.setitem(app.config, "WECOM_NOTIFY_MAX_ATTEMPTS", 3)
    sb.state.set_fault("errcode", errcode=-1, service="wecom", path=SEND)
    with app.app_context():
        notify.weak_item(db_session, corp, "F1", [ADVISOR], "一直失败")
        commit(db_session)
    run_due_jobs(app)
    message = db_session.scalars(select(AppMessage)).one()
    db_session.refresh(message)
    assert (message.status, message.attempts) == ("failed", 3)
    assert "errcode=-1" in message.last_error
    assert count(db_session, OutboxJob, OutboxJob.status == "pending") == 0
    assert sb.state.app_messages == []


def test_a_message_wecom_refuses_outright_fails_at_once(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any
) -> None:
    """81013 (no valid recipient) will be the answer however often it is sent: no retries."""
    sb = sandbox_reset
    sb.state.set_fault("errcode", errcode=81013, service="wecom", path=SEND)
    with app.app_context():
        notify.weak_item(db_session, corp, "F2", [ADVISOR], "收不到")
        commit(db_session)
    run_due_jobs(app)
    message = db_session.scalars(select(AppMessage)).one()
    db_session.refresh(message)
    assert (message.status, message.attempts) == ("failed", 1)
    assert sb.hits(SEND, "wecom") == 1
    assert count(db_session, OutboxJob, OutboxJob.status == "pending") == 0


def test_admins_see_what_was_sent_and_what_failed(
    app: Any,
    client: Any,
    db_session: Any,
    corp: str,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
) -> None:
    admin = staff_headers(make_staff(tree.group, "group_admin"))
    advisor = staff_headers(make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR))
    sandbox_reset.state.set_fault("errcode", errcode=-1, service="wecom", path=SEND, count=1)
    with app.app_context():
        notify.weak_item(db_session, corp, "V1", ["advisor.li"], "失败一次")
        notify.new_lead(db_session, corp, "V2", ADVISOR, "陈先生", "官网")
        commit(db_session)
    url = "/api/workbench/v1/wecom/app-messages"
    listed = client.get(url, headers=admin).get_json()
    assert [(m["kind"], m["status"], m["touser"]) for m in listed] == [
        ("new_lead", "sent", [ADVISOR]),
        ("weak_item", "retrying", ["advisor.li"]),
    ]
    assert listed[1]["attempts"] == 1 and "errcode=-1" in listed[1]["last_error"]
    assert [m["kind"] for m in client.get(url, headers=admin, query_string={"userid": ADVISOR}).get_json()] == [
        "new_lead"
    ]
    bad = client.get(url, headers=admin, query_string={"status": "lost"})
    assert (bad.status_code, bad.get_json()["code"]) == (422, "request.invalid")
    denied = client.get(url, headers=advisor)
    assert (denied.status_code, denied.get_json()["code"]) == (403, "auth.forbidden")


def test_one_userid_in_two_corps_gets_each_corps_message(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any, monkeypatch: Any
) -> None:
    """Consultations and lead escalations notify every corp with the same key, and a userid
    (a common pinyin) can be two people in two corps: each gets their corp's message. A corp
    with no app in the settings fails its message at once, recorded with why."""
    from tests.wecom.helpers import second_wecom_app

    with second_wecom_app(app, sandbox_reset, monkeypatch) as (second, creds):
        second.state.add_member(ADVISOR, "另一位张顾问")
        with app.app_context():
            for corp_id in (corp, creds["WECOM_CORP_ID"], "wwNoSuchAppCorp01"):
                assert len(
                    notify.notify(db_session, corp_id, "new_consultation", "consult:42", [ADVISOR], text="新咨询")
                )
            commit(db_session)
        assert [m["touser"] for m in sandbox_reset.state.app_messages] == [ADVISOR]
        assert [m["touser"] for m in second.state.app_messages] == [ADVISOR]
    messages = db_session.scalars(select(AppMessage).order_by(AppMessage.id)).all()
    assert [m.status for m in messages] == ["sent", "sent", "failed"]
    assert "no WeCom app" in messages[2].last_error
    assert count(db_session, OutboxJob, OutboxJob.status == "pending") == 0


def test_a_send_whose_answer_was_lost_reaches_the_advisor_once(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any
) -> None:
    """WeCom takes the message but answers after our timeout: the retry sends the same request,
    which WeCom's duplicate check drops (enable_duplicate_check), so the advisor gets it once."""
    import time

    sb = sandbox_reset
    with app.app_context():  # a first message, so that the client holds a token the sandbox knows
        notify.weak_item(db_session, corp, "T0", [ADVISOR], "热身")
        commit(db_session)
    assert len(sb.state.app_messages) == 1
    sb.state.app_messages.clear()
    requests_before = sb.hits(SEND, "wecom")
    sb.state.set_fault("slow", seconds=3, service="wecom", path=SEND, count=1)  # client timeout: 2 s
    with app.app_context():
        notify.weak_item(db_session, corp, "T1", [ADVISOR], "回复超时")
        commit(db_session)
    message = db_session.scalars(
        select(AppMessage).where(AppMessage.kind == "weak_item").order_by(AppMessage.id.desc())
    ).first()
    assert (message.status, message.attempts) == ("retrying", 1) and "timeout" in message.last_error
    run_due_jobs(app)
    deadline = time.monotonic() + 10
    while sb.hits(SEND, "wecom") < requests_before + 2 or not sb.state.app_messages:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.5)  # the first request's sleep (3 s) is over: whatever it delivers is in
    db_session.refresh(message)
    assert message.status == "sent"
    assert sb.hits(SEND, "wecom") == requests_before + 2
    assert len(sb.state.app_messages) == 1  # one delivery for two requests
    body = sb.state.app_messages[0]
    assert (body["enable_duplicate_check"], body["duplicate_check_interval"]) == (1, notify.DUPLICATE_CHECK_SECONDS)


def test_recipients_wecom_cannot_reach_are_not_recorded_as_reached(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any
) -> None:
    """A notification is one message per recipient: the one WeCom knows is sent and recorded
    as reached; the one it does not know is refused (81013) and fails at once, without holding
    back the other."""
    with app.app_context():
        notify.notify(db_session, corp, "lost_customer", "alert:1", [ADVISOR, "Nobody.Here"], text="客户流失")
        commit(db_session)
    run_due_jobs(app)
    reached, unreachable = db_session.scalars(select(AppMessage).order_by(AppMessage.id)).all()
    db_session.refresh(reached)
    db_session.refresh(unreachable)
    assert (reached.touser, reached.status) == ([ADVISOR], "sent")
    recipients = db_session.scalars(select(AppMessageRecipient.userid)).all()
    assert recipients == [ADVISOR]
    assert unreachable.touser == ["Nobody.Here"]
    assert (unreachable.status, unreachable.attempts) == ("failed", 1) and "81013" in unreachable.last_error


def test_two_messages_that_say_the_same_both_arrive(app: Any, db_session: Any, corp: str, sandbox_reset: Any) -> None:
    """WeCom's duplicate check compares whole requests: two alerts with the same words (a
    customer lost, back, and lost again within the hour) are two messages, marked with their
    ids, and both arrive; a text shows its id as a reference number."""
    with app.app_context():
        (first,) = notify.notify(db_session, corp, "lost_customer", "alert:71", [ADVISOR], text="客户刘女士删除了你")
        (second,) = notify.notify(db_session, corp, "lost_customer", "alert:72", [ADVISOR], text="客户刘女士删除了你")
        commit(db_session)
    contents = [m["text"]["content"] for m in sandbox_reset.state.app_messages]
    assert contents == [f"客户刘女士删除了你\n编号 {first.id}", f"客户刘女士删除了你\n编号 {second.id}"]


@pytest.mark.redis
@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_without_redis_two_workers_sending_to_one_advisor_keep_the_limit(
    app: Any,
    db_session: Any,
    corp: str,
    sandbox_reset: Any,
    monkeypatch: Any,
    redis_dispatcher: Any,
    tree: Any,
    make_staff: Any,
) -> None:
    """Redis is not there to count (the database does), and two workers deliver two messages to
    one advisor at the same moment, the limit being one: the second counts after the first's
    send is committed, and is deferred."""
    import threading

    from backend.platform import jobs

    sb = sandbox_reset
    monkeypatch.setitem(app.config, "WECOM_NOTIFY_RATE_LIMIT", 1)
    assert app.extensions["dealerloop.redis"] is None  # no Redis to count in
    make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR)
    with app.app_context():
        notify.weak_item(db_session, corp, "C1", [ADVISOR], "第一项")
        notify.weak_item(db_session, corp, "C2", [ADVISOR], "第二项")
        commit(db_session)
    job_ids = list(db_session.scalars(select(OutboxJob.id).where(OutboxJob.status != "done").order_by(OutboxJob.id)))
    db_session.close()
    assert len(job_ids) == 2
    sb.state.set_fault("slow", seconds=1, service="wecom", path=SEND, count=1)  # the first send takes 1 s
    barrier = threading.Barrier(2)
    outcomes: list[Any] = []

    def deliver(job_id: int) -> None:
        barrier.wait()
        try:
            outcomes.append(jobs.execute(job_id, app=app))
        except Exception as exc:  # surfaced below
            outcomes.append(exc)

    threads = [threading.Thread(target=deliver, args=(j,)) for j in job_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes == ["done", "done"], outcomes
    try:
        statuses = sorted(db_session.scalars(select(AppMessage.status)))
    finally:
        db_session.close()
    assert statuses == ["deferred", "sent"]
    assert len(sb.state.app_messages) == 1
