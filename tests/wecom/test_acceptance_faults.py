"""Issue 3 acceptance, "WeCom API failing (5xx, timeout, 45009, 42001) while processing": each
fault, lasting, on the edit of a known relation. Every try is recorded and the next one comes
after the documented backoff (5, 30, 120, 600 s); a 42001 costs one token refresh per try, not
a loop; after the last try the event is a dead letter an admin sees, and the relation is as it
was (tags, touchpoints, no alert, no message). Replayed once WeCom is back, it is applied once."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select, update

from backend.platform.db import db
from backend.platform.jobs import OutboxJob, relay
from backend.touchpoints.models import Touchpoint
from backend.wecom.events import PROCESS_JOB
from backend.wecom.handlers import RETRY_DELAYS
from backend.wecom.models import AppMessage, FriendStatus, WeComAlert, WeComRawEvent
from tests.wecom.helpers import callback_world, carried, contact_xml, friend_of, ok, post_event, tag_id
from tests.wecom.helpers import count_rows as n

ADVISOR = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"
GET = "/cgi-bin/externalcontact/get"
EDIT = "edit_external_contact"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    return callback_world(sandbox_reset, tree, make_staff)


def _next_try(app: Any) -> float:
    """Run the one delayed processing job waiting now (made due first): the delay it was given
    when it was scheduled, in seconds."""
    with app.app_context():
        session = db.session_factory()
        (job,) = session.scalars(
            select(OutboxJob).where(
                OutboxJob.name == PROCESS_JOB, OutboxJob.status == "pending", OutboxJob.run_after.is_not(None)
            )
        ).all()
        delay = (job.run_after - job.created_at).total_seconds()
        session.execute(update(OutboxJob).where(OutboxJob.id == job.id).values(run_after=None))
        session.commit()
        session.close()
    relay(app=app)
    return delay


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"mode": "down"}, id="http-503"),
        pytest.param({"mode": "slow", "seconds": 3}, id="timeout"),
        pytest.param({"mode": "errcode", "errcode": 45009}, id="45009"),
        pytest.param({"mode": "errcode", "errcode": 42001}, id="42001"),
    ],
)
def test_a_lasting_upstream_fault_backs_off_dead_letters_and_half_applies_nothing(
    client: Any, db_session: Any, world: Any, staff_headers: Any, fault: dict[str, Any]
) -> None:
    app = client.application
    sb = world["sandbox"]
    suv = tag_id(sb, "SUV")
    t = int(time.time()) - 10
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, t)))
    friend = friend_of(db_session, ADVISOR, CUSTOMER)
    tags_before = carried(db_session, friend.id)
    touch_before = n(db_session, Touchpoint)
    alerts_before, messages_before = n(db_session, WeComAlert), n(db_session, AppMessage)
    assert friend.status == FriendStatus.ACTIVE and touch_before > 0

    # In WeCom the advisor tags the customer: an edit event, whose re-fetch keeps failing.
    with sb.state.lock:
        sb.state.follows[(ADVISOR, CUSTOMER)]["tag_ids"] = [suv] if suv not in tags_before else []
    sb.state.set_fault(service="wecom", path=GET, **fault)
    gets, tokens = sb.hits(GET, "wecom"), sb.hits("/cgi-bin/gettoken", "wecom")
    ok(post_event(client, sb, contact_xml(sb, "edit_external_contact", ADVISOR, CUSTOMER, t + 1)))

    limit = int(app.config.get("WECOM_EVENT_MAX_ATTEMPTS") or app.config["JOB_MAX_ATTEMPTS"])
    delays = []
    for attempt in range(1, limit):
        db_session.expire_all()
        raw = db_session.scalars(
            select(WeComRawEvent).where(WeComRawEvent.change_type == "edit_external_contact")
        ).one()
        assert (raw.status.value, raw.attempts) == ("retrying", attempt), raw.last_error
        delays.append(_next_try(app))
    expected = [RETRY_DELAYS[min(i, len(RETRY_DELAYS) - 1)] for i in range(limit - 1)]
    assert [round(d) for d in delays] == expected  # backoff, growing

    db_session.expire_all()
    raw = db_session.scalars(select(WeComRawEvent).where(WeComRawEvent.change_type == EDIT)).one()
    assert (raw.status.value, raw.attempts) == ("dead", limit)
    assert n(db_session, OutboxJob, OutboxJob.name == PROCESS_JOB, OutboxJob.status == "pending") == 0
    if fault.get("errcode") == 42001:  # each try: the call, one refresh, the call again — no loop
        assert sb.hits("/cgi-bin/gettoken", "wecom") - tokens == limit
        assert sb.hits(GET, "wecom") - gets == 2 * limit
    elif fault["mode"] != "slow":
        assert sb.hits(GET, "wecom") - gets == limit
        assert sb.hits("/cgi-bin/gettoken", "wecom") == tokens

    # nothing half-applied: the relation, its tags, touchpoints, alerts and messages as before
    friend = friend_of(db_session, ADVISOR, CUSTOMER)
    assert friend.status == FriendStatus.ACTIVE and carried(db_session, friend.id) == tags_before
    assert n(db_session, Touchpoint) == touch_before
    assert (n(db_session, WeComAlert), n(db_session, AppMessage)) == (alerts_before, messages_before)

    admin_h = staff_headers(world["admin"])
    page = client.get("/api/workbench/v1/wecom/events?status=dead", headers=admin_h).get_json()
    assert [e["id"] for e in page["items"]] == [raw.id]

    sb.state.clear_faults()
    resp = client.post(f"/api/workbench/v1/wecom/events/{raw.id}/replay", headers=admin_h, json={"reason": "up"})
    assert resp.status_code == 202
    db_session.expire_all()
    assert db_session.get(WeComRawEvent, raw.id).status.value == "processed"
    assert carried(db_session, friend.id) != tags_before
    assert n(db_session, Touchpoint, Touchpoint.kind == "friend_edited") == 1
