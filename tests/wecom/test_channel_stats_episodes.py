"""Channel statistics and attribution count relations, not events: a relation's add or loss told
by several events (a half add then its confirmation, a customer's delete then the advisor's) is
one added or lost friend, and a customer's acquisition channel is their first, whatever order the
events are processed in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import Customer
from backend.wecom import service
from backend.wecom.models import WeComFriend
from tests.wecom.helpers import (
    ZHANG,
    channel_stats,
    channel_world,
    contact_way,
    contact_xml,
    create_channel,
    post_event,
)

LI = "advisor.li"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    return channel_world(sandbox_reset, tree, make_staff, staff_headers, (LI, "李顾问"))


def create(client: Any, world: Any, **overrides: Any) -> Any:
    return create_channel(client, world["h"], world["tree"].stores[0].id, [ZHANG], **overrides)


def today_stats(client: Any, world: Any, channel_id: int) -> dict[str, int]:
    row = channel_stats(client, world["h"], channel_id, service.china_day(datetime.now(UTC)).isoformat())[0]
    return {"added": row["added"], "lost": row["lost"], "net": row["net"]}


def test_half_add_then_confirmed_add_counts_one_new_friend(client: Any, db_session: Any, world: Any) -> None:
    """A customer scans a skip-verify QR code: WeCom sends add_half_external_contact (the advisor
    has not confirmed yet), then add_external_contact for the same relation once the advisor
    accepts. The channel counts one new friend, not two."""
    sb = world["sb"]
    channel = create(client, world)
    t = int(datetime.now(UTC).timestamp()) - 60
    sb.state.add_external_contact("wmHalf0", "客户半", follow_userid=ZHANG, state="store0-qr")
    half = contact_xml(sb, "add_half_external_contact", ZHANG, "wmHalf0", t, State="store0-qr")
    assert post_event(client, sb, half).data == b"success"
    confirmed = contact_xml(sb, "add_external_contact", ZHANG, "wmHalf0", t + 5, State="store0-qr")
    assert post_event(client, sb, confirmed).data == b"success"
    assert len(db_session.scalars(select(WeComFriend)).all()) == 1  # one relation
    assert today_stats(client, world, channel["id"]) == {"added": 1, "lost": 0, "net": 1}


def test_half_add_then_confirmed_add_uses_one_slot_of_the_daily_cap(client: Any, db_session: Any, world: Any) -> None:
    """Cap 2 per advisor: one customer (half add + confirmation) uses one slot, so the QR code
    stays on the advisor instead of moving to the fallback advisor."""
    sb = world["sb"]
    channel = create(client, world, userids=[ZHANG], daily_cap=2, fallback_userids=[LI])
    t = int(datetime.now(UTC).timestamp()) - 60
    sb.state.add_external_contact("wmHalf1", "客户半", follow_userid=ZHANG, state="store0-qr")
    half = contact_xml(sb, "add_half_external_contact", ZHANG, "wmHalf1", t, State="store0-qr")
    assert post_event(client, sb, half).data == b"success"
    confirmed = contact_xml(sb, "add_external_contact", ZHANG, "wmHalf1", t + 5, State="store0-qr")
    assert post_event(client, sb, confirmed).data == b"success"
    users = contact_way(sb, channel["config_id"])["user"]
    assert users == [ZHANG]


def test_customer_deletes_then_advisor_deletes_is_one_lost_friend(client: Any, db_session: Any, world: Any) -> None:
    """The customer removes the advisor (del_follow_user); the advisor then clears the one-way
    contact from their list (del_external_contact). One relation was lost, so the channel counts
    one lost friend, once."""
    sb = world["sb"]
    channel = create(client, world)
    t = int(datetime.now(UTC).timestamp()) - 60
    sb.state.add_external_contact("wmLost0", "客户", follow_userid=ZHANG, state="store0-qr")
    for xml in (
        contact_xml(sb, "add_external_contact", ZHANG, "wmLost0", t, State="store0-qr"),
        contact_xml(sb, "del_follow_user", ZHANG, "wmLost0", t + 5),
        contact_xml(sb, "del_external_contact", ZHANG, "wmLost0", t + 10),
    ):
        assert post_event(client, sb, xml).data == b"success"
    assert today_stats(client, world, channel["id"]) == {"added": 1, "lost": 1, "net": 0}


def test_acquisition_channel_is_the_first_channel_whatever_the_processing_order(
    client: Any, db_session: Any, world: Any
) -> None:
    """One customer adds Zhang through channel A, then (later) Li through channel B. Processed in
    order the customer's acquisition channel is A; delivered out of order (B's event first) the
    end state is the same, as for every event: it equals the events applied in order."""
    sb = world["sb"]
    create(client, world, state="chan-a")
    create(client, world, state="chan-b", userids=[LI], name="B")
    t = int(datetime.now(UTC).timestamp()) - 60
    sb.state.add_external_contact("wmTwo", "两码客户", follow_userid=ZHANG, state="chan-a")
    sb.state.add_follow(LI, "wmTwo", state="chan-b")
    later = contact_xml(sb, "add_external_contact", LI, "wmTwo", t + 30, State="chan-b")
    assert post_event(client, sb, later).data == b"success"
    first = contact_xml(sb, "add_external_contact", ZHANG, "wmTwo", t, State="chan-a")
    assert post_event(client, sb, first).data == b"success"
    db_session.expire_all()
    customer = db_session.scalars(select(Customer)).one()
    assert customer.acquisition_channel == "wecom:chan-a"
