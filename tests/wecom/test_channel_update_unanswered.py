"""A channel update whose update_contact_way gets no answer (WeCom applied it, the answer was
lost): the change is not kept, and a job sets the contact way again from the channel once WeCom
has settled (`admin._undo_unanswered_update`).

Written as a review probe: the PATCH was rolled back and nothing was left behind, so WeCom
routed to advisors dealerloop did not show on the QR code, for good."""

from __future__ import annotations

import time
from typing import Any

import pytest

from backend.wecom import jobs
from backend.wecom.models import WeComChannel
from tests.wecom.helpers import CHANNELS, ZHANG, channel_world, contact_way, create_channel, run_due_jobs

LI = "advisor.li"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    return channel_world(sandbox_reset, tree, make_staff, staff_headers, (LI, "李顾问"))


def test_a_timed_out_advisor_change_does_not_leave_wecom_and_dealerloop_disagreeing(
    client: Any, db_session: Any, app: Any, world: Any
) -> None:
    """The store QR code routes to ZHANG and LI. The manager takes ZHANG off it; WeCom applies
    update_contact_way but answers after the client's timeout (2 s in tests), so the PATCH is a
    504 and its transaction is rolled back: dealerloop still says the QR code routes to ZHANG
    and LI (userids and applied_userids), and the manager was told the change failed. WeCom
    meanwhile routes every new customer to LI only. Nothing ever reconciles the two: the
    periodic rebalance compares with `applied_userids`, which is stale, and picks uncapped
    channels only when an advisor has left.

    Expected (as for a create whose answer was lost, which leaves a sweep behind): once WeCom
    has settled, the contact way routes to what dealerloop holds for the channel - or
    dealerloop records what WeCom applied. Not: ZHANG listed here and getting no customers."""
    sb = world["sb"]
    channel = create_channel(client, world["h"], world["tree"].stores[0].id, [ZHANG, LI])
    sb.state.set_fault("slow", seconds=3, service="wecom", path="/cgi-bin/externalcontact/update_contact_way", count=1)
    resp = client.patch(f"{CHANNELS}/{channel['id']}", headers=world["h"], json={"userids": [LI]})
    assert resp.status_code == 504, resp.get_json()
    deadline = time.monotonic() + 5  # WeCom finishes the slow call after our client gave up
    while contact_way(sb, channel["config_id"])["user"] != [LI] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert contact_way(sb, channel["config_id"])["user"] == [LI]  # WeCom applied it

    # whatever dealerloop left behind, and the periodic rebalance, have run
    run_due_jobs(app)
    with app.app_context():
        jobs.rebalance_channels(db_session, 0)
        db_session.commit()
    run_due_jobs(app)

    db_session.expire_all()
    row = db_session.get(WeComChannel, channel["id"])
    in_wecom = contact_way(sb, channel["config_id"])["user"]
    # (today the PATCH is rolled back: userids and applied_userids are still [ZHANG, LI])
    assert in_wecom == list(row.applied_userids), (
        f"WeCom routes to {in_wecom}, dealerloop holds userids {row.userids} / applied {row.applied_userids}"
    )
