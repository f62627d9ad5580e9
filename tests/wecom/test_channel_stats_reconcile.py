"""Channel statistics and the nightly reconciliation: a relation the reconciliation recovers (its
add event was lost) is attributed to the channel of its `state` and counted in that channel's
statistics, as the add event would have been."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from backend.wecom import service
from backend.wecom.models import WeComFriend
from backend.wecom.reconcile import reconcile_advisor

ZHANG = "advisor.zhang"
CHANNELS = "/api/workbench/v1/wecom/channels"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    zhang = make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    return {"sb": sandbox_reset, "tree": tree, "zhang": zhang, "h": staff_headers(manager)}


def test_a_friend_recovered_by_reconciliation_counts_as_a_new_friend_of_its_channel(
    client: Any, db_session: Any, app: Any, world: Any
) -> None:
    """WeCom may never deliver a change_external_contact event (which is why the nightly
    reconciliation exists). The reconciliation creates the relation, attributes it to the channel
    of its `state`, and counts it as that channel's new friend for the day."""
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
    sb.state.add_external_contact("wmLostEvent", "客户", follow_userid=ZHANG, state="store0-qr")
    with app.app_context():
        reconcile_advisor(db_session, world["zhang"].corp_id, ZHANG)
        db_session.commit()
    friend = db_session.scalars(select(WeComFriend).where(WeComFriend.external_userid == "wmLostEvent")).one()
    assert friend.channel_id == channel["id"]
    d0 = service.china_day(datetime.now(UTC)).isoformat()
    resp = client.get(
        f"{CHANNELS}/{channel['id']}/stats", headers=world["h"], query_string={"date_from": d0, "date_to": d0}
    )
    assert resp.status_code == 200, resp.get_json()
    stats = resp.get_json()
    assert stats[0]["added"] == 1, stats
