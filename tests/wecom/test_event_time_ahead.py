"""An event whose CreateTime lies far in the future cannot pin a relation's version."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from backend.wecom.events import CREATE_TIME_AHEAD
from backend.wecom.models import FriendStatus, WeComFriend, WeComRawEvent
from tests.wecom.helpers import callback_world, contact_xml, post_event

ADVISOR = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    return callback_world(sandbox_reset, tree, make_staff)


def friend_of(session: Any) -> WeComFriend:
    session.expire_all()
    return session.scalars(
        select(WeComFriend).where(WeComFriend.userid == ADVISOR, WeComFriend.external_userid == CUSTOMER)
    ).one()


def test_a_create_time_from_the_future_is_held_to_the_time_received(client: Any, db_session: Any, world: Any) -> None:
    """CreateTime orders a relation's events: a delete stamped a year ahead (a WeCom clock
    fault, a buggy payload) would outrank every real event to come, for good. It is stored
    held to when it was received (plus CREATE_TIME_AHEAD for a clock a little ahead), so it
    outranks later events for a minute at most; the events in the past keep their times."""
    sb = world["sandbox"]
    t = int(time.time())
    assert (
        post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, t - 100)).data == b"success"
    )
    assert post_event(client, sb, contact_xml(sb, "del_follow_user", ADVISOR, CUSTOMER, t + 365 * 86400)).data == (
        b"success"
    )
    after = int(time.time())
    db_session.expire_all()
    times = db_session.execute(select(WeComRawEvent.change_type, WeComRawEvent.create_time)).all()
    held = dict(times)
    assert held["add_external_contact"] == t - 100
    assert t + CREATE_TIME_AHEAD <= held["del_follow_user"] <= after + CREATE_TIME_AHEAD
    friend = friend_of(db_session)
    assert friend.status == FriendStatus.DELETED_BY_CUSTOMER and friend.version == held["del_follow_user"]
