"""How `deliver` treats WeCom's answers to `message/send`: token errors (42001), rate
limits (45009, 45033), partial answers (errcode 0 with invaliduser / unlicenseduser)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from backend.platform.db import commit, utcnow
from backend.platform.jobs import OutboxJob
from backend.wecom import notify, service
from backend.wecom.models import AppMessage
from backend.wecom.ops_models import AppMessageRecipient
from tests.wecom.helpers import count_rows, run_due_jobs

ADVISOR = "advisor.zhang"
SEND = "/cgi-bin/message/send"


@pytest.fixture
def corp(app: Any, sandbox_reset: Any) -> str:
    return app.config["WECOM_CORP_ID"]


def _message(db_session: Any) -> AppMessage:
    db_session.expire_all()
    return db_session.scalars(select(AppMessage)).one()


# --- defects found on review (fixed)


def test_token_expired_twice_in_a_row_is_retried_not_failed(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any
) -> None:
    """42001 on the first try and again on the client's one refreshed retry (WeCom may invalidate
    a token early; another worker refreshing in between): a later try can succeed, so the
    message should be `retrying` with backoff, then `sent` — not `failed` at once."""
    sb = sandbox_reset
    sb.state.set_fault("errcode", errcode=42001, service="wecom", path=SEND, count=2)
    with app.app_context():
        notify.weak_item(db_session, corp, "T42001", [ADVISOR], "令牌过期")
        commit(db_session)
    message = _message(db_session)
    assert (message.status, message.attempts) == ("retrying", 1), (message.status, message.last_error)
    run_due_jobs(app)
    assert _message(db_session).status == "sent"
    assert len(sb.state.app_messages) == 1


def test_errcode_0_with_the_only_recipient_invalid_is_not_reported_sent(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any, monkeypatch: Any
) -> None:
    """WeCom answers errcode 0 and names the (only) recipient in `unlicenseduser`/`invaliduser`:
    nobody received it. The admin list (status=sent) must not claim it was delivered."""
    with app.app_context():
        gateway = service.gateway_for(corp)
    monkeypatch.setattr(
        gateway,
        "post",
        lambda endpoint, data: {
            "errcode": 0,
            "errmsg": "ok",
            "invaliduser": "",
            "unlicenseduser": ADVISOR,
            "msgid": "m1",
        },
    )
    with app.app_context():
        notify.weak_item(db_session, corp, "T-unlicensed", [ADVISOR], "无许可")
        commit(db_session)
    message = _message(db_session)
    assert message.invalid_users == ADVISOR
    assert count_rows(db_session, AppMessageRecipient) == 0
    assert message.status != "sent", "reached nobody, yet listed as sent"


# --- held on review


@pytest.mark.parametrize("errcode", [45033, 45009, -1])
def test_rate_limit_and_busy_are_retried_with_backoff_then_sent(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any, errcode: int
) -> None:
    sb = sandbox_reset
    sb.state.set_fault("errcode", errcode=errcode, service="wecom", path=SEND, count=1)
    before = utcnow()
    with app.app_context():
        notify.weak_item(db_session, corp, f"T{errcode}", [ADVISOR], "限流")
        commit(db_session)
    message = _message(db_session)
    assert (message.status, message.attempts) == ("retrying", 1) and str(errcode) in message.last_error
    retry = db_session.scalars(select(OutboxJob).where(OutboxJob.status == "pending")).one()
    assert retry.run_after is not None and retry.run_after >= before + timedelta(seconds=notify.RETRY_DELAYS[0] - 1)
    run_due_jobs(app)
    message = _message(db_session)
    assert (message.status, message.attempts, message.last_error) == ("sent", 1, None)
    assert len(sb.state.app_messages) == 1 and count_rows(db_session, AppMessageRecipient) == 1


def test_permanent_45009_backs_off_increasingly_then_fails(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any, monkeypatch: Any
) -> None:
    monkeypatch.setitem(app.config, "WECOM_NOTIFY_MAX_ATTEMPTS", 4)
    sb = sandbox_reset
    sb.state.set_fault("errcode", errcode=45009, service="wecom", path=SEND)
    with app.app_context():
        notify.weak_item(db_session, corp, "T-perm", [ADVISOR], "一直限流")
        commit(db_session)
    delays = []
    for _ in range(6):
        db_session.expire_all()
        job = db_session.scalars(select(OutboxJob).where(OutboxJob.status == "pending")).one_or_none()
        if job is None:
            break
        delays.append(round((job.run_after - job.created_at).total_seconds()))
        run_due_jobs(app, rounds=1)
    message = _message(db_session)
    assert (message.status, message.attempts) == ("failed", 4) and "45009" in message.last_error
    assert delays == list(notify.RETRY_DELAYS[:3]), delays
    assert sb.state.app_messages == []
    assert count_rows(db_session, OutboxJob, OutboxJob.status == "pending") == 0


def test_one_token_expiry_is_refreshed_transparently(app: Any, db_session: Any, corp: str, sandbox_reset: Any) -> None:
    sb = sandbox_reset
    sb.state.set_fault("errcode", errcode=42001, service="wecom", path=SEND, count=1)
    with app.app_context():
        notify.weak_item(db_session, corp, "T-once", [ADVISOR], "一次过期")
        commit(db_session)
    message = _message(db_session)
    assert (message.status, message.attempts) == ("sent", 0)
    assert len(sb.state.app_messages) == 1


def test_bad_content_40058_fails_at_once(app: Any, db_session: Any, corp: str, sandbox_reset: Any) -> None:
    sb = sandbox_reset
    sb.state.set_fault("errcode", errcode=40058, service="wecom", path=SEND)
    with app.app_context():
        notify.weak_item(db_session, corp, "T40058", [ADVISOR], "内容不合法")
        commit(db_session)
    run_due_jobs(app)
    message = _message(db_session)
    assert (message.status, message.attempts) == ("failed", 1) and "40058" in message.last_error
    assert sb.hits(SEND, "wecom") == 1


def test_invaliduser_in_other_case_gets_no_recipient_row(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any, monkeypatch: Any
) -> None:
    """WeCom names invalid users in lower case; our touser may be mixed case."""
    with app.app_context():
        gateway = service.gateway_for(corp)
    monkeypatch.setattr(
        gateway, "post", lambda endpoint, data: {"errcode": 0, "invaliduser": "advisor.li", "msgid": "m2"}
    )
    with app.app_context():
        notify.weak_item(db_session, corp, "T-case", ["Advisor.Li"], "大小写")
        commit(db_session)
    assert _message(db_session).invalid_users == "advisor.li"
    assert count_rows(db_session, AppMessageRecipient) == 0
