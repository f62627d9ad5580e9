"""Channel statistics and the nightly reconciliation: a relation the reconciliation recovers (its
add event was lost) is attributed to the channel of its `state` and counted in that channel's
statistics, as the add event would have been."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from backend.touchpoints.models import Kind, Touchpoint
from backend.wecom import service
from backend.wecom.models import FriendStatus, WeComFriend
from backend.wecom.reconcile import reconcile_advisor
from tests.wecom.helpers import (
    ZHANG,
    add_store_channel,
    channel_stats,
    channel_world,
    contact_xml,
    create_channel,
    post_event,
)


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    return channel_world(sandbox_reset, tree, make_staff, staff_headers)


def test_a_friend_recovered_by_reconciliation_counts_as_a_new_friend_of_its_channel(
    client: Any, db_session: Any, app: Any, world: Any
) -> None:
    """WeCom may never deliver a change_external_contact event (which is why the nightly
    reconciliation exists). The reconciliation creates the relation, attributes it to the channel
    of its `state`, and counts it as that channel's new friend for the day."""
    sb = world["sb"]
    channel = create_channel(client, world["h"], world["tree"].stores[0].id, [ZHANG])
    sb.state.add_external_contact("wmLostEvent", "客户", follow_userid=ZHANG, state="store0-qr")
    with app.app_context():
        reconcile_advisor(db_session, world["zhang"].corp_id, ZHANG)
        db_session.commit()
    friend = db_session.scalars(select(WeComFriend).where(WeComFriend.external_userid == "wmLostEvent")).one()
    assert friend.channel_id == channel["id"]
    stats = channel_stats(client, world["h"], channel["id"], service.china_day(datetime.now(UTC)).isoformat())
    assert stats[0]["added"] == 1, stats


def test_the_add_event_arriving_after_the_reconciliation_is_the_same_add(
    client: Any, db_session: Any, app: Any, world: Any
) -> None:
    """The add's event was only late: the reconciliation recovered the relation first, then the
    event came. One add of the channel that day, one friend_added on the customer's timeline
    (the reconciled one); the event still applies what it knows (the relation stays active)."""
    sb = world["sb"]
    channel = add_store_channel(db_session, sb, world["tree"].stores[0].id, "store0-qr", [ZHANG])
    sb.state.add_external_contact("wmLateEvent", "客户", follow_userid=ZHANG, state="store0-qr")
    createtime = sb.state.follows[(ZHANG, "wmLateEvent")]["createtime"]
    with app.app_context():
        reconcile_advisor(db_session, world["zhang"].corp_id, ZHANG)
        db_session.commit()
    late = contact_xml(sb, "add_external_contact", ZHANG, "wmLateEvent", createtime, State="store0-qr")
    assert post_event(client, sb, late).data == b"success"

    db_session.expire_all()
    friend = db_session.scalars(select(WeComFriend).where(WeComFriend.external_userid == "wmLateEvent")).one()
    assert friend.status == FriendStatus.ACTIVE
    added = db_session.scalars(
        select(Touchpoint).where(Touchpoint.customer_id == friend.customer_id, Touchpoint.kind == Kind.FRIEND_ADDED)
    ).all()
    assert [t.payload.get("reconciled") for t in added] == [True]
    d0 = service.china_day(datetime.fromtimestamp(createtime, UTC))
    assert service.channel_stats(db_session, channel, d0, d0)[0]["added"] == 1

    # A genuine re-add after a loss is a new add: counted and on the timeline.
    lost = contact_xml(sb, "del_follow_user", ZHANG, "wmLateEvent", createtime + 60)
    again = contact_xml(sb, "add_external_contact", ZHANG, "wmLateEvent", createtime + 120, State="store0-qr")
    assert post_event(client, sb, lost).data == b"success"
    assert post_event(client, sb, again).data == b"success"
    db_session.expire_all()
    kinds = db_session.scalars(
        select(Touchpoint.kind).where(Touchpoint.customer_id == friend.customer_id).order_by(Touchpoint.occurred_at)
    ).all()
    assert [k for k in kinds if k in (Kind.FRIEND_ADDED, Kind.FRIEND_DELETED_BY_CUSTOMER)] == [
        Kind.FRIEND_ADDED,
        Kind.FRIEND_DELETED_BY_CUSTOMER,
        Kind.FRIEND_ADDED,
    ]
