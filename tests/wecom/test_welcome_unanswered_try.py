"""A welcome whose first send_welcome_msg timed out although WeCom sent it, then retried inside
the code's 20 s: WeCom answers 41051 to the retry, and the welcome is recorded as sent by us.

Written as a review probe: it was recorded `already_sent` ("used elsewhere") and the customer's
timeline missed the welcome they got (`welcome._ours_after_all` now reads the earlier try)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from backend.platform.jobs import OutboxJob
from backend.touchpoints.models import Touchpoint
from backend.wecom.models import WelcomeMessage
from tests.wecom.helpers import run_due_jobs
from tests.wecom.test_channels_welcome import ZHANG, add_with_code, channel_with_template


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    zhang = make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    return {"sb": sandbox_reset, "tree": tree, "zhang": zhang, "h": staff_headers(manager)}


def test_our_own_welcome_whose_answer_was_lost_is_recorded_as_sent(client: Any, db_session: Any, world: Any) -> None:
    """WeCom takes the welcome (the customer sees it) but answers after the client's timeout
    (2 s in tests). The job is retried while the code lives; WeCom answers the retry 41051,
    because the code was used - by our own first try. Expected: the welcome is recorded as
    sent by us (status `sent`, or at least not `already_sent`, which the module defines as
    "the code was used elsewhere or the chat started"), and the customer's timeline gets its
    `welcome_sent` touchpoint. Otherwise every welcome delayed by a slow WeCom counts as "not
    ours" in the welcome statistics, and the customer's timeline misses a welcome they got."""
    sb = world["sb"]
    channel_with_template(client, db_session, world, [])
    sb.state.set_fault("slow", seconds=3, service="wecom", path="/cgi-bin/externalcontact/send_welcome_msg", count=1)
    resp, code = add_with_code(client, sb)
    assert resp.data == b"success"
    job = db_session.scalars(select(OutboxJob).where(OutboxJob.name == "wecom.send_welcome")).one()
    assert job.status == "pending" and "timeout" in (job.last_error or "")
    deadline = time.monotonic() + 5  # WeCom finishes the slow call after our client gave up
    while not sb.state.welcome_messages and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [m["welcome_code"] for m in sb.state.welcome_messages] == [code]  # the customer got it

    run_due_jobs(client.application)  # the retry, well inside the 20 s
    db_session.expire_all()
    assert sb.hits("/cgi-bin/externalcontact/send_welcome_msg", "wecom") == 2
    assert len(sb.state.welcome_messages) == 1  # never twice: good
    row = db_session.scalars(select(WelcomeMessage)).one()
    touch = db_session.scalars(select(Touchpoint).where(Touchpoint.kind == "welcome_sent")).all()
    assert (row.status, len(touch)) == ("sent", 1), (row.status, row.errcode, len(touch))
