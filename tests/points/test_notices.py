"""Member notices (tier changes, points about to expire) sent as subscribe messages through the
shared notices room and the real mini-program client against the sandbox: once, only with the
owner's one-time grant (counted by us from the app's reports, and held by WeChat)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from backend.notices import service as notices
from backend.notices.models import SubscribeNotice
from backend.platform.db import commit, utcnow
from backend.platform.jobs import OutboxJob
from backend.points import service
from backend.points.notices import TEMPLATE_SETTINGS

pytestmark = [pytest.mark.usefixtures("app_ctx")]

TIER_TPL = "TPL_TIER_CHANGED"
EXPIRY_TPL = "TPL_POINTS_EXPIRING"


@pytest.fixture
def templates(app: Any, monkeypatch: Any) -> None:
    monkeypatch.setitem(app.config, "SUBSCRIBE_TEMPLATE_TIER_CHANGED", TIER_TPL)
    monkeypatch.setitem(app.config, "SUBSCRIBE_TEMPLATE_POINTS_EXPIRING", EXPIRY_TPL)


def _upgrade(db_session: Any, customer_id: int) -> None:
    service.earn(db_session, customer_id, 1000, key=f"up:{customer_id}", reason_code="t", operator="system:t")
    commit(db_session)  # the sending job runs after commit (inline here)


def _notice(db_session: Any, customer_id: int, kind: str) -> SubscribeNotice:
    db_session.expire_all()
    return db_session.scalars(
        select(SubscribeNotice).where(
            SubscribeNotice.customer_id == customer_id, SubscribeNotice.template_setting == TEMPLATE_SETTINGS[kind]
        )
    ).one()


def _granted(db_session: Any, state: Any, owner: Any, openid: str, template_id: str) -> None:
    """The owner accepted the template in the app: WeChat holds the grant and we counted it."""
    state.set_subscribe_grants(openid, template_id, 1)
    notices.record_grants(db_session, owner.id, {template_id: "accept"})


def test_tier_change_is_sent_once_with_the_owners_grant(
    db_session: Any, make_customer: Any, sandbox_reset: Any, templates: None
) -> None:
    state = sandbox_reset.state
    owner = make_customer(openid="o-notice-1")
    state.add_user("o-notice-1")
    _granted(db_session, state, owner, "o-notice-1", TIER_TPL)
    _upgrade(db_session, owner.id)
    notice = _notice(db_session, owner.id, "tier_changed")
    assert notice.status == "sent" and notice.sent_at is not None
    [message] = state.subscribe_messages
    assert message["touser"] == "o-notice-1" and message["template_id"] == TIER_TPL
    assert message["data"]["thing1"]["value"] == "会员等级升级为银卡会员" and message["page"] == "pages/points/index"
    # The job again (a retried worker) sends nothing more.
    assert notices.deliver(db_session, notice.id) == "skipped"
    assert len(state.subscribe_messages) == 1


def test_without_a_grant_43101_is_final_and_nothing_is_retried(
    db_session: Any, make_customer: Any, sandbox_reset: Any, templates: None
) -> None:
    owner = make_customer(openid="o-notice-2")
    sandbox_reset.state.add_user("o-notice-2")
    # Our count says granted, WeChat holds none: 43101 is final (and gives our count back).
    notices.record_grants(db_session, owner.id, {TIER_TPL: "accept"})
    _upgrade(db_session, owner.id)
    notice = _notice(db_session, owner.id, "tier_changed")
    assert (notice.status, notice.errcode) == ("no_grant", 43101)
    job = db_session.scalars(select(OutboxJob).where(OutboxJob.name == "notices.send")).one()
    assert job.status == "done" and job.attempts == 1
    assert sandbox_reset.state.subscribe_messages == []


def test_no_template_or_no_openid_is_recorded_not_sent(
    app: Any, db_session: Any, make_customer: Any, sandbox_reset: Any, monkeypatch: Any
) -> None:
    monkeypatch.setitem(app.config, "SUBSCRIBE_TEMPLATE_TIER_CHANGED", "")
    with_openid = make_customer(openid="o-notice-3")
    _upgrade(db_session, with_openid.id)
    assert _notice(db_session, with_openid.id, "tier_changed").status == "no_template"
    monkeypatch.setitem(app.config, "SUBSCRIBE_TEMPLATE_TIER_CHANGED", TIER_TPL)
    wecom_only = make_customer()  # known from WeCom, never opened the mini-program
    _upgrade(db_session, wecom_only.id)
    assert _notice(db_session, wecom_only.id, "tier_changed").status == "no_openid"
    assert sandbox_reset.state.subscribe_messages == []


def test_expiry_reminder_is_sent_with_the_points_and_the_day(
    db_session: Any, make_customer: Any, sandbox_reset: Any, templates: None
) -> None:
    state = sandbox_reset.state
    owner = make_customer(openid="o-notice-4")
    state.add_user("o-notice-4")
    _granted(db_session, state, owner, "o-notice-4", EXPIRY_TPL)
    now = utcnow()
    service.earn(db_session, owner.id, 300, key="exp:1", reason_code="t", operator="system:t", expiry="days:5", now=now)
    commit(db_session)
    assert service.record_expiry_reminders(db_session, now=now, days=7) == 1
    commit(db_session)
    assert service.record_expiry_reminders(db_session, now=now + timedelta(hours=1), days=7) == 0  # once a day
    commit(db_session)
    notice = _notice(db_session, owner.id, "points_expiring")
    assert notice.status == "sent"
    [message] = [m for m in state.subscribe_messages if m["template_id"] == EXPIRY_TPL]
    assert message["data"]["number2"]["value"] == "300"
    assert message["data"]["date3"]["value"] == notice.data["date3"]["value"]
    assert len(message["data"]["date3"]["value"]) == 10  # the expiry day, YYYY-MM-DD
