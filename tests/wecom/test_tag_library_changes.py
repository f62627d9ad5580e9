"""The corporate tag library kept in sync by change_external_tag callbacks: WeCom's order, and
the tags customers carry when the library changes in WeCom."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.touchpoints.models import Touchpoint
from backend.wecom.models import WeComFriendTag
from tests.wecom.helpers import befriend_and_sync_tags, post_event

ADVISOR = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"  # the sandbox's seeded contact: carries the tag "SUV"
TAGS = "/api/workbench/v1/wecom/tags"


@pytest.fixture
def world(client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> Any:
    sb = sandbox_reset
    advisor = make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR, name="张顾问")
    admin = make_staff(tree.group, "group_admin", userid="admin")
    friend = befriend_and_sync_tags(client, db_session, sb, staff_headers, admin, ADVISOR, CUSTOMER)
    return {"sb": sb, "friend": friend, "h_admin": staff_headers(admin), "h_adv": staff_headers(advisor)}


def _group(sb: Any, name: str) -> dict[str, Any]:
    return next(g for g in sb.state.tag_groups.values() if g["group_name"] == name)


def _tag_event(client: Any, sb: Any, at: int, **fields: str) -> None:
    corp = sb.credentials["WECOM_CORP_ID"]
    xml = sb.state.wecom_event_xml(corp, "change_external_tag", at, StrategyId="0", **fields)
    assert post_event(client, sb, xml).data == b"success"


def test_the_tag_library_follows_wecom_order_after_shuffle(client: Any, world: Any) -> None:
    """WeCom orders tag groups and tags by `order`, larger first ("order值大的排序靠前", doc of
    get_corp_tag_list). An admin drags the group 意向车型 to the top and SUV to the top of it in the
    console; WeCom sends `shuffle`. The workbench's tag library must then list 意向车型 first and
    SUV first within it, as advisors see them in WeCom."""
    sb = world["sb"]
    with sb.state.lock:
        cars = _group(sb, "意向车型")
        cars["order"] = 100  # top group
        _group(sb, "客户等级")["order"] = 1
        for tag, order in zip(cars["tag"], (30, 20, 10), strict=True):  # SUV, 轿车, 新能源
            tag["order"] = order
    _tag_event(client, sb, int(time.time()) + 5, Id=cars["group_id"], TagType="tag_group", ChangeType="shuffle")

    names = [t["name"] for t in client.get(TAGS, headers=world["h_admin"]).get_json()]
    assert names[:3] == ["SUV", "轿车", "新能源"], names
    assert names[3:] == ["A", "B", "C"] or names[3:] == ["C", "B", "A"], names  # the other group after


def test_a_tag_group_deleted_in_wecom_leaves_every_customer(client: Any, db_session: Any, world: Any) -> None:
    """An admin deletes the tag group 意向车型 in the WeCom console: WeCom deletes its tags and
    removes them from every customer, and sends only change_external_tag (no edit event per
    customer). Its tags leave the relation table (which segments read), the customer's tags as
    the marking endpoint answers them, and each removal is a tag_removed touchpoint saying why;
    a second sync finds nothing more to do."""
    sb, friend = world["sb"], world["friend"]
    cars = _group(sb, "意向车型")
    suv = cars["tag"][0]["id"]
    assert suv in carried(db_session, friend.id)
    with sb.state.lock:
        del sb.state.tag_groups[cars["group_id"]]
    _tag_event(client, sb, int(time.time()) + 5, Id=cars["group_id"], TagType="tag_group", ChangeType="delete")

    assert suv not in carried(db_session, friend.id)
    grade_a = _group(sb, "客户等级")["tag"][0]["id"]
    resp = client.post(
        f"/api/workbench/v1/wecom/customers/{friend.customer_id}/tags",
        headers=world["h_adv"],
        json={"add_tag_ids": [grade_a]},
    )
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["tag_ids"] == [grade_a], resp.get_json()
    removals = db_session.scalars(
        select(Touchpoint.payload).where(Touchpoint.customer_id == friend.customer_id, Touchpoint.kind == "tag_removed")
    ).all()
    assert [p["tag_id"] for p in removals if p.get("reason") == "deleted_in_wecom"] == [suv]

    assert client.post(f"{TAGS}/sync", headers=world["h_admin"], json={}).status_code == 202
    db_session.expire_all()
    again = db_session.scalar(select(func.count()).select_from(Touchpoint).where(Touchpoint.kind == "tag_removed"))
    assert again == len(removals)


def carried(session: Any, friend_id: int) -> set[str]:
    session.expire_all()
    return set(session.scalars(select(WeComFriendTag.tag_id).where(WeComFriendTag.friend_id == friend_id)))
