"""Channel QR codes (「联系我」): create / update / delete through the real client against the
sandbox with every option, the daily add cap per advisor with fallback advisors, per-channel
statistics by day, and the bad input that must answer 4xx."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from backend.platform.audit import AuditLog
from backend.wecom import service
from backend.wecom.models import WeComChannel, WeComChannelFact
from tests.wecom.helpers import CHANNELS, ZHANG, contact_way, contact_xml, post_channel, post_event, upstream_calls

LI = "advisor.li"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    zhang = make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    li = make_staff(tree.stores[0], "sales_advisor", userid=LI, name="李顾问")
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    far = make_staff(tree.stores[3], "store_manager", userid="mgr3")
    admin = make_staff(tree.group, "group_admin", userid="admin")
    return {
        "admin": staff_headers(admin),
        "sb": sandbox_reset,
        "tree": tree,
        "zhang": zhang,
        "li": li,
        "h": staff_headers(manager),
        "far": staff_headers(far),
    }


def create(client: Any, world: Any, **overrides: Any) -> Any:
    # the tree is read only when no store is given: after some requests its rows are detached
    store_id = overrides.pop("store_id") if "store_id" in overrides else world["tree"].stores[0].id
    return post_channel(client, world["h"], store_id, [ZHANG], **overrides)


def test_create_update_delete_contact_way_with_options(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sb"]
    store0 = world["tree"].stores[0].id
    suv = next(iter(sb.state.tag_groups.values()))["tag"][0]["id"]
    # Auto-tags come from the synced library: one it does not hold is refused.
    assert (create(client, world, auto_tag_ids=[suv]).get_json()["code"]) == "wecom.tag_unknown"
    assert client.post("/api/workbench/v1/wecom/tags/sync", headers=world["admin"], json={}).status_code == 202
    template = client.post(
        "/api/workbench/v1/wecom/welcome-templates",
        headers=world["h"],
        json={"name": "欢迎", "store_id": store0, "text": "{customer_name}您好"},
    ).get_json()
    resp = create(
        client,
        world,
        store_id=store0,
        skip_verify=False,
        auto_tag_ids=[suv],
        welcome_template_id=template["id"],
        daily_cap=20,
        fallback_userids=[LI],
    )
    assert resp.status_code == 201, resp.get_json()
    channel = resp.get_json()
    assert channel["config_id"] and channel["qr_code"].startswith("https://")
    assert (channel["daily_cap"], channel["fallback_userids"], channel["applied_userids"]) == (20, [LI], [ZHANG])
    way = contact_way(sb, channel["config_id"])
    # a capped channel is a multi-person contact way (it may hand over to several fallbacks)
    assert (way["type"], way["scene"], way["state"], way["skip_verify"], way["user"]) == (
        2,
        2,
        "store0-qr",
        False,
        [ZHANG],
    )

    swap = {"name": "新名字", "userids": [LI], "fallback_userids": [ZHANG]}
    patched = client.patch(f"{CHANNELS}/{channel['id']}", headers=world["h"], json=swap)
    assert patched.status_code == 200 and patched.get_json()["applied_userids"] == [LI]
    calls = upstream_calls(sb, "/cgi-bin/externalcontact/update_contact_way")
    assert [c["json"]["user"] for c in calls] == [[LI]]
    assert contact_way(sb, channel["config_id"])["remark"] == "新名字"

    assert client.delete(f"{CHANNELS}/{channel['id']}", headers=world["h"]).status_code == 204
    assert channel["config_id"] not in sb.state.contact_ways
    db_session.expire_all()
    assert db_session.get(WeComChannel, channel["id"]).active is False
    # another store's manager sees none of it
    assert client.get(f"{CHANNELS}/{channel['id']}", headers=world["far"]).status_code == 404


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"state": "s" * 31}, "request.invalid"),  # WeCom's limit is 30 characters
        ({"state": "有中文"}, "request.invalid"),
        ({"state": ""}, "request.invalid"),
        ({"userids": []}, "request.invalid"),
        ({"kind": "billboard"}, "request.invalid"),
        ({"daily_cap": 0}, "request.invalid"),
        ({"fallback_userids": [LI]}, "wecom.fallback_without_cap"),
        ({"daily_cap": 5, "fallback_userids": [ZHANG]}, "wecom.fallback_overlaps"),
    ],
)
def test_bad_channels_are_refused_and_nothing_reaches_wecom(
    client: Any, db_session: Any, world: Any, overrides: dict, code: str
) -> None:
    resp = create(client, world, **overrides)
    assert (resp.status_code, resp.get_json()["code"]) == (422, code)
    assert world["sb"].hits("/cgi-bin/externalcontact/add_contact_way", "wecom") == 0
    assert db_session.scalars(select(WeComChannel)).all() == []


def test_a_channel_takes_advisors_of_this_corp_in_the_actors_stores_only(
    client: Any, db_session: Any, world: Any, make_staff: Any, staff_headers: Any
) -> None:
    """A store manager cannot put another store's advisor on a QR code of theirs: that advisor's
    new customers would get this store's welcome, tags and statistics."""
    make_staff(world["tree"].stores[3], "sales_advisor", userid="advisor.far")
    world["sb"].state.add_member("advisor.far", "远店顾问")
    make_staff(world["tree"].stores[0], "sales_advisor", userid="advisor.gone", status="resigned")
    admin = staff_headers(make_staff(world["tree"].group, "group_admin"))
    s0, s3 = world["tree"].stores[0].id, world["tree"].stores[3].id
    refused = [
        (create(client, world, store_id=s0, userids=["advisor.far"]), 403, "wecom.userid_out_of_scope"),
        (
            create(client, world, store_id=s0, daily_cap=5, fallback_userids=["advisor.far"]),
            403,
            "wecom.userid_out_of_scope",
        ),
        (create(client, world, store_id=s0, userids=["nobody"]), 422, "wecom.userid_unknown"),
        (create(client, world, store_id=s0, userids=["advisor.gone"]), 422, "wecom.userid_unknown"),
    ]
    assert [(r.status_code, r.get_json()["code"]) for r, _, _ in refused] == [(s, c) for _, s, c in refused]
    assert refused[0][0].get_json()["errors"] == {"userids": ["advisor.far"]}
    assert world["sb"].hits("/cgi-bin/externalcontact/add_contact_way", "wecom") == 0
    channel = create(client, world, store_id=s0).get_json()
    patched = client.patch(f"{CHANNELS}/{channel['id']}", headers=world["h"], json={"userids": ["advisor.far"]})
    assert (patched.status_code, patched.get_json()["code"]) == (403, "wecom.userid_out_of_scope")
    # a group admin may, and a template must be the channel's store's (or the group's)
    other_template = client.post(
        "/api/workbench/v1/wecom/welcome-templates",
        headers=admin,
        json={"name": "别店", "store_id": s3, "text": "hi"},
    ).get_json()["id"]
    resp = client.patch(f"{CHANNELS}/{channel['id']}", headers=admin, json={"welcome_template_id": other_template})
    assert (resp.status_code, resp.get_json()["code"]) == (422, "wecom.template_store")
    assert (
        client.patch(f"{CHANNELS}/{channel['id']}", headers=admin, json={"userids": ["advisor.far"]}).status_code == 200
    )


def test_channel_and_template_writes_need_a_configuring_role(client: Any, world: Any, staff_headers: Any) -> None:
    advisor = staff_headers(world["zhang"])
    s0 = world["tree"].stores[0].id
    channel = create(client, world, store_id=s0).get_json()
    template = client.post(
        "/api/workbench/v1/wecom/welcome-templates",
        headers=world["h"],
        json={"name": "t", "store_id": s0, "text": "hi"},
    ).get_json()["id"]
    writes = [
        client.patch(f"{CHANNELS}/{channel['id']}", headers=advisor, json={"name": "x"}),
        client.delete(f"{CHANNELS}/{channel['id']}", headers=advisor),
        client.patch(f"/api/workbench/v1/wecom/welcome-templates/{template}", headers=advisor, json={"text": "x"}),
    ]
    assert [(r.status_code, r.get_json()["code"]) for r in writes] == [(403, "auth.forbidden")] * 3


def test_thirty_character_state_is_accepted_and_a_taken_state_is_409(client: Any, world: Any) -> None:
    assert create(client, world, state="s" * 30).status_code == 201
    again = create(client, world, state="s" * 30)
    assert (again.status_code, again.get_json()["code"]) == (409, "wecom.channel_state_taken")
    assert len(upstream_calls(world["sb"], "/cgi-bin/externalcontact/add_contact_way")) == 1


def test_daily_cap_moves_the_contact_way_to_the_fallbacks_and_back_the_next_day(
    client: Any, db_session: Any, app: Any, world: Any
) -> None:
    sb = world["sb"]
    channel = create(client, world, daily_cap=2, fallback_userids=[LI]).get_json()
    t = int(time.time())
    for i in range(2):
        ext = f"wmCap{i}"
        sb.state.add_external_contact(ext, f"客户{i}", follow_userid=ZHANG, state="store0-qr")
        assert post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, ext, t + i, State="store0-qr"))
        if i == 0:  # under the cap: the contact way is left alone
            assert upstream_calls(sb, "/cgi-bin/externalcontact/update_contact_way") == []
    calls = upstream_calls(sb, "/cgi-bin/externalcontact/update_contact_way")
    assert [c["json"] for c in calls] == [{"config_id": channel["config_id"], "user": [LI]}]
    assert contact_way(sb, channel["config_id"])["user"] == [LI]
    db_session.expire_all()
    assert db_session.get(WeComChannel, channel["id"]).applied_userids == [LI]

    # a redelivered add does not count twice and changes nothing more
    post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, "wmCap1", t + 1, State="store0-qr"))
    assert len(upstream_calls(sb, "/cgi-bin/externalcontact/update_contact_way")) == 1

    # the next China day the counts start again: the periodic rebalance gives the advisor back
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    with app.app_context():
        assert service.rebalance_channel(db_session, channel["id"], now=tomorrow) == [ZHANG]
        assert service.rebalance_channel(db_session, channel["id"], now=tomorrow) is None  # idempotent
    db_session.commit()
    assert contact_way(sb, channel["config_id"])["user"] == [ZHANG]


def test_per_channel_statistics_by_day(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sb"]
    channel = create(client, world).get_json()
    other = create(client, world, state="campaign-x", kind="campaign", name="活动").get_json()
    today = datetime.now(UTC)
    t, yesterday = int(today.timestamp()) - 60, int(today.timestamp()) - 86400
    events = [
        contact_xml(sb, "add_external_contact", ZHANG, "wmStat0", yesterday, State="store0-qr"),
        contact_xml(sb, "add_external_contact", ZHANG, "wmStat1", t, State="store0-qr"),
        contact_xml(sb, "add_external_contact", LI, "wmStat2", t + 1, State="store0-qr"),
        contact_xml(sb, "add_external_contact", ZHANG, "wmStat3", t + 2, State="campaign-x"),
        contact_xml(sb, "del_external_contact", LI, "wmStat2", t + 5, Source="DELETE_BY_TRANSFER"),  # not a loss
    ]
    # out of order: the customer's deletion arrives before the add it follows
    late = contact_xml(sb, "add_external_contact", ZHANG, "wmStat4", t + 3, State="store0-qr")
    events.append(contact_xml(sb, "del_follow_user", ZHANG, "wmStat4", t + 4))
    events.append(late)
    events.append(contact_xml(sb, "del_follow_user", ZHANG, "wmStat0", t + 6))
    for xml in events + events[:3]:  # and a few redeliveries
        assert post_event(client, sb, xml).status_code == 200

    d0 = service.china_day(today)
    d1 = d0 - timedelta(days=1)
    query = {"date_from": (d0 - timedelta(days=2)).isoformat(), "date_to": d0.isoformat()}
    resp = client.get(f"{CHANNELS}/{channel['id']}/stats", headers=world["h"], query_string=query)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json() == [
        {"day": (d0 - timedelta(days=2)).isoformat(), "added": 0, "lost": 0, "net": 0},
        {"day": d1.isoformat(), "added": 1, "lost": 0, "net": 1},
        {"day": d0.isoformat(), "added": 3, "lost": 2, "net": 1},
    ]
    other_stats = client.get(f"{CHANNELS}/{other['id']}/stats", headers=world["h"], query_string=query).get_json()
    assert [(d["added"], d["lost"]) for d in other_stats] == [(0, 0), (0, 0), (1, 0)]
    assert db_session.scalars(select(WeComChannelFact)).all()  # counted from fact rows

    far = client.get(f"{CHANNELS}/{channel['id']}/stats", headers=world["far"], query_string=query)
    assert (far.status_code, far.get_json()["code"]) == (404, "wecom.channel_not_found")
    backwards = {"date_from": d0.isoformat(), "date_to": d1.isoformat()}
    bad = client.get(f"{CHANNELS}/{channel['id']}/stats", headers=world["h"], query_string=backwards)
    assert (bad.status_code, bad.get_json()["code"]) == (422, "wecom.stats_range_invalid")
    garbage = client.get(f"{CHANNELS}/{channel['id']}/stats", headers=world["h"], query_string={"date_from": "x"})
    assert garbage.status_code == 422
    for edge in ({"date_to": "0001-01-05"}, {"date_from": "9999-12-31", "date_to": "9999-12-31"}):
        resp = client.get(f"{CHANNELS}/{channel['id']}/stats", headers=world["h"], query_string=edge)
        assert (resp.status_code, resp.get_json()["code"]) == (422, "request.invalid")


def test_a_contact_way_already_gone_in_wecom_is_deleted_here_too(client: Any, db_session: Any, world: Any) -> None:
    """An earlier delete whose answer was lost, or another tool, removed the contact way in
    WeCom: the channel is closed instead of answering 502 for good. A refusal while WeCom still
    has it is still a 502, and the channel stays."""
    sb = world["sb"]
    channel = create(client, world, store_id=world["tree"].stores[0].id).get_json()
    sb.state.set_fault(
        "errcode", errcode=45009, service="wecom", path="/cgi-bin/externalcontact/del_contact_way", count=1
    )
    refused = client.delete(f"{CHANNELS}/{channel['id']}", headers=world["h"])
    assert (refused.status_code, refused.get_json()["code"]) == (502, "upstream.rejected")
    db_session.expire_all()
    assert db_session.get(WeComChannel, channel["id"]).active is True

    with sb.state.lock:
        sb.state.contact_ways.pop(channel["config_id"])
    # WeCom busy when we ask whether it still has it: no conclusion, still a 502
    sb.state.set_fault(
        "errcode", errcode=45009, service="wecom", path="/cgi-bin/externalcontact/get_contact_way", count=1
    )
    busy = client.delete(f"{CHANNELS}/{channel['id']}", headers=world["h"])
    assert (busy.status_code, busy.get_json()["code"]) == (502, "upstream.rejected")
    db_session.expire_all()
    assert db_session.get(WeComChannel, channel["id"]).active is True
    assert client.delete(f"{CHANNELS}/{channel['id']}", headers=world["h"]).status_code == 204
    db_session.expire_all()
    assert db_session.get(WeComChannel, channel["id"]).active is False
    audit = db_session.scalars(select(AuditLog).where(AuditLog.action == "wecom.channel_deleted")).one()
    assert audit.detail == {"gone_in_wecom": True}


def test_a_single_person_qr_code_keeps_one_advisor(client: Any, db_session: Any, world: Any) -> None:
    """WeCom cannot change a contact way's type, and a single-person one takes one user: such a
    channel may change its advisor, not get a second one or a daily cap (WeCom would refuse).
    Only an advisor's own QR code is made single-person (see the poster test below)."""
    sb = world["sb"]
    s0 = world["tree"].stores[0].id
    single = create(client, world, store_id=s0, kind="advisor").get_json()
    assert contact_way(sb, single["config_id"])["type"] == 1
    url = f"{CHANNELS}/{single['id']}"
    for change in ({"userids": [ZHANG, LI]}, {"daily_cap": 5}):
        resp = client.patch(url, headers=world["h"], json=change)
        assert (resp.status_code, resp.get_json()["code"]) == (422, "wecom.channel_single_person"), change
    assert client.patch(url, headers=world["h"], json={"userids": [LI]}).status_code == 200
    assert contact_way(sb, single["config_id"])["user"] == [LI]
    # a channel from before the type was kept: WeCom is asked (get_contact_way) for its type
    db_session.execute(update(WeComChannel).where(WeComChannel.id == single["id"]).values(single_person=None))
    db_session.commit()
    resp = client.patch(url, headers=world["h"], json={"userids": [ZHANG, LI]})
    assert (resp.status_code, resp.get_json()["code"]) == (422, "wecom.channel_single_person")
    assert len(sb.state.received("/cgi-bin/externalcontact/get_contact_way", "wecom")) == 1
    # a multi-person one may go down to one advisor and back
    multi = create(client, world, store_id=s0, state="multi-qr", userids=[ZHANG, LI]).get_json()
    assert contact_way(sb, multi["config_id"])["type"] == 2
    for users in ([ZHANG], [ZHANG, LI]):
        assert client.patch(f"{CHANNELS}/{multi['id']}", headers=world["h"], json={"userids": users}).status_code == 200
