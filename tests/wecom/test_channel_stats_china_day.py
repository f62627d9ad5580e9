"""Channel statistics count by China day (UTC+8): adds on either side of China midnight land on
their own China days, whatever day it is in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.wecom.helpers import contact_xml, post_event

ZHANG = "advisor.zhang"
CHANNELS = "/api/workbench/v1/wecom/channels"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    return {"sb": sandbox_reset, "tree": tree, "h": staff_headers(manager)}


def test_adds_either_side_of_china_midnight_count_on_their_china_days(client: Any, world: Any) -> None:
    """15:59:59 and 16:00:00 UTC are the same UTC day but 23:59:59 and 00:00:00 in China: the
    owners read their statistics in China days, so the two adds are one on each day."""
    sb = world["sb"]
    body = {
        "name": "门店0活码",
        "kind": "store",
        "state": "store0-qr",
        "userids": [ZHANG],
        "store_id": world["tree"].stores[0].id,
    }
    created = client.post(CHANNELS, headers=world["h"], json=body)
    assert created.status_code == 201, created.get_json()
    channel = created.get_json()
    before = int(datetime(2026, 3, 1, 15, 59, 59, tzinfo=UTC).timestamp())  # 2026-03-01 23:59:59 China
    after = before + 1  # 2026-03-02 00:00:00 China
    for i, t in enumerate((before, after)):
        sb.state.add_external_contact(f"wmMid{i}", "客户", follow_userid=ZHANG, state="store0-qr")
        xml = contact_xml(sb, "add_external_contact", ZHANG, f"wmMid{i}", t, State="store0-qr")
        assert post_event(client, sb, xml).data == b"success"
    resp = client.get(
        f"{CHANNELS}/{channel['id']}/stats",
        headers=world["h"],
        query_string={"date_from": "2026-03-01", "date_to": "2026-03-02"},
    )
    assert resp.status_code == 200, resp.get_json()
    assert [(d["day"], d["added"]) for d in resp.get_json()] == [("2026-03-01", 1), ("2026-03-02", 1)]
