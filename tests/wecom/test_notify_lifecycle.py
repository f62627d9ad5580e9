"""A notification's life between `notify` and delivery — rolled-back transactions,
dedup across retries and case variants, a recipient who resigns before the send, and
exactly-once delivery under real threads."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.org.models import Staff, StaffStatus
from backend.platform.db import commit, db
from backend.platform.jobs import OutboxJob
from backend.wecom import notify
from backend.wecom.models import AppMessage
from backend.wecom.ops_models import AppMessageRecipient
from tests.wecom.helpers import count_rows, execute_at_once, run_due_jobs

ADVISOR = "advisor.zhang"
SEND = "/cgi-bin/message/send"


@pytest.fixture
def corp(app: Any, sandbox_reset: Any) -> str:
    return app.config["WECOM_CORP_ID"]


# --- defects found on review (fixed)


def test_recipient_who_resigned_before_the_send_is_not_messaged(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any, tree: Any, make_staff: Any
) -> None:
    """A lost-customer alert to an advisor is recorded; the first try hits a busy WeCom (-1).
    Before the retry the advisor resigns (directory sync marks the staff row resigned). The retry
    must not deliver the customer's details to the person who left: it should end failed/skipped."""
    sb = sandbox_reset
    zhang = make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR, name="张顾问")
    sb.state.set_fault("errcode", errcode=-1, service="wecom", path=SEND, count=1)
    with app.app_context():
        notify.notify_staff(db_session, "lost_customer", "alert:R1", [zhang], text="流失提醒：客户「刘女士」")
        commit(db_session)
    message = db_session.scalars(select(AppMessage)).one()
    assert message.status == "retrying"
    db_session.get(Staff, zhang.id).status = StaffStatus.RESIGNED
    db_session.commit()
    sb.state.set_member_status(ADVISOR, "resigned")
    run_due_jobs(app)
    db_session.expire_all()
    message = db_session.scalars(select(AppMessage)).one()
    assert sb.state.app_messages == [], "delivered to a resigned advisor"
    assert message.status == "failed"


@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_without_redis_limit_holds_for_a_recipient_with_no_staff_row(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any, monkeypatch: Any
) -> None:
    """Callback alerts for an advisor not (yet) in the directory go to `friend.userid` directly.
    Without Redis, two workers deliver two messages to that userid at once, limit 1: the
    database fallback locks staff rows only, so nothing serialises the two counts."""
    sb = sandbox_reset
    userid = "advisor.nodir"
    sb.state.add_member(userid, "目录外顾问")
    monkeypatch.setitem(app.config, "WECOM_NOTIFY_RATE_LIMIT", 1)
    assert app.extensions["dealerloop.redis"] is None
    # record both without running them: jobs are handed over after commit, so enqueue via a
    # session whose after-commit hooks we drop
    with app.app_context():
        session = db.session()
        notify.notify(session, corp, "lost_customer", "alert:N1", [userid], text="第一条")
        notify.notify(session, corp, "lost_customer", "alert:N2", [userid], text="第二条")
        session.commit()  # plain commit: the after-commit relay hook is not run
        session.info.clear()
        job_ids = list(
            session.scalars(select(OutboxJob.id).where(OutboxJob.status == "pending").order_by(OutboxJob.id))
        )
        db.session.remove()
    assert len(job_ids) == 2
    sb.state.set_fault("slow", seconds=1, service="wecom", path=SEND, count=1)
    outcomes = execute_at_once(app, job_ids)
    assert outcomes == ["done", "done"], outcomes
    with app.app_context():
        session = db.session()
        statuses = sorted(session.scalars(select(AppMessage.status)))
        db.session.remove()
    assert len(sb.state.app_messages) == 1, f"limit 1, {len(sb.state.app_messages)} sent"
    assert statuses == ["deferred", "sent"]


# --- held on review


def test_notify_in_a_rolled_back_savepoint_sends_nothing(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any
) -> None:
    with app.app_context():
        nested = db_session.begin_nested()
        notify.weak_item(db_session, corp, "SP1", [ADVISOR], "回滚的")
        nested.rollback()
        notify.weak_item(db_session, corp, "SP2", [ADVISOR], "保留的")
        commit(db_session)
    assert [m["text"]["content"].split("\n")[0] for m in sandbox_reset.state.app_messages] == ["待改进提醒：保留的"]
    assert count_rows(db_session, AppMessage) == 1


def test_plain_session_rollback_then_other_commit_sends_nothing_stale(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any
) -> None:
    with app.app_context():
        notify.weak_item(db_session, corp, "RB1", [ADVISOR], "回滚的")
        db_session.rollback()  # not backend.platform.db.rollback: the hooks stay registered
        notify.weak_item(db_session, corp, "RB2", [ADVISOR], "保留的")
        commit(db_session)
    assert [m["text"]["content"].split("\n")[0] for m in sandbox_reset.state.app_messages] == ["待改进提醒：保留的"]
    assert count_rows(db_session, AppMessage) == 1


def test_same_key_asked_again_while_retrying_is_not_recorded_twice(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any
) -> None:
    sb = sandbox_reset
    sb.state.set_fault("errcode", errcode=45009, service="wecom", path=SEND, count=1)
    with app.app_context():
        assert len(notify.new_lead(db_session, corp, "L-again", ADVISOR, "陈先生", "官网")) == 1
        commit(db_session)
        assert notify.new_lead(db_session, corp, "L-again", ADVISOR, "陈先生", "官网") == []
        commit(db_session)
    run_due_jobs(app)
    assert len(sb.state.app_messages) == 1
    assert count_rows(db_session, AppMessage) == 1 and count_rows(db_session, AppMessageRecipient) == 1


def test_case_variants_of_one_userid_get_one_message(app: Any, db_session: Any, corp: str, sandbox_reset: Any) -> None:
    """WeCom userids are case-insensitive: Advisor.Zhang and advisor.zhang are one person."""
    with app.app_context():
        notify.weak_item(db_session, corp, "CASE", [ADVISOR, "Advisor.Zhang", "ADVISOR.ZHANG"], "大小写")
        commit(db_session)
    assert len(sandbox_reset.state.app_messages) == 1
    assert count_rows(db_session, AppMessage) == 1


def test_message_records_kind_corp_recipient(app: Any, db_session: Any, corp: str, sandbox_reset: Any) -> None:
    with app.app_context():
        (m,) = notify.notify(
            db_session, corp, notify.NotifyKind.HANDOVER_FAILED, "handover:9:x", [ADVISOR], text="交接失败"
        )
        commit(db_session)
    db_session.expire_all()
    m = db_session.get(AppMessage, m.id)
    assert (m.kind, m.content["corp_id"], m.touser, m.status, m.msgtype) == (
        "handover_failed",
        corp,
        [ADVISOR],
        "sent",
        "text",
    )
    rec = db_session.scalars(select(AppMessageRecipient)).one()
    assert (rec.corp_id, rec.userid, rec.message_id) == (corp, ADVISOR, m.id)


@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_two_jobs_for_one_message_at_once_deliver_once(app: Any, corp: str, sandbox_reset: Any) -> None:
    """Two outbox rows name the same message (a retry and a stray deferral) and run at the same
    moment on two workers, the send being slow: the message goes out once."""
    sb = sandbox_reset
    with app.app_context():  # warm up: the client holds a token this sandbox knows
        session = db.session()
        notify.weak_item(session, corp, "WARM", [ADVISOR], "热身")
        commit(session)
        session.close()
        db.session.remove()
    sb.state.app_messages.clear()
    base = sb.hits(SEND, "wecom")
    sb.state.set_fault("errcode", errcode=-1, service="wecom", path=SEND, count=1)
    with app.app_context():
        session = db.session()
        (message,) = notify.weak_item(session, corp, "TWICE", [ADVISOR], "只发一次")
        commit(session)
        message_id = message.id
        session.add(OutboxJob(name=notify.APP_MESSAGE_JOB, args={"message_id": message_id}, queue="high"))
        session.commit()
        job_ids = list(session.scalars(select(OutboxJob.id).where(OutboxJob.status == "pending")))
        session.close()  # the inline run's app context already removed it from the registry
        db.session.remove()
    assert len(job_ids) == 2
    sb.state.set_fault("slow", seconds=1, service="wecom", path=SEND, count=1)
    outcomes = execute_at_once(app, job_ids)
    assert outcomes == ["done", "done"], outcomes
    assert len(sb.state.app_messages) == 1
    assert sb.hits(SEND, "wecom") - base == 2  # the failed first try and one send
