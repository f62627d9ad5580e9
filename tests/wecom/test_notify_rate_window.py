"""The per-recipient sliding window when Redis comes and goes (messages neither lost nor
sent twice, and the limit held across the switch)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.platform.db import commit
from backend.platform.jobs import OutboxJob
from backend.wecom import notify
from backend.wecom.models import AppMessage
from backend.wecom.ops_models import AppMessageRecipient
from tests.wecom.helpers import count_rows, run_due_jobs

ADVISOR = "advisor.zhang"
SEND = "/cgi-bin/message/send"


@pytest.fixture
def corp(app: Any, sandbox_reset: Any) -> str:
    return app.config["WECOM_CORP_ID"]


@pytest.fixture
def redis_up(redis_url: str, corp: str) -> Any:
    import redis

    up = redis.Redis.from_url(redis_url)
    up.delete(f"dealerloop:wecom:notify:{corp}:{ADVISOR}")
    yield up
    up.delete(f"dealerloop:wecom:notify:{corp}:{ADVISOR}")
    up.close()


def _down() -> Any:
    import redis

    return redis.Redis(port=1, socket_connect_timeout=0.2)


def _statuses(db_session: Any) -> list[str]:
    db_session.expire_all()
    return list(db_session.scalars(select(AppMessage.status).order_by(AppMessage.id)))


# --- defects found on review (fixed)


@pytest.mark.redis
def test_limit_holds_when_redis_comes_back_after_an_outage(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any, monkeypatch: Any, redis_up: Any
) -> None:
    """Limit 2 per window. Redis is down: two messages go out (counted in the database). Redis is
    back within the same window: a third message to the same advisor must be deferred — the
    advisor already had 2 in this window. The Redis window knows nothing of the outage's sends."""
    monkeypatch.setitem(app.config, "WECOM_NOTIFY_RATE_LIMIT", 2)
    monkeypatch.setitem(app.extensions, "dealerloop.redis", _down())
    with app.app_context():
        notify.weak_item(db_session, corp, "D0", [ADVISOR], "第0项")
        notify.weak_item(db_session, corp, "D1", [ADVISOR], "第1项")
        commit(db_session)
    assert _statuses(db_session) == ["sent", "sent"]
    monkeypatch.setitem(app.extensions, "dealerloop.redis", redis_up)
    with app.app_context():
        notify.weak_item(db_session, corp, "D2", [ADVISOR], "第2项")
        commit(db_session)
    assert len(sandbox_reset.state.app_messages) == 2, "3 messages within one window, limit 2"
    assert _statuses(db_session) == ["sent", "sent", "deferred"]


# --- held on review


@pytest.mark.redis
def test_deferred_under_redis_outage_is_sent_once_when_the_window_frees(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any, monkeypatch: Any
) -> None:
    """Redis down, over the limit: deferred (not dropped), then sent exactly once."""
    from datetime import UTC, datetime, timedelta

    from freezegun import freeze_time

    monkeypatch.setitem(app.config, "WECOM_NOTIFY_RATE_LIMIT", 1)
    monkeypatch.setitem(app.extensions, "dealerloop.redis", _down())
    start = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    with freeze_time(start) as frozen:
        with app.app_context():
            notify.weak_item(db_session, corp, "O0", [ADVISOR], "第0项")
            notify.weak_item(db_session, corp, "O1", [ADVISOR], "第1项")
            commit(db_session)
        assert _statuses(db_session) == ["sent", "deferred"]
        frozen.move_to(start + timedelta(seconds=notify.DEFAULT_RATE_WINDOW + 5))
        run_due_jobs(app)
    assert _statuses(db_session) == ["sent", "sent"]
    assert len(sandbox_reset.state.app_messages) == 2
    assert count_rows(db_session, AppMessageRecipient) == 2
    assert count_rows(db_session, OutboxJob, OutboxJob.status == "pending") == 0


@pytest.mark.redis
def test_a_failed_try_gives_its_redis_slot_back(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any, monkeypatch: Any, redis_up: Any
) -> None:
    monkeypatch.setitem(app.config, "WECOM_NOTIFY_RATE_LIMIT", 1)
    monkeypatch.setitem(app.extensions, "dealerloop.redis", redis_up)
    sandbox_reset.state.set_fault("errcode", errcode=45033, service="wecom", path=SEND, count=1)
    with app.app_context():
        notify.weak_item(db_session, corp, "S0", [ADVISOR], "第0项")
        commit(db_session)
    assert _statuses(db_session) == ["retrying"]
    assert redis_up.zcard(f"dealerloop:wecom:notify:{corp}:{ADVISOR}") == 0
    run_due_jobs(app)
    assert _statuses(db_session) == ["sent"]
    assert redis_up.zcard(f"dealerloop:wecom:notify:{corp}:{ADVISOR}") == 1


@pytest.mark.redis
def test_window_is_per_corp_in_redis(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any, monkeypatch: Any, redis_up: Any
) -> None:
    """One userid in two corps: two people, each with their own window."""
    from tests.wecom.helpers import second_wecom_app

    monkeypatch.setitem(app.config, "WECOM_NOTIFY_RATE_LIMIT", 1)
    monkeypatch.setitem(app.extensions, "dealerloop.redis", redis_up)
    with second_wecom_app(app, sandbox_reset, monkeypatch) as (second, creds):
        second.state.add_member(ADVISOR, "另一位张顾问")
        redis_up.delete(f"dealerloop:wecom:notify:{creds['WECOM_CORP_ID']}:{ADVISOR}")
        with app.app_context():
            notify.notify(db_session, corp, "weak_item", "X", [ADVISOR], text="甲")
            notify.notify(db_session, creds["WECOM_CORP_ID"], "weak_item", "X", [ADVISOR], text="乙")
            commit(db_session)
        assert _statuses(db_session) == ["sent", "sent"]
        assert len(second.state.app_messages) == 1
        redis_up.delete(f"dealerloop:wecom:notify:{creds['WECOM_CORP_ID']}:{ADVISOR}")
