"""Redis down while an owner reports an accident: the lead is stored at once, its urgent WeCom
message to the service desk waits in the outbox (not lost with the failed hand-over), and once
Redis is back it is sent once; the same Idempotency-Key during and after changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.leads.models import Lead
from backend.platform.db import db
from backend.platform.jobs import OutboxJob
from backend.wecom.models import AppMessage
from tests.leads.conftest import accident_body, submit


def _count(app: Any, model: Any, *where: Any) -> int:
    with app.app_context():
        try:
            return db.session().scalar(select(func.count()).select_from(model).where(*where))
        finally:
            db.session.remove()


@pytest.mark.redis
def test_an_accident_reported_while_redis_is_down_is_messaged_once_when_it_is_back(
    app: Any, client: Any, store: Any, owner: Any, sandbox_reset: Any, redis_outage: Any
) -> None:
    redis_outage.down()
    body = accident_body(owner.car_id)
    first = submit(client, owner, body, key="rd-lead-1")
    assert first.status_code == 201, first.get_json()
    again = submit(client, owner, body, key="rd-lead-1")
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
    assert again.get_json()["id"] == first.get_json()["id"]
    assert _count(app, Lead) == 1 and _count(app, AppMessage) == 1
    send = OutboxJob.name == "wecom.send_app_message"
    assert _count(app, OutboxJob, send, OutboxJob.status == "pending") == 1
    assert sandbox_reset.state.app_messages == []

    redis_outage.up()
    assert redis_outage.drain() == 1  # the message (the SLA check is not due yet)
    assert [m["touser"] for m in sandbox_reset.state.app_messages] == ["lead.service"]
    assert _count(app, OutboxJob, send, OutboxJob.status == "done") == 1
    assert submit(client, owner, body, key="rd-lead-1").headers.get("Idempotent-Replayed") == "true"
    assert redis_outage.drain() == 0
    assert _count(app, Lead) == 1 and _count(app, AppMessage) == 1
    assert len(sandbox_reset.state.app_messages) == 1
