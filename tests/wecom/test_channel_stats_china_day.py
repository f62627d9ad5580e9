"""Channel statistics count by China day (UTC+8): adds on either side of China midnight land on
their own China days, whatever day it is in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.wecom.helpers import ZHANG, channel_stats, channel_world, contact_xml, create_channel, post_event


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    return channel_world(sandbox_reset, tree, make_staff, staff_headers)


def test_adds_either_side_of_china_midnight_count_on_their_china_days(client: Any, world: Any) -> None:
    """15:59:59 and 16:00:00 UTC are the same UTC day but 23:59:59 and 00:00:00 in China: the
    owners read their statistics in China days, so the two adds are one on each day."""
    sb = world["sb"]
    channel = create_channel(client, world["h"], world["tree"].stores[0].id, [ZHANG])
    before = int(datetime(2026, 3, 1, 15, 59, 59, tzinfo=UTC).timestamp())  # 2026-03-01 23:59:59 China
    after = before + 1  # 2026-03-02 00:00:00 China
    for i, t in enumerate((before, after)):
        sb.state.add_external_contact(f"wmMid{i}", "客户", follow_userid=ZHANG, state="store0-qr")
        xml = contact_xml(sb, "add_external_contact", ZHANG, f"wmMid{i}", t, State="store0-qr")
        assert post_event(client, sb, xml).data == b"success"
    stats = channel_stats(client, world["h"], channel["id"], "2026-03-01", "2026-03-02")
    assert [(d["day"], d["added"]) for d in stats] == [("2026-03-01", 1), ("2026-03-02", 1)]
