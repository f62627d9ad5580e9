"""With Redis: a lead's WeCom message goes to RQ's high queue at commit and a worker sends it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.platform.jobs import OutboxJob
from tests.leads.conftest import accident_body, submit


@pytest.mark.redis
def test_accident_message_is_queued_high_and_sent_by_a_worker(
    app: Any, client: Any, db_session: Any, store: Any, owner: Any, sandbox_reset: Any, redis_dispatcher: Any
) -> None:
    from rq import Queue, SimpleWorker
    from rq.serializers import JSONSerializer

    from backend.platform import jobs

    resp = submit(client, owner, accident_body(owner.car_id))
    assert resp.status_code == 201, resp.get_json()
    assert sandbox_reset.state.app_messages == []  # nothing sent inside the request
    db_session.expire_all()
    row = db_session.scalars(select(OutboxJob).where(OutboxJob.name == "wecom.send_app_message")).one()
    assert (row.status, row.queue) == ("enqueued", "high")
    assert Queue("high", connection=redis_dispatcher, serializer=JSONSerializer).count == 1
    sla = db_session.scalars(select(OutboxJob).where(OutboxJob.name == "leads.check_sla")).one()
    assert sla.status == "pending" and sla.run_after is not None  # delayed: relayed when due
    with app.app_context():  # what `flask worker` provides
        SimpleWorker(list(jobs.QUEUES), connection=redis_dispatcher, serializer=JSONSerializer).work(burst=True)
    assert [m["touser"] for m in sandbox_reset.state.app_messages] == ["lead.service"]
    assert sandbox_reset.state.app_messages[0]["textcard"]["title"] == "【紧急】出险报案"
