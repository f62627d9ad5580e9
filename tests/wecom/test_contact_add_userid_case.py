"""WeCom add_external_contact / add_half_external_contact (customer found or created by
external_userid / unionid, stitched with the member, relation linked to the advisor, channel
from State, follow_user applied). Review probes: the first part's
each showed a defect (since fixed), the others held."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.customers.models import Customer, CustomerAdvisor
from backend.wecom import service as svc
from backend.wecom.models import FriendStatus, WeComFriendTag
from tests.wecom.helpers import (
    ZHANG,
    add_store_channel,
    callback_world,
    contact_xml,
    friend_of,
    now,
    ok,
    post_event,
    tag_id,
)

EXT = "wmProbeAdd0001"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    return callback_world(sandbox_reset, tree, make_staff)


# =============================================================================================
# Defects found on review (fixed)
# =============================================================================================


def test_an_add_whose_userid_differs_in_case_applies_follow_user_remark_tags_and_add_way(
    client: Any, db_session: Any, world: Any
) -> None:
    """Same root cause as the edit probe: follow_of compares userids case-sensitively, so an add
    event spelled "Advisor.Zhang" gets none of follow_user: no remark, no tags, no add_way."""
    sb = world["sandbox"]
    suv = tag_id(sb, "SUV")
    sb.state.add_external_contact(EXT, "赵先生", follow_userid=ZHANG, remark="赵总", tags=[suv], add_way=3)
    db_session.commit()
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", "Advisor.Zhang", EXT, now())))
    friend = friend_of(db_session, ZHANG, EXT)
    assert friend.staff_id == world["advisor"].id  # the advisor was found (case-insensitive)
    with client.application.app_context():
        remark = svc.friend_notes(friend)["remark"]
    tags = set(db_session.scalars(select(WeComFriendTag.tag_id).where(WeComFriendTag.friend_id == friend.id)))
    assert (remark, tags, friend.add_way) == ("赵总", {suv}, 3)


# =============================================================================================
# Held on review (regression tests)
# =============================================================================================


def test_half_add_then_add_with_state_links_channel_advisor_and_member(
    client: Any, db_session: Any, world: Any
) -> None:
    sb = world["sandbox"]
    login = client.post("/api/app/v1/auth/login", json={"code": sb.state.issue_login_code("o-probe-add", "uAdd1")})
    member_id = login.get_json()["customer_id"]
    channel = add_store_channel(db_session, sb, world["tree"].stores[0].id, "probe-qr", [ZHANG])
    sb.state.add_external_contact(EXT, "赵先生", unionid="uAdd1", follow_userid=ZHANG, state="probe-qr", remark="赵总")
    db_session.commit()
    t = now()
    ok(post_event(client, sb, contact_xml(sb, "add_half_external_contact", ZHANG, EXT, t, State="probe-qr")))
    assert friend_of(db_session, ZHANG, EXT).status == FriendStatus.HALF
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, EXT, t + 1, State="probe-qr")))
    friend = friend_of(db_session, ZHANG, EXT)
    assert (friend.status, friend.customer_id, friend.channel_id, friend.staff_id) == (
        FriendStatus.ACTIVE,
        member_id,
        channel.id,
        world["advisor"].id,
    )
    advisors = db_session.scalars(select(CustomerAdvisor.staff_id).where(CustomerAdvisor.customer_id == member_id))
    assert list(advisors) == [world["advisor"].id]
    assert db_session.scalar(select(func.count()).select_from(Customer).where(Customer.merged_into_id.is_(None))) == 1


def test_adds_processed_in_reverse_keep_the_newer_state(client: Any, db_session: Any, world: Any) -> None:
    """add (t+1) processed before add_half (t): the relation stays ACTIVE."""
    sb = world["sandbox"]
    sb.state.add_external_contact(EXT, "赵先生", follow_userid=ZHANG)
    db_session.commit()
    t = now() - 5
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, EXT, t + 1)))
    ok(post_event(client, sb, contact_xml(sb, "add_half_external_contact", ZHANG, EXT, t)))
    assert friend_of(db_session, ZHANG, EXT).status == FriendStatus.ACTIVE
