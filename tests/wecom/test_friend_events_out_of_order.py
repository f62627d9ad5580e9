"""Friend relations under out-of-order delivery, transfer_fail, and the nightly reconciliation
meeting late events: the end state is the one that applying the distinct events once, in order,
gives."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.wecom.models import FriendStatus, WeComAlert, WeComFriend
from backend.wecom.reconcile import reconcile_advisor
from tests.wecom.helpers import callback_world, contact_xml, post_event

ADVISOR = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    return callback_world(sandbox_reset, tree, make_staff)


def friend_of(session: Any, userid: str, ext: str) -> WeComFriend | None:
    session.expire_all()
    return session.scalars(
        select(WeComFriend).where(WeComFriend.userid == userid, WeComFriend.external_userid == ext)
    ).one_or_none()


def open_alerts(session: Any) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(WeComAlert).where(WeComAlert.resolved_at.is_(None)))


def test_an_old_loss_processed_late_does_not_stay_on_the_lost_list(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    """add t0, loss t1, re-add t2, loss t3. In order, the re-add at t2 resolves the t1 alert and
    only the t3 loss is on the lost list. Delivered as t2, t3, t1 (t1 retried late), the t1 loss
    is older than the relation's current state: it opens no alert of its own even though the
    relation is lost again now, so the customer is listed once."""
    sb = world["sandbox"]
    t = int(time.time()) - 100
    for change, at in (
        ("add_external_contact", t + 2),
        ("del_follow_user", t + 3),
        ("del_follow_user", t + 1),
    ):
        assert post_event(client, sb, contact_xml(sb, change, ADVISOR, CUSTOMER, at)).data == b"success"
    friend = friend_of(db_session, ADVISOR, CUSTOMER)
    assert friend is not None and friend.status == FriendStatus.DELETED_BY_CUSTOMER
    lost = client.get("/api/workbench/v1/wecom/lost-customers", headers=staff_headers(world["manager"])).get_json()
    assert (open_alerts(db_session), lost["total"]) == (1, 1)


def test_transfer_fail_does_not_make_the_takeover_a_friend(client: Any, db_session: Any, world: Any) -> None:
    """transfer_fail's UserID is the takeover member whose takeover failed (接替失败的企业服务人员):
    the customer never became their friend, so the event opens no relation for them."""
    sb = world["sandbox"]
    xml = contact_xml(sb, "transfer_fail", "advisor.li", CUSTOMER, int(time.time()), FailReason="customer_refused")
    assert post_event(client, sb, xml).data == b"success"
    friend = friend_of(db_session, "advisor.li", CUSTOMER)
    assert friend is None or friend.status not in (FriendStatus.ACTIVE, FriendStatus.HALF), (
        f"takeover has an open relation after a failed takeover: {friend.status if friend else None}"
    )


def test_a_late_loss_after_the_reconciliation_keeps_its_own_status(
    client: Any, db_session: Any, app: Any, world: Any
) -> None:
    """The advisor deleted the customer; the event's processing was late, and the reconciliation
    ran first and closed the relation (its version is our clock, later than the event). The late
    event still says who ended the relation: it ends `deleted_by_advisor`, as in order, not
    `closed`."""
    sb = world["sandbox"]
    t = int(time.time()) - 300
    assert post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, t)).data == b"success"
    with sb.state.lock:
        sb.state.follows.pop((ADVISOR, CUSTOMER))  # the advisor deleted the customer in WeCom
    with app.app_context():
        stats = reconcile_advisor(db_session, world["advisor"].corp_id, ADVISOR)
        db_session.commit()
    assert stats["closed"] == 1
    assert post_event(client, sb, contact_xml(sb, "del_external_contact", ADVISOR, CUSTOMER, t + 100)).data == (
        b"success"
    )
    friend = friend_of(db_session, ADVISOR, CUSTOMER)
    assert friend is not None and friend.status == FriendStatus.DELETED_BY_ADVISOR, friend.status
