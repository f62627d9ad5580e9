"""A printed poster / campaign QR code created with one advisor can take a second one later.

Written as a review probe: every one-advisor channel without a cap was made a single-person
contact way, whose type WeCom cannot change; now only an `advisor` channel is made one."""

from __future__ import annotations

from typing import Any

import pytest

from tests.wecom.helpers import CHANNELS, ZHANG, channel_world, contact_way, create_channel

LI = "advisor.li"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    return channel_world(sandbox_reset, tree, make_staff, staff_headers, (LI, "李顾问"))


@pytest.mark.parametrize("kind", ["poster", "campaign"])
def test_a_poster_qr_code_started_with_one_advisor_can_take_a_second(
    client: Any, db_session: Any, world: Any, kind: str
) -> None:
    """Marketing creates a poster (or campaign) QR code with the one advisor on duty and prints
    thousands of posters. The campaign takes off: they add a second advisor, or set a daily cap.
    Today the channel was made a single-person contact way (type 1) only because it had one
    advisor and no cap, and WeCom cannot change a way's type, so the PATCH is refused
    (wecom.channel_single_person: "create a multi-person channel") and every printed poster is
    stuck with one advisor. A single-person way only buys the advisor's personal card, which is
    what an `advisor` channel is for; a poster/campaign/store QR code is expected to grow.
    Expected: a non-`advisor` channel is created as a multi-person way (type 2, which takes one
    user just as well), so adding an advisor later is a plain update_contact_way."""
    sb = world["sb"]
    channel = create_channel(
        client, world["h"], world["tree"].stores[0].id, [ZHANG], kind=kind, state=f"{kind}-qr", name="春季车展"
    )
    resp = client.patch(f"{CHANNELS}/{channel['id']}", headers=world["h"], json={"userids": [ZHANG, LI]})
    assert resp.status_code == 200, resp.get_json()
    assert contact_way(sb, channel["config_id"])["user"] == [ZHANG, LI]
