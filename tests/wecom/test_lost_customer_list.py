"""The lost-customer list (scope, paging, two advisors, re-add, merge) and the timeline."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from backend.touchpoints.models import Touchpoint
from backend.wecom.models import WeComAlert, WeComFriend
from tests.wecom.helpers import callback_world, contact_xml, post_event

ADVISOR = "advisor.zhang"
LOST = "/api/workbench/v1/wecom/lost-customers"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    return callback_world(sandbox_reset, tree, make_staff)


def friend_of(session: Any, userid: str, ext: str) -> WeComFriend:
    session.expire_all()
    return session.scalars(
        select(WeComFriend).where(WeComFriend.userid == userid, WeComFriend.external_userid == ext)
    ).one()


def ok(resp: Any) -> None:
    assert resp.status_code == 200 and resp.data == b"success"


def test_lost_list_paging_with_same_second_losses_lists_every_alert_once(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    """25 customers delete the advisor in the same second: paging 4 at a time must list each
    alert exactly once (the order needs a unique tie-breaker)."""
    sb = world["sandbox"]
    t = int(time.time()) - 100
    exts = [f"wmPage{i:03d}" for i in range(25)]
    for ext in exts:
        sb.state.add_external_contact(ext, "客户", follow_userid=ADVISOR)
        ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, ext, t)))
    for ext in exts:
        ok(post_event(client, sb, contact_xml(sb, "del_follow_user", ADVISOR, ext, t + 1)))
    headers = staff_headers(world["manager"])
    seen: list[int] = []
    for page in range(1, 8):
        body = client.get(LOST, headers=headers, query_string={"page": page, "page_size": 4}).get_json()
        assert body["total"] == 25
        seen += [item["alert_id"] for item in body["items"]]
    assert len(seen) == 25 and len(set(seen)) == 25, sorted(seen)


def test_lost_list_scope(client: Any, db_session: Any, world: Any, staff_headers: Any, make_staff: Any) -> None:
    sb = world["sandbox"]
    tree = world["tree"]
    other_adv = make_staff(tree.stores[0], "sales_advisor", userid="advisor.qian", name="钱顾问")
    far_adv = make_staff(tree.stores[2], "sales_advisor", userid="advisor.far", name="远顾问")
    far_mgr = make_staff(tree.stores[2], "store_manager", userid="mgr.far", name="远店长")
    t = int(time.time()) - 100
    for i, userid in enumerate((ADVISOR, "advisor.qian", "advisor.far")):
        ext = f"wmScope{i}"
        sb.state.add_external_contact(ext, "客户", follow_userid=userid)
        ok(post_event(client, sb, contact_xml(sb, "add_external_contact", userid, ext, t)))
        ok(post_event(client, sb, contact_xml(sb, "del_follow_user", userid, ext, t + 1 + i)))

    def staff_of(headers: dict[str, str]) -> list[int | None]:
        body = client.get(LOST, headers=headers).get_json()
        assert body["total"] == len(body["items"])
        return sorted(item["staff_id"] for item in body["items"])

    zhang = world["advisor"]
    assert staff_of(staff_headers(zhang)) == [zhang.id]
    assert staff_of(staff_headers(other_adv)) == [other_adv.id]
    assert staff_of(staff_headers(world["manager"])) == sorted([zhang.id, other_adv.id])
    assert staff_of(staff_headers(far_mgr)) == [far_adv.id]
    assert staff_of(staff_headers(world["admin"])) == sorted([zhang.id, other_adv.id, far_adv.id])


def test_customer_lost_by_two_then_readds_one(
    client: Any, db_session: Any, world: Any, staff_headers: Any, make_staff: Any
) -> None:
    """Lost by two advisors: listed once per advisor; a re-add to one leaves that one's row."""
    sb = world["sandbox"]
    make_staff(world["tree"].stores[0], "service_advisor", userid="advisor.qian", name="钱顾问")
    ext = "wmTwoLost"
    sb.state.add_external_contact(ext, "客户", follow_userid=ADVISOR)
    sb.state.add_follow("advisor.qian", ext)
    t = int(time.time()) - 100
    for userid in (ADVISOR, "advisor.qian"):
        ok(post_event(client, sb, contact_xml(sb, "add_external_contact", userid, ext, t)))
    ok(post_event(client, sb, contact_xml(sb, "del_follow_user", ADVISOR, ext, t + 1)))
    ok(post_event(client, sb, contact_xml(sb, "del_follow_user", "advisor.qian", ext, t + 2)))
    headers = staff_headers(world["manager"])
    body = client.get(LOST, headers=headers).get_json()
    assert body["total"] == 2 and len({i["customer_id"] for i in body["items"]}) == 1
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, ext, t + 3)))
    body = client.get(LOST, headers=headers).get_json()
    assert [i["staff_id"] for i in body["items"]] != [world["advisor"].id]
    assert body["total"] == 1


def test_merged_customer_events_land_on_survivor(
    client: Any, db_session: Any, world: Any, staff_headers: Any, make_customer: Any
) -> None:
    """A WeCom contact's customer merged into another by a manager: its later loss (and the
    lost list, timeline) are the surviving customer's; the merged-away id answers 404."""
    sb = world["sandbox"]
    store0 = world["tree"].stores[0]
    ext = "wmMerged"
    sb.state.add_external_contact(ext, "客户", follow_userid=ADVISOR)
    t = int(time.time()) - 100
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, ext, t)))
    source_id = friend_of(db_session, ADVISOR, ext).customer_id
    target = make_customer(store=store0)
    mh = staff_headers(world["manager"])
    resp = client.post(
        "/api/workbench/v1/customer-merges",
        headers=mh,
        json={"source_id": source_id, "target_id": target.id, "reason": "same person"},
    )
    assert resp.status_code == 201, resp.get_json()
    ok(post_event(client, sb, contact_xml(sb, "del_follow_user", ADVISOR, ext, t + 5)))
    db_session.expire_all()
    on_source = db_session.scalars(select(Touchpoint.kind).where(Touchpoint.customer_id == source_id)).all()
    assert on_source == []
    alert = db_session.scalars(select(WeComAlert)).one()
    assert alert.customer_id == target.id
    assert [i["customer_id"] for i in client.get(LOST, headers=mh).get_json()["items"]] == [target.id]
    tl = client.get(f"/api/workbench/v1/customers/{target.id}/timeline", headers=mh).get_json()
    kinds = [i["kind"] for i in tl["items"]]
    assert {"friend_added", "friend_deleted_by_customer", "lost_customer_alerted"} <= set(kinds)
    for item in tl["items"]:
        if item["kind"] in ("friend_deleted_by_customer", "lost_customer_alerted"):
            assert int(__import__("datetime").datetime.fromisoformat(item["occurred_at"]).timestamp()) == t + 5
    gone = client.get(f"/api/workbench/v1/customers/{source_id}/timeline", headers=mh)
    assert gone.status_code == 404 and set(gone.get_json()) >= {"code", "status", "message"}


@pytest.mark.parametrize(
    "query",
    [
        {"page": 0},
        {"page": "abc"},
        {"page_size": 0},
        {"page_size": 101},
        {"page_size": "x"},
        {"page": 10**12},
    ],
)
def test_lost_list_bad_input(client: Any, db_session: Any, world: Any, staff_headers: Any, query: Any) -> None:
    resp = client.get(LOST, headers=staff_headers(world["manager"]), query_string=query)
    assert resp.status_code == 422, resp.get_json()
    body = resp.get_json()
    assert {"code", "status", "message", "errors"} <= set(body), body


@pytest.mark.parametrize(
    "query",
    [
        {"kind": "not_a_kind"},
        {"channel": "fax"},
        {"since": "2024-01-01T00:00:00"},
        {"until": "yesterday"},
        {"limit": 0},
        {"limit": 1000},
        {"cursor": "!!!"},
        {"cursor": "x" * 201},
        {"advisor_id": "abc"},
        {"since": "1900-01-01T00:00:00+00:00"},
    ],
)
def test_timeline_bad_input(
    client: Any, db_session: Any, world: Any, staff_headers: Any, make_customer: Any, query: Any
) -> None:
    customer = make_customer(store=world["tree"].stores[0])
    resp = client.get(
        f"/api/workbench/v1/customers/{customer.id}/timeline",
        headers=staff_headers(world["manager"]),
        query_string=query,
    )
    assert resp.status_code == 422, resp.get_json()
    assert {"code", "status", "message", "errors"} <= set(resp.get_json())


def test_timeline_and_360_show_wecom_touchpoints_without_clear_phone(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    from sqlalchemy import select

    from backend.wecom.models import WeComFriend

    sb = world["sandbox"]
    with sb.state.lock:
        f = sb.state.follows[("advisor.zhang", "wmDemoCustomer001")]
        f["remark_mobiles"] = ["13812345678"]
        f["remark"] = "陈先生13812345678"
        f["description"] = "电话 13812345678"
    t = int(time.time()) - 100
    post_event(client, sb, contact_xml(sb, "add_external_contact", "advisor.zhang", "wmDemoCustomer001", t))
    post_event(client, sb, contact_xml(sb, "edit_external_contact", "advisor.zhang", "wmDemoCustomer001", t + 1))
    post_event(client, sb, contact_xml(sb, "del_follow_user", "advisor.zhang", "wmDemoCustomer001", t + 2))
    db_session.expire_all()
    cid = db_session.scalars(select(WeComFriend.customer_id)).one()
    h = staff_headers(world["manager"])
    tl = client.get(f"/api/workbench/v1/customers/{cid}/timeline", headers=h)
    assert tl.status_code == 200
    kinds = [i["kind"] for i in tl.get_json()["items"]]
    assert kinds[:3] == ["lost_customer_alerted", "friend_deleted_by_customer", "friend_edited"] or kinds[:3] == [
        "friend_deleted_by_customer",
        "lost_customer_alerted",
        "friend_edited",
    ], kinds
    assert "13812345678" not in tl.get_data(as_text=True)
    c360 = client.get(f"/api/workbench/v1/customers/{cid}", headers=h)
    assert c360.status_code == 200 and "13812345678" not in c360.get_data(as_text=True)
    adv = client.get(f"/api/workbench/v1/customers/{cid}/timeline", headers=staff_headers(world["advisor"]))
    assert adv.status_code == 200
