"""Segments (客户分群): saved filters over customers, count previews, owner scopes, and the two
functions other features call (`segment_customer_ids`, `customer_in_segment`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from freezegun import freeze_time

from backend.customers.models import Car, LifecycleStage
from backend.platform.db import utcnow
from backend.segments.service import customer_in_segment, segment_customer_ids
from backend.wecom.models import FriendStatus, WeComFriend, WeComFriendTag, WeComTag

WB = "/api/workbench/v1"


def _tag(db_session: Any, customer: Any, *tags: str) -> None:
    from flask import current_app

    friend = WeComFriend(
        corp_id=current_app.config["WECOM_CORP_ID"],  # the staff's corp (make_staff), whose tags they filter by
        userid=f"adv{customer.id}",
        external_userid=f"wm{customer.id}",
        customer_id=customer.id,
        status=FriendStatus.ACTIVE,
    )
    db_session.add(friend)
    db_session.flush()
    db_session.add_all(WeComFriendTag(friend_id=friend.id, tag_id=t) for t in tags)
    db_session.commit()


@pytest.fixture
def people(tree: Any, make_customer: Any, make_staff: Any, db_session: Any, app_ctx: Any) -> dict[str, Any]:
    from backend.points import service as points
    from backend.touchpoints.service import record

    s0, s1, s3 = tree.stores[0], tree.stores[1], tree.stores[3]
    corp = app_ctx.app.config["WECOM_CORP_ID"]
    # the tags in the corp's library (a segment names tags of its corp's library; tag-none: nobody has it)
    db_session.add_all(
        WeComTag(corp_id=corp, tag_id=t, group_id="g", group_name="测试", name=t)
        for t in ("tag-ev", "tag-vip", "tag-none")
    )
    gold_ev = make_customer(s0, name="金卡电车")
    gold_ev.tier = "gold"
    gold_ev.lifecycle_stage = LifecycleStage.LOYAL
    db_session.add(Car(customer_id=gold_ev.id, vin="LFV2A21K7G3000101", brand="比亚迪", series="汉EV"))
    _tag(db_session, gold_ev, "tag-ev", "tag-vip")
    points.earn(db_session, gold_ev.id, 800, key="seed:gold", reason_code="test", operator="system:test")
    record(
        db_session,
        customer_id=gold_ev.id,
        kind="arrived",
        channel="store",
        source="t",
        source_ref="visit:gold",
        store_id=s0.id,
        occurred_at=utcnow() - timedelta(days=10),
    )
    plain = make_customer(s0, name="普通无车")
    _tag(db_session, plain, "tag-vip")
    region_peer = make_customer(s1, name="同区域")
    region_peer.tier = "gold"
    db_session.add(Car(customer_id=region_peer.id, vin="LFV2A21K7G3000102", brand="大众", series="帕萨特"))
    far = make_customer(s3, name="外区域金卡")
    far.tier = "gold"
    db_session.commit()
    return {
        "gold_ev": gold_ev,
        "plain": plain,
        "region_peer": region_peer,
        "far": far,
        "manager0": make_staff(s0, "store_manager"),
        "region0": make_staff(tree.regions[0], "region_manager"),
        "marketing_group": make_staff(tree.group, "marketing"),
        "admin": make_staff(tree.group, "group_admin"),
        "advisor0": make_staff(s0, "sales_advisor"),
        "manager3": make_staff(s3, "store_manager"),
    }


def _create(client: Any, headers: dict, filters: dict, **extra: Any) -> Any:
    return client.post(f"{WB}/segments", json={"name": "分群", "filters": filters, **extra}, headers=headers)


def test_filters_select_the_right_customers_within_the_owner_scope(
    client: Any, people: Any, staff_headers: Any, db_session: Any, tree: Any
) -> None:
    region = staff_headers(people["region0"])
    cases = [
        ({}, {"gold_ev", "plain", "region_peer"}),  # region 0 only: `far` is in another division
        ({"tiers": ["gold"]}, {"gold_ev", "region_peer"}),
        ({"tags_any": ["tag-ev", "tag-none"]}, {"gold_ev"}),
        ({"tags_all": ["tag-ev", "tag-vip"]}, {"gold_ev"}),
        ({"tags_none": ["tag-vip"]}, {"region_peer"}),
        ({"has_car": False}, {"plain"}),
        ({"car_brands": ["大众"]}, {"region_peer"}),
        ({"car_series": ["汉EV"]}, {"gold_ev"}),
        ({"lifecycle_stages": ["loyal"]}, {"gold_ev"}),
        ({"store_ids": [tree.stores[1].id]}, {"region_peer"}),
        ({"last_visit_within_days": 30}, {"gold_ev"}),
        ({"last_visit_within_days": 5}, set()),
        ({"no_visit_for_days": 30}, {"plain", "region_peer"}),
        ({"points_min": 500}, {"gold_ev"}),
        ({"points_max": 0}, {"plain", "region_peer"}),
        ({"tiers": ["gold"], "has_car": True, "points_max": 100}, {"region_peer"}),
    ]
    ids = {name: people[name].id for name in ("gold_ev", "plain", "region_peer", "far")}
    for filters, expected in cases:
        preview = client.post(f"{WB}/segments/preview", json={"filters": filters}, headers=region)
        assert preview.status_code == 200, preview.get_json()
        assert preview.get_json()["count"] == len(expected), filters
        created = _create(client, region, filters)
        assert created.status_code == 201, created.get_json()
        seg_id = created.get_json()["id"]
        assert created.get_json()["owner_unit_id"] == tree.regions[0].id
        selected = set(db_session.scalars(segment_customer_ids(db_session, seg_id)))
        assert selected == {ids[n] for n in expected}, filters
        for name, cid in ids.items():
            assert customer_in_segment(db_session, seg_id, cid) is (name in expected), (filters, name)
        assert client.get(f"{WB}/segments/{seg_id}/count", headers=region).get_json() == {"count": len(expected)}


def test_group_owned_segment_sees_every_store_and_store_owned_only_its_own(
    client: Any, people: Any, staff_headers: Any, db_session: Any
) -> None:
    group = _create(client, staff_headers(people["marketing_group"]), {"tiers": ["gold"]}).get_json()
    assert client.get(f"{WB}/segments/{group['id']}/count", headers=staff_headers(people["admin"])).get_json() == {
        "count": 3
    }
    store = _create(client, staff_headers(people["manager0"]), {"tiers": ["gold"]}).get_json()
    assert set(db_session.scalars(segment_customer_ids(db_session, store["id"]))) == {people["gold_ev"].id}


def test_segments_are_scoped_and_advisors_see_none(client: Any, people: Any, staff_headers: Any, tree: Any) -> None:
    mine = _create(client, staff_headers(people["manager0"]), {"tiers": ["gold"]}).get_json()
    foreign = _create(client, staff_headers(people["manager3"]), {"tiers": ["gold"]}).get_json()
    region = staff_headers(people["region0"])
    listed = {s["id"] for s in client.get(f"{WB}/segments", headers=region).get_json()["items"]}
    assert mine["id"] in listed and foreign["id"] not in listed
    for method, url in (
        ("GET", f"{WB}/segments/{foreign['id']}"),
        ("GET", f"{WB}/segments/{foreign['id']}/count"),
        ("PATCH", f"{WB}/segments/{foreign['id']}"),
        ("DELETE", f"{WB}/segments/{foreign['id']}"),
    ):
        body = {"filters": {"bogus": 1}} if method == "PATCH" else None
        resp = client.open(url, method=method, json=body, headers=region)
        assert resp.status_code == 404 and resp.get_json()["code"] == "segments.not_found", (method, url)
    advisor = staff_headers(people["advisor0"])
    assert client.get(f"{WB}/segments", headers=advisor).get_json()["items"] == []
    assert _create(client, advisor, {}).status_code == 403
    # A store manager cannot own a segment at the region above.
    up = _create(client, staff_headers(people["manager0"]), {}, owner_unit_id=tree.regions[0].id)
    assert up.status_code == 422 and up.get_json()["code"] == "segments.owner_out_of_scope"


def test_bad_filters_answer_422_with_stable_codes(
    client: Any, people: Any, staff_headers: Any, db_session: Any
) -> None:
    from backend.segments.models import Segment

    h = staff_headers(people["manager0"])
    unknown = _create(client, h, {"tiers": ["gold"], "favourite_colour": ["red"]})
    assert unknown.status_code == 422 and unknown.get_json()["code"] == "segments.unknown_filter"
    assert "favourite_colour" in unknown.get_json()["errors"]["json"]["filters"]
    for bad in (
        {"tiers": ["diamond"]},
        {"tiers": "gold"},
        {"points_min": -1},
        {"points_min": 10, "points_max": 5},
        {"last_visit_within_days": 0},
        {"has_car": "yes"},
        {"store_ids": ["1"]},
        {"lifecycle_stages": []},
    ):
        resp = _create(client, h, bad)
        assert resp.status_code == 422 and resp.get_json()["code"] == "segments.filter_invalid", bad
    preview = client.post(f"{WB}/segments/preview", json={"filters": {"nope": 1}}, headers=h)
    assert preview.status_code == 422 and preview.get_json()["code"] == "segments.unknown_filter"
    assert db_session.query(Segment).count() == 0  # nothing half-written


def test_patch_archive_and_idempotent_create(client: Any, people: Any, staff_headers: Any, db_session: Any) -> None:
    h = {**staff_headers(people["manager0"]), "Idempotency-Key": "seg-1"}
    first = _create(client, h, {"tiers": ["gold"]})
    again = _create(client, h, {"tiers": ["gold"]})
    assert again.headers.get("Idempotent-Replayed") == "true" and again.get_json()["id"] == first.get_json()["id"]
    seg_id = first.get_json()["id"]
    patched = client.patch(f"{WB}/segments/{seg_id}", json={"filters": {"has_car": False}}, headers=h)
    assert patched.status_code == 200 and patched.get_json()["filters"] == {"has_car": False}
    assert customer_in_segment(db_session, seg_id, people["plain"].id)
    bad = client.patch(f"{WB}/segments/{seg_id}", json={"filters": {"x": 1}}, headers=h)
    assert bad.get_json()["code"] == "segments.unknown_filter"
    assert client.delete(f"{WB}/segments/{seg_id}", headers=h).get_json()["archived"] is True
    assert not customer_in_segment(db_session, seg_id, people["plain"].id)  # archived: nobody
    assert client.patch(f"{WB}/segments/{seg_id}", json={"name": "x"}, headers=h).status_code == 409


def test_last_visit_windows_follow_the_clock(client: Any, people: Any, staff_headers: Any, db_session: Any) -> None:
    seg = _create(client, staff_headers(people["manager0"]), {"last_visit_within_days": 30}).get_json()
    assert customer_in_segment(db_session, seg["id"], people["gold_ev"].id)
    with freeze_time(utcnow() + timedelta(days=25)):
        assert not customer_in_segment(db_session, seg["id"], people["gold_ev"].id)


def test_members_page_is_the_segment_within_my_own_scope(
    client: Any, people: Any, staff_headers: Any, tree: Any
) -> None:
    group = _create(client, staff_headers(people["marketing_group"]), {"tiers": ["gold"]}).get_json()
    admin = client.get(f"{WB}/segments/{group['id']}/customers?page_size=2", headers=staff_headers(people["admin"]))
    body = admin.get_json()
    assert body["total"] == 3 and len(body["items"]) == 2
    assert body["items"][0]["id"] == max(people[n].id for n in ("gold_ev", "region_peer", "far"))
    # The region-0 manager cannot see the group-owned segment at all.
    region = staff_headers(people["region0"])
    assert client.get(f"{WB}/segments/{group['id']}/customers", headers=region).status_code == 404
    mine = _create(client, region, {"tiers": ["gold"]}).get_json()
    page = client.get(f"{WB}/segments/{mine['id']}/customers", headers=region).get_json()
    assert {c["id"] for c in page["items"]} == {people["gold_ev"].id, people["region_peer"].id}
