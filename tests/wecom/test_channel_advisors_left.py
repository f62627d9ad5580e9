"""Channel QR codes and their advisors: a fallback is never the advisor themselves (whatever the case
of the userid), and a QR code stops routing to an advisor who has left, capped or not."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from backend.org.models import Staff, StaffStatus
from tests.wecom.helpers import CHANNELS, ZHANG, channel_world, contact_way, create_channel, post_channel

LI, WANG = "advisor.li", "advisor.wang"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    return channel_world(sandbox_reset, tree, make_staff, staff_headers, (LI, "李顾问"), (WANG, "王顾问"))


def test_fallback_overlap_is_case_insensitive(client: Any, world: Any) -> None:
    """A fallback that is the same WeCom member as a channel advisor (userids are
    case-insensitive) is refused like an exact repeat."""
    resp = post_channel(
        client, world["h"], world["tree"].stores[0].id, [ZHANG], daily_cap=1, fallback_userids=[ZHANG.upper()]
    )
    assert (resp.status_code, resp.get_json().get("code")) == (422, "wecom.fallback_overlaps"), resp.get_json()


def test_uncapped_channel_drops_resigned_advisor_on_update(client: Any, db_session: Any, world: Any) -> None:
    """An uncapped channel for ZHANG and LI; LI resigns (gone from the WeCom directory). Renaming
    the channel must not push LI back to WeCom (60111) and fail."""
    sb = world["sb"]
    channel = create_channel(client, world["h"], world["tree"].stores[0].id, [ZHANG, LI])
    db_session.execute(update(Staff).where(Staff.wecom_userid == LI).values(status=StaffStatus.RESIGNED))
    db_session.commit()
    with sb.state.lock:
        sb.state.members.pop(LI)
    resp = client.patch(f"{CHANNELS}/{channel['id']}", headers=world["h"], json={"name": "新名字"})
    assert resp.status_code == 200, resp.get_json()
    assert contact_way(sb, channel["config_id"])["user"] == [ZHANG]


def test_uncapped_qr_code_stops_routing_to_a_resigned_advisor(
    client: Any, db_session: Any, app: Any, world: Any
) -> None:
    """The periodic rebalance (or anything else) takes a resigned advisor off an uncapped
    channel's contact way, as it does for capped channels."""
    from backend.wecom import jobs
    from tests.wecom.helpers import run_due_jobs

    sb = world["sb"]
    channel = create_channel(client, world["h"], world["tree"].stores[0].id, [ZHANG, LI])
    db_session.execute(update(Staff).where(Staff.wecom_userid == LI).values(status=StaffStatus.RESIGNED))
    db_session.commit()
    with sb.state.lock:
        sb.state.members.pop(LI)
    with app.app_context():
        jobs.rebalance_channels(db_session, 0)
        db_session.commit()
    run_due_jobs(app)
    assert contact_way(sb, channel["config_id"])["user"] == [ZHANG]


def test_an_advisor_named_twice_is_refused(client: Any, world: Any) -> None:
    """The same member twice on a channel's list (exactly, or in another case) is a mistake in
    the request: refused with its own code, on create and on update."""
    store_id = world["tree"].stores[0].id
    twice = post_channel(client, world["h"], store_id, [ZHANG, ZHANG.upper()])
    assert (twice.status_code, twice.get_json()["code"]) == (422, "wecom.userid_repeated")
    channel = create_channel(client, world["h"], store_id, [ZHANG])
    patched = client.patch(f"{CHANNELS}/{channel['id']}", headers=world["h"], json={"userids": [LI, LI]})
    assert (patched.status_code, patched.get_json()["code"]) == (422, "wecom.userid_repeated")
