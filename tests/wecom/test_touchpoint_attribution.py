"""WeCom touchpoints carry advisor, store, event time; out-of-order losses; profile ties."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from backend.touchpoints.models import CustomerProfile, Touchpoint
from backend.wecom.models import WeComAlert, WeComFriend
from tests.wecom.helpers import callback_world, contact_xml, post_event

ADVISOR = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    return callback_world(sandbox_reset, tree, make_staff)


def tps(session: Any, customer_id: int) -> list[Touchpoint]:
    session.expire_all()
    return list(
        session.scalars(select(Touchpoint).where(Touchpoint.customer_id == customer_id).order_by(Touchpoint.id))
    )


def friend_of(session: Any, userid: str, ext: str) -> WeComFriend:
    session.expire_all()
    return session.scalars(
        select(WeComFriend).where(WeComFriend.userid == userid, WeComFriend.external_userid == ext)
    ).one()


def test_every_wecom_touchpoint_of_a_relation_carries_advisor_store_and_event_time(
    client: Any, db_session: Any, world: Any
) -> None:
    """add (with a corporate tag on the follow), edit after the tag is changed, half add, loss:
    every touchpoint has Zhang as advisor, Zhang's store, and its event's CreateTime."""
    sb = world["sandbox"]
    store0 = world["tree"].stores[0].id
    zhang = world["advisor"].id
    db_session.commit()
    t = int(time.time()) - 300
    assert post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, t)).data == b"success"
    # the advisor changes the customer's tags in WeCom: an edit event
    other_tag = next(tag["id"] for g in sb.state.tag_groups.values() for tag in g["tag"] if tag["name"] == "轿车")
    with sb.state.lock:
        sb.state.follows[(ADVISOR, CUSTOMER)]["tag_ids"] = [other_tag]
    post_event(client, sb, contact_xml(sb, "edit_external_contact", ADVISOR, CUSTOMER, t + 10))
    post_event(client, sb, contact_xml(sb, "del_follow_user", ADVISOR, CUSTOMER, t + 20))
    friend = friend_of(db_session, ADVISOR, CUSTOMER)
    rows = tps(db_session, friend.customer_id)
    kinds = sorted({r.kind for r in rows})
    assert {"friend_added", "tag_added", "tag_removed", "friend_edited", "friend_deleted_by_customer"} <= set(kinds)
    expected_at = {
        "friend_added": t,
        "friend_edited": t + 10,
        "friend_deleted_by_customer": t + 20,
        "lost_customer_alerted": t + 20,
    }
    got = {r.kind: int(r.occurred_at.timestamp()) for r in rows if r.kind in expected_at}
    assert got == expected_at
    wrong = [(r.kind, r.advisor_id, r.store_id) for r in rows if (r.advisor_id, r.store_id) != (zhang, store0)]
    assert wrong == [], f"advisor {zhang} store {store0} expected"


def test_workbench_tag_marking_touchpoint_carries_the_store(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    sb = world["sandbox"]
    t = int(time.time()) - 60
    post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, t))
    sync = client.post("/api/workbench/v1/wecom/tags/sync", headers=staff_headers(world["admin"]), json={})
    assert sync.status_code == 202
    friend = friend_of(db_session, ADVISOR, CUSTOMER)
    tag_b = next(tag["id"] for g in sb.state.tag_groups.values() for tag in g["tag"] if tag["name"] == "B")
    resp = client.post(
        f"/api/workbench/v1/wecom/customers/{friend.customer_id}/tags",
        headers=staff_headers(world["advisor"]),
        json={"add_tag_ids": [tag_b]},
    )
    assert resp.status_code == 200, resp.get_json()
    rows = [r for r in tps(db_session, friend.customer_id) if r.kind == "tag_added" and r.payload["tag_id"] == tag_b]
    assert [(r.advisor_id, r.store_id) for r in rows] == [(world["advisor"].id, world["tree"].stores[0].id)]


def _losses(client: Any, sb: Any, ext: str, t: int, order: list[int]) -> None:
    events = [
        contact_xml(sb, "add_external_contact", ADVISOR, ext, t),
        contact_xml(sb, "del_follow_user", ADVISOR, ext, t + 1),  # the customer deleted the advisor
        contact_xml(sb, "del_external_contact", ADVISOR, ext, t + 5),  # then the advisor removed them
    ]
    for i in order:
        assert post_event(client, sb, events[i]).data == b"success"


def test_lost_alert_touchpoint_matches_its_alert_when_the_losses_come_out_of_order(
    client: Any, db_session: Any, world: Any
) -> None:
    """In order, the alert and its lost_customer_alerted touchpoint are for the customer's
    deletion at t+1. Delivered with the advisor's removal (t+5) first, the alert is moved to the
    t+1 loss (move_alert); its touchpoint should say the same as in order."""
    sb = world["sandbox"]
    for ext in ("wmLossInOrder", "wmLossReversed"):
        sb.state.add_external_contact(ext, "客户", follow_userid=ADVISOR)
    t = int(time.time()) - 200
    _losses(client, sb, "wmLossInOrder", t, [0, 1, 2])
    _losses(client, sb, "wmLossReversed", t, [0, 2, 1])

    def view(ext: str) -> dict[str, Any]:
        friend = friend_of(db_session, ADVISOR, ext)
        alert = db_session.scalars(select(WeComAlert).where(WeComAlert.friend_id == friend.id)).one()
        tp = [r for r in tps(db_session, friend.customer_id) if r.kind == "lost_customer_alerted"]
        return {
            "alert": (alert.kind.value, int(alert.occurred_at.timestamp()) - t),
            "touchpoints": [(r.payload["alert"], int(r.occurred_at.timestamp()) - t) for r in tp],
        }

    assert view("wmLossReversed") == view("wmLossInOrder")


def test_profile_last_contact_advisor_does_not_depend_on_processing_order(
    client: Any, db_session: Any, world: Any, make_staff: Any
) -> None:
    """Two advisors add the same customer in the same second (two distinct events). The
    customer's profile must not depend on which event the worker happened to process last."""
    sb = world["sandbox"]
    make_staff(world["tree"].stores[0], "service_advisor", userid="advisor.sun", name="孙顾问")
    t = int(time.time()) - 100
    for ext in ("wmTieA", "wmTieB"):
        sb.state.add_external_contact(ext, "客户", follow_userid=ADVISOR)
        sb.state.add_follow("advisor.sun", ext)
    for ext, order in (("wmTieA", (ADVISOR, "advisor.sun")), ("wmTieB", ("advisor.sun", ADVISOR))):
        for userid in order:
            assert post_event(client, sb, contact_xml(sb, "add_external_contact", userid, ext, t)).data == b"success"

    def last_advisor(ext: str) -> int | None:
        cid = friend_of(db_session, ADVISOR, ext).customer_id
        return db_session.get(CustomerProfile, cid).last_contact_advisor_id

    assert last_advisor("wmTieA") == last_advisor("wmTieB")
