"""An advisor who comes back (re-enabled in WeCom, reactivated by the directory sync) gets their
place on the channel's QR code back, as they lost it automatically; a channel whose advisors
have all left is left as it is, not sent to WeCom at every pass.

Written as a review probe: the periodic rebalance picked uncapped channels only when an advisor
had left, so one who came back stayed off the QR code until a manager edited the channel."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from backend.org.models import Staff, StaffStatus
from backend.platform.jobs import OutboxJob
from backend.wecom import jobs
from backend.wecom.models import WeComChannel
from tests.wecom.helpers import ZHANG, channel_world, contact_way, create_channel, run_due_jobs

LI = "advisor.li"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    return channel_world(sandbox_reset, tree, make_staff, staff_headers, (LI, "李顾问"))


def _periodic_rebalance(app: Any, db_session: Any, slot: int) -> None:
    with app.app_context():
        jobs.rebalance_channels(db_session, slot)
        db_session.commit()
    run_due_jobs(app)


def test_a_reactivated_advisor_gets_back_on_an_uncapped_qr_code(
    client: Any, db_session: Any, app: Any, world: Any
) -> None:
    """An uncapped store QR code for ZHANG and LI. LI's WeCom account is disabled (the directory
    sync marks them resigned: backend/wecom/directory.py), and the periodic rebalance takes LI
    off the contact way - WeCom would refuse the list (60111). LI is then re-enabled and the
    next sync reactivates them. Expected: the next periodic rebalance routes the QR code to
    ZHANG and LI again (the channel still lists LI, nobody edited it). The contact way's user
    list was changed by dealerloop on its own, so it must be changed back on its own; otherwise
    LI silently gets no new customers from the store's printed QR code until a manager happens
    to edit the channel."""
    sb = world["sb"]
    channel = create_channel(client, world["h"], world["tree"].stores[0].id, [ZHANG, LI])
    assert contact_way(sb, channel["config_id"])["user"] == [ZHANG, LI]

    # disabled in WeCom: the directory sync marks LI resigned; WeCom no longer takes LI
    db_session.execute(update(Staff).where(Staff.wecom_userid == LI).values(status=StaffStatus.RESIGNED))
    db_session.commit()
    with sb.state.lock:
        sb.state.members.pop(LI)
    _periodic_rebalance(app, db_session, 0)
    assert contact_way(sb, channel["config_id"])["user"] == [ZHANG]

    # re-enabled in WeCom: the next sync reactivates LI
    sb.state.add_member(LI, "李顾问")
    db_session.execute(update(Staff).where(Staff.wecom_userid == LI).values(status=StaffStatus.ACTIVE))
    db_session.commit()
    _periodic_rebalance(app, db_session, 600)

    db_session.expire_all()
    assert db_session.get(WeComChannel, channel["id"]).userids == [ZHANG, LI]  # never edited
    assert contact_way(sb, channel["config_id"])["user"] == [ZHANG, LI]


def test_a_channel_whose_advisors_have_all_left_is_not_sent_to_wecom_at_every_pass(
    client: Any, db_session: Any, app: Any, world: Any
) -> None:
    """LI leaves and the rebalance takes him off the QR code; then ZHANG leaves too. WeCom
    refuses a user list naming only people who left (60111): the rebalance leaves the contact
    way as it is instead of sending the channel's list at every pass and failing, until a
    manager names an advisor."""
    sb = world["sb"]
    channel = create_channel(client, world["h"], world["tree"].stores[0].id, [ZHANG, LI])

    def leaves(userid: str) -> None:
        db_session.execute(update(Staff).where(Staff.wecom_userid == userid).values(status=StaffStatus.RESIGNED))
        db_session.commit()
        with sb.state.lock:
            sb.state.members.pop(userid)

    leaves(LI)
    _periodic_rebalance(app, db_session, 0)
    assert contact_way(sb, channel["config_id"])["user"] == [ZHANG]
    calls_before = sb.hits("/cgi-bin/externalcontact/update_contact_way", "wecom")
    leaves(ZHANG)
    for slot in (600, 1200):
        _periodic_rebalance(app, db_session, slot)

    assert sb.hits("/cgi-bin/externalcontact/update_contact_way", "wecom") == calls_before
    db_session.expire_all()
    assert db_session.scalars(select(OutboxJob).where(OutboxJob.status != "done")).all() == []
    assert contact_way(sb, channel["config_id"])["user"] == [ZHANG]
