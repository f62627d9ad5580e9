"""What uses up an advisor's daily add cap on a capped channel QR code: new customers, not adds.

Written as a review probe: the cap counted each add, so one customer removing and re-adding
the advisor the same day took two places (`service.adds_today` now counts distinct relations)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.wecom.helpers import ZHANG, channel_world, contact_way, contact_xml, create_channel, post_event

LI = "advisor.li"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    return channel_world(sandbox_reset, tree, make_staff, staff_headers, (LI, "李顾问"))


def test_one_customer_removing_and_re_adding_uses_one_slot_of_the_daily_cap(
    client: Any, db_session: Any, world: Any
) -> None:
    """Cap 2 per advisor, fallback LI. One customer scans the store's QR code, removes ZHANG a
    few minutes later (mis-tap, or to clear the chat) and scans again: that is one new customer
    for ZHANG today, not two. The cap exists to spread the day's new customers over the
    advisors; a single customer re-adding must not push ZHANG off the QR code after having
    served only one person (the relation-not-event rule the channel statistics already follow
    for a half add and its confirmation). Expected: the contact way still routes to ZHANG."""
    sb = world["sb"]
    channel = create_channel(
        client, world["h"], world["tree"].stores[0].id, [ZHANG], daily_cap=2, fallback_userids=[LI]
    )
    t = int(datetime.now(UTC).timestamp()) - 600
    sb.state.add_external_contact("wmReAdd", "陈先生", follow_userid=ZHANG, state="store0-qr")
    for xml in (
        contact_xml(sb, "add_external_contact", ZHANG, "wmReAdd", t, State="store0-qr"),
        contact_xml(sb, "del_follow_user", ZHANG, "wmReAdd", t + 120),
        contact_xml(sb, "add_external_contact", ZHANG, "wmReAdd", t + 300, State="store0-qr"),
    ):
        assert post_event(client, sb, xml).data == b"success"
    assert contact_way(sb, channel["config_id"])["user"] == [ZHANG]
