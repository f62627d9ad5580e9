"""Channel QR codes with a daily add cap: where the contact way routes customers once an advisor
reaches the cap, and how the periodic rebalance gives capped channels back to their advisors on a
new China day, one channel at a time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from backend.org.models import Staff, StaffStatus
from backend.platform.jobs import OutboxJob
from backend.wecom import jobs
from backend.wecom.events import REBALANCE_JOB
from backend.wecom.models import WeComChannel
from tests.wecom.helpers import ZHANG, channel_world, contact_way, contact_xml, create_channel, post_event, run_due_jobs

LI, WANG = "advisor.li", "advisor.wang"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    return channel_world(sandbox_reset, tree, make_staff, staff_headers, (LI, "李顾问"), (WANG, "王顾问"))


def create(client: Any, world: Any, **overrides: Any) -> Any:
    return create_channel(client, world["h"], world["tree"].stores[0].id, [ZHANG], **overrides)


def test_one_broken_channel_does_not_stop_the_daily_rebalance_of_the_others(
    client: Any, db_session: Any, app: Any, world: Any
) -> None:
    """Yesterday both capped channels ended on their fallback (LI); today's counts are zero, so
    both go back to ZHANG. The first channel's contact way was removed in WeCom meanwhile
    (another tool, or a delete whose answer was lost): its update fails. The periodic job only
    enqueues one rebalance job per capped channel, so the broken channel fails and is retried on
    its own while the healthy one is rebalanced."""
    sb = world["sb"]
    broken = create(client, world, state="broken-qr", daily_cap=1, fallback_userids=[LI])
    healthy = create(client, world, state="healthy-qr", daily_cap=1, fallback_userids=[LI])
    # as the rebalance left them at yesterday's end
    db_session.execute(
        update(WeComChannel).where(WeComChannel.id.in_([broken["id"], healthy["id"]])).values(applied_userids=[LI])
    )
    db_session.commit()
    with sb.state.lock:
        sb.state.contact_ways[healthy["config_id"]]["user"] = [LI]
        sb.state.contact_ways.pop(broken["config_id"])  # gone in WeCom
    with app.app_context():
        jobs.rebalance_channels(db_session, 0)
        jobs.rebalance_channels(db_session, 0)  # the same slot again: nothing more is queued
        db_session.commit()
    queued = db_session.scalars(select(OutboxJob.args).where(OutboxJob.name == REBALANCE_JOB)).all()
    assert sorted(args["channel_id"] for args in queued) == sorted([broken["id"], healthy["id"]])

    run_due_jobs(app)

    assert contact_way(sb, healthy["config_id"])["user"] == [ZHANG]
    db_session.expire_all()
    assert db_session.get(WeComChannel, healthy["id"]).applied_userids == [ZHANG]
    assert db_session.get(WeComChannel, broken["id"]).applied_userids == [LI]  # WeCom never took the change


def test_a_resigned_fallback_advisor_does_not_keep_the_qr_code_on_capped_advisors(
    client: Any, db_session: Any, world: Any
) -> None:
    """Cap 1 for ZHANG, fallbacks LI and WANG. LI has left (resigned here, deleted from the WeCom
    directory). When ZHANG reaches the cap the QR code goes to WANG alone: the fallback list skips
    advisors who are no longer active, as WeCom refuses an unknown user (60111) and the QR code
    would otherwise keep sending customers to ZHANG past the cap."""
    sb = world["sb"]
    channel = create(client, world, daily_cap=1, fallback_userids=[LI, WANG])
    db_session.execute(update(Staff).where(Staff.wecom_userid == LI).values(status=StaffStatus.RESIGNED))
    db_session.commit()
    with sb.state.lock:
        sb.state.members.pop(LI)
    t = int(datetime.now(UTC).timestamp()) - 60
    sb.state.add_external_contact("wmCapR0", "客户", follow_userid=ZHANG, state="store0-qr")
    xml = contact_xml(sb, "add_external_contact", ZHANG, "wmCapR0", t, State="store0-qr")
    assert post_event(client, sb, xml).data == b"success"
    assert contact_way(sb, channel["config_id"])["user"] == [WANG]
