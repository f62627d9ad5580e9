"""Redis down while a worker runs (its intake pump and relayer alive, RQ unreachable): the
welcomes, which need no Redis, still go out at once, and the events are processed once Redis
is back."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select, update

from backend.platform.jobs import Dispatcher, OutboxJob
from backend.wecom.models import RawEventStatus, WeComRawEvent, WelcomeMessage
from tests.wecom.helpers import contact_xml, count_rows, post_event
from tests.wecom.test_channels_welcome import ZHANG, channel_with_template


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    zhang = make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    return {"sb": sandbox_reset, "tree": tree, "zhang": zhang, "h": staff_headers(manager)}


@pytest.mark.redis
def test_a_burst_while_redis_is_down_then_back(
    client: Any, db_session: Any, world: Any, redis_url: str, monkeypatch: Any
) -> None:
    """A burst (adds with WelcomeCodes, a duplicate, a tag event) arrives while Redis is down and
    a worker's pump is running: every delivery is acknowledged, the welcomes go out at once (they
    need no Redis), and once Redis is back every event is processed, none twice."""
    import redis
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    from backend.platform import intake, jobs
    from backend.platform.db import db
    from backend.platform.jobs import relay

    app = client.application
    sb = world["sb"]
    channel_with_template(client, db_session, world, [])
    down = Dispatcher(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2), max_attempts=3)
    monkeypatch.setitem(app.extensions, "dealerloop.jobs", down)
    t = int(time.time())
    xmls = []
    for i, ext in enumerate(["wmDemoCustomer001", "wmDemoCustomer002"]):
        code = sb.state.issue_welcome_code(ZHANG, ext)
        xmls.append(contact_xml(sb, "add_external_contact", ZHANG, ext, t + i, State="welcome-qr", WelcomeCode=code))
    group = next(iter(sb.state.tag_groups.values()))
    corp = sb.credentials["WECOM_CORP_ID"]
    xmls.append(
        sb.state.wecom_event_xml(
            corp,
            "change_external_tag",
            t + 3,
            Id=group["group_id"],
            TagType="tag_group",
            ChangeType="update",
            StrategyId="0",
        )
    )
    for xml in [*xmls, xmls[0]]:
        resp = post_event(client, sb, xml)
        assert (resp.status_code, resp.data) == (200, b"success")
    db_session.close()
    assert intake.pump_once(app, "wecom") == 3  # a worker's pump, Redis still down
    assert len(sb.state.welcome_messages) == 2  # sent at once, without Redis

    up_client = redis.Redis.from_url(redis_url)
    up_client.flushdb()
    try:
        monkeypatch.setitem(app.extensions, "dealerloop.jobs", Dispatcher(up_client, max_attempts=3))
        with app.app_context():
            s = db.session_factory()
            s.execute(update(OutboxJob).where(OutboxJob.status == "pending").values(run_after=None))
            s.commit()
            s.close()
        relay(app=app)
        jobs.set_worker_app(app)
        SimpleWorker(list(jobs.QUEUES), connection=up_client, serializer=JSONSerializer).work(burst=True)
    finally:
        up_client.flushdb()
        up_client.close()
    assert count_rows(db_session, WeComRawEvent) == 3
    assert count_rows(db_session, WeComRawEvent, WeComRawEvent.status == RawEventStatus.PROCESSED) == 3
    assert count_rows(db_session, OutboxJob, OutboxJob.status != "done") == 0
    assert sorted(db_session.scalars(select(WelcomeMessage.status))) == ["sent", "sent"]
    assert count_rows(db_session, WelcomeMessage, WelcomeMessage.customer_id.is_(None)) == 0
