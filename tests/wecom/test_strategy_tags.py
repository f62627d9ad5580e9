"""Rule-group (规则组) tags: the tag library holds them beside the corporate tags, with their rule
group, kept current by the nightly / on-demand sync (get_strategy_tag_list) and by
change_external_tag callbacks carrying `StrategyId`; customers carry them (follow_user tags of
type 3) and advisors mark them through mark_tag. All through the sandbox, which lists an app only
the rule-group tags it created (doc 99544) and lets mark_tag use only those (doc 92697): one made
in the admin console is learned from the customers carrying it and from its callbacks."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from backend.touchpoints.models import Touchpoint
from backend.wecom import service as svc
from backend.wecom.models import WeComRawEvent, WeComTag
from integrations.sandbox.wecom_emit import FlaskClientTransport, emit
from tests.wecom.helpers import (
    URL,
    befriend_and_sync_tags,
    carried,
    contact_xml,
    count_rows,
    friend_of,
    ok,
    post_channel,
    post_event,
    run_due_jobs,
)

ADVISOR = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"  # the sandbox's seeded contact (carries the corporate tag SUV)
RULE_GROUP = 7
TAGS = "/api/workbench/v1/wecom/tags"


@pytest.fixture
def world(client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> Any:
    """Advisor Zhang befriended by the seeded customer, a group admin, and rule group 7 in WeCom
    with one tag group made by this app (through add_strategy_tag: listed to it) and one made in
    the admin console (not listed to it)."""
    sb = sandbox_reset
    sb.state.add_strategy(RULE_GROUP)
    agent = sb.credentials["WECOM_AGENT_ID"]
    ours = sb.state.add_strategy_tag_group(RULE_GROUP, "试驾意向", ["本周试驾", "下周试驾"], created_by=agent)
    console = sb.state.add_strategy_tag_group(RULE_GROUP, "会员等级", ["金卡", "银卡"])
    advisor = make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR, name="张顾问")
    admin = make_staff(tree.group, "group_admin", userid="admin")
    friend = befriend_and_sync_tags(client, db_session, sb, staff_headers, admin, ADVISOR, CUSTOMER)
    return {
        "sb": sb,
        "friend": friend,
        "ours": ours,
        "console": console,
        "h_admin": staff_headers(admin),
        "h_adv": staff_headers(advisor),
    }


def _tag(group: dict[str, Any], name: str) -> str:
    return next(t["id"] for t in group["tag"] if t["name"] == name)


def _rule_group_tags(client: Any, headers: dict[str, str]) -> list[tuple[str, str, Any, bool]]:
    """The workbench's tag library, its rule-group tags: (name, group name, rule group, markable)."""
    resp = client.get(TAGS, headers=headers)
    assert resp.status_code == 200, resp.get_json()
    return [
        (t["name"], t["group_name"], t["strategy_id"], t["markable"])
        for t in resp.get_json()
        if t["kind"] == "strategy"
    ]


def _tag_event(client: Any, sb: Any, item_id: str, tag_type: str, change: str, at: int) -> None:
    """A change_external_tag of rule group 7, encrypted and signed by the sandbox, posted to the
    callback endpoint."""
    ok(post_event(client, sb, sb.state.change_external_tag_xml(item_id, tag_type, change, at, strategy_id=RULE_GROUP)))


def test_the_sync_reads_the_rule_group_tags_of_this_app_with_their_rule_group(
    app: Any, client: Any, world: Any
) -> None:
    """An admin's sync (the nightly job's) reads get_strategy_tag_list beside get_corp_tag_list:
    the tags this app created under rule group 7 (one group made through the real
    add_strategy_tag call now) are listed with their rule group, after the corporate tags; the
    console's are not listed to this app, so not offered."""
    sb = world["sb"]
    corp = sb.credentials["WECOM_CORP_ID"]
    with app.app_context():
        made = svc.gateway_for(corp).post(
            "externalcontact/add_strategy_tag",
            {"strategy_id": RULE_GROUP, "group_name": "购车预算", "order": 50, "tag": [{"name": "30万以上"}]},
        )
    assert [t["name"] for t in made["tag_group"]["tag"]] == ["30万以上"]
    before = sb.hits("/cgi-bin/externalcontact/get_strategy_tag_list", "wecom")

    assert client.post(f"{TAGS}/sync", headers=world["h_admin"], json={}).status_code == 202

    assert sb.hits("/cgi-bin/externalcontact/get_strategy_tag_list", "wecom") == before + 1
    assert _rule_group_tags(client, world["h_admin"]) == [
        ("30万以上", "购车预算", RULE_GROUP, True),  # order 50: listed first, as WeCom orders groups
        ("下周试驾", "试驾意向", RULE_GROUP, True),
        ("本周试驾", "试驾意向", RULE_GROUP, True),
    ]
    library = client.get(TAGS, headers=world["h_admin"]).get_json()
    corporate = [t for t in library if t["kind"] == "corp"]
    assert {t["name"] for t in corporate} == {"SUV", "轿车", "新能源", "A", "B", "C"}
    assert all(t["strategy_id"] is None and t["markable"] for t in corporate)
    assert library[: len(corporate)] == corporate  # corporate tags first, then by rule group


def test_callbacks_of_a_rule_group_create_update_and_shuffle_its_tags(client: Any, world: Any) -> None:
    """An admin edits this app's rule-group tags in the WeCom console: WeCom sends
    change_external_tag with StrategyId 7. A tag created in the group, a tag renamed and the
    group's tags reordered reach the library, in the rule group."""
    sb, ours = world["sb"], world["ours"]
    group_id = ours["group_id"]
    assert client.post(f"{TAGS}/sync", headers=world["h_admin"], json={}).status_code == 202
    at = int(time.time()) + 5

    new = sb.state.add_strategy_tags(group_id, ["已试驾"])[0]["id"]
    _tag_event(client, sb, new, "tag", "create", at)
    assert ("已试驾", "试驾意向", RULE_GROUP, True) in _rule_group_tags(client, world["h_admin"])

    with sb.state.lock:
        sb.state.find_strategy_tag(_tag(ours, "本周试驾"))[1]["name"] = "今日试驾"
    _tag_event(client, sb, _tag(ours, "本周试驾"), "tag", "update", at + 1)
    names = [t[0] for t in _rule_group_tags(client, world["h_admin"])]
    assert "今日试驾" in names and "本周试驾" not in names

    with sb.state.lock:  # dragged into the order 已试驾, 下周试驾, 今日试驾 (a larger order first)
        for tag in sb.state.strategy_tag_groups[group_id]["tag"]:
            tag["order"] = {"已试驾": 30, "下周试驾": 20, "今日试驾": 10}[tag["name"]]
    _tag_event(client, sb, group_id, "tag_group", "shuffle", at + 2)
    assert [t[0] for t in _rule_group_tags(client, world["h_admin"])] == ["已试驾", "下周试驾", "今日试驾"]


def test_a_rule_group_tag_deleted_in_wecom_leaves_the_customers_carrying_it(
    client: Any, db_session: Any, world: Any
) -> None:
    """The customer carries this app's tag 本周试驾 (marked in WeCom, learned from an edit
    event). An admin deletes it in the console: WeCom removes it from every customer and sends
    only change_external_tag (delete, StrategyId 7). It leaves the library and the relation, with
    a tag_removed touchpoint saying why; the same event again changes nothing."""
    sb, ours, friend = world["sb"], world["ours"], world["friend"]
    this_week = _tag(ours, "本周试驾")
    with sb.state.lock:
        sb.state.follows[(ADVISOR, CUSTOMER)]["tag_ids"].append(this_week)
    at = int(time.time()) + 5
    ok(post_event(client, sb, contact_xml(sb, "edit_external_contact", ADVISOR, CUSTOMER, at)))
    assert this_week in carried(db_session, friend.id)

    sb.state.delete_strategy_tag(this_week)
    _tag_event(client, sb, this_week, "tag", "delete", at + 1)
    _tag_event(client, sb, this_week, "tag", "delete", at + 1)  # redelivered

    assert this_week not in carried(db_session, friend.id)
    assert "本周试驾" not in [t[0] for t in _rule_group_tags(client, world["h_admin"])]
    removals = db_session.scalars(
        select(Touchpoint.payload).where(Touchpoint.customer_id == friend.customer_id, Touchpoint.kind == "tag_removed")
    ).all()
    assert [(p["tag_id"], p.get("reason")) for p in removals] == [(this_week, "deleted_in_wecom")]


def test_a_customer_added_with_a_console_rule_group_tag_carries_it_in_the_library(
    client: Any, db_session: Any, world: Any
) -> None:
    """A customer arrives already marked with 金卡, a rule-group tag made in the admin console
    (externalcontact/get: type 3), which WeCom does not list to this app. The relation carries
    it and the library knows it by name and group (not markable from dealerloop); its rename in
    the console (update, StrategyId 7) names its rule group and its new name, read from the
    customer carrying it; its deletion in the console takes it off the customer."""
    sb, console = world["sb"], world["console"]
    gold = _tag(console, "金卡")
    sb.state.add_external_contact("wmStrategy001", "周女士", follow_userid=ADVISOR, tags=[gold])
    at = int(time.time()) + 5
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, "wmStrategy001", at)))

    friend = friend_of(db_session, ADVISOR, "wmStrategy001")
    assert carried(db_session, friend.id) == {gold}
    assert ("金卡", "会员等级", None, False) in _rule_group_tags(client, world["h_admin"])
    view = client.get(f"/api/workbench/v1/customers/{friend.customer_id}", headers=world["h_adv"])
    assert view.status_code == 200, view.get_json()
    shown = [t for r in view.get_json()["wecom_relations"] for t in r["tags"]]  # the customer 360: by name
    assert [(t["tag_id"], t["name"], t["group_name"]) for t in shown] == [(gold, "金卡", "会员等级")]

    with sb.state.lock:  # renamed in the console
        sb.state.find_strategy_tag(gold)[1]["name"] = "黑金卡"
    _tag_event(client, sb, gold, "tag", "update", at + 1)
    assert ("黑金卡", "会员等级", RULE_GROUP, False) in _rule_group_tags(client, world["h_admin"])

    sb.state.delete_strategy_tag(console["group_id"])
    _tag_event(client, sb, gold, "tag", "delete", at + 2)
    assert carried(db_session, friend.id) == set()
    assert "黑金卡" not in [t[0] for t in _rule_group_tags(client, world["h_admin"])]


def test_an_advisor_marks_and_unmarks_a_rule_group_tag_through_mark_tag(
    client: Any, db_session: Any, world: Any
) -> None:
    """An advisor marks the customer with this app's 下周试驾 from the workbench: mark_tag in
    WeCom, the relation table and a tag_added touchpoint of the workbench, as for corporate
    tags; then unmarks it. The console's 金卡 cannot be marked by this app (WeCom refuses it):
    422 wecom.tag_not_markable, and WeCom is not asked."""
    sb, friend = world["sb"], world["friend"]
    assert client.post(f"{TAGS}/sync", headers=world["h_admin"], json={}).status_code == 202
    next_week, gold = _tag(world["ours"], "下周试驾"), _tag(world["console"], "金卡")
    url = f"/api/workbench/v1/wecom/customers/{friend.customer_id}/tags"

    marked = client.post(url, headers=world["h_adv"], json={"add_tag_ids": [next_week]})
    assert marked.status_code == 200, marked.get_json()
    assert marked.get_json()["added"] == [next_week]
    assert next_week in sb.state.follows[(ADVISOR, CUSTOMER)]["tag_ids"]  # WeCom has it
    assert next_week in carried(db_session, friend.id)
    unmarked = client.post(url, headers=world["h_adv"], json={"remove_tag_ids": [next_week]})
    assert unmarked.status_code == 200 and unmarked.get_json()["removed"] == [next_week]
    assert next_week not in carried(db_session, friend.id)
    calls = [c["json"] for c in sb.state.received("/cgi-bin/externalcontact/mark_tag", "wecom")]
    assert calls == [
        {"userid": ADVISOR, "external_userid": CUSTOMER, "add_tag": [next_week]},
        {"userid": ADVISOR, "external_userid": CUSTOMER, "remove_tag": [next_week]},
    ]
    db_session.expire_all()
    workbench = db_session.scalars(select(Touchpoint).where(Touchpoint.source == "workbench")).all()
    assert sorted((t.kind, t.payload["tag_id"]) for t in workbench) == [
        ("tag_added", next_week),
        ("tag_removed", next_week),
    ]

    sb.state.add_external_contact("wmStrategy002", "吴先生", follow_userid=ADVISOR, tags=[gold])
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, "wmStrategy002", int(time.time()))))
    other = friend_of(db_session, ADVISOR, "wmStrategy002")
    refused = client.post(
        f"/api/workbench/v1/wecom/customers/{other.customer_id}/tags",
        headers=world["h_adv"],
        json={"remove_tag_ids": [gold]},
    )
    assert refused.status_code == 422 and refused.get_json()["code"] == "wecom.tag_not_markable", refused.get_json()
    assert len(sb.state.received("/cgi-bin/externalcontact/mark_tag", "wecom")) == 2
    assert carried(db_session, other.id) == {gold}


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_duplicated_and_shuffled_deliveries_end_as_in_order(
    app: Any, client: Any, db_session: Any, world: Any, seed: int | None
) -> None:
    """A day of rule-group changes in WeCom, then its callbacks delivered in order (None) or
    shuffled with duplicates (seeds): a customer added with the console's 金卡 and 银卡, this
    app's 本周试驾 renamed 今日试驾, 已试驾 created, 下周试驾 and 银卡 deleted, 金卡's update.
    Every order ends with the same library and the same tags on the customer."""
    sb, ours, console = world["sb"], world["ours"], world["console"]
    group_id = ours["group_id"]
    assert client.post(f"{TAGS}/sync", headers=world["h_admin"], json={}).status_code == 202
    gold, silver = _tag(console, "金卡"), _tag(console, "银卡")
    sb.state.add_external_contact("wmStrategy003", "郑先生", follow_userid=ADVISOR, tags=[gold, silver])
    at = int(time.time()) + 5
    events = [contact_xml(sb, "add_external_contact", ADVISOR, "wmStrategy003", at)]
    with sb.state.lock:
        sb.state.find_strategy_tag(_tag(ours, "本周试驾"))[1]["name"] = "今日试驾"
    created = sb.state.add_strategy_tags(group_id, ["已试驾"])[0]["id"]
    sb.state.delete_strategy_tag(_tag(ours, "下周试驾"))
    sb.state.delete_strategy_tag(silver)
    for offset, (item, change) in enumerate(
        [
            (_tag(ours, "本周试驾"), "update"),
            (created, "create"),
            (_tag(ours, "下周试驾"), "delete"),
            (silver, "delete"),
            (gold, "update"),
        ],
        start=1,
    ):
        events.append(sb.state.change_external_tag_xml(item, "tag", change, at + offset, strategy_id=RULE_GROUP))

    report = emit(
        URL,
        events,
        sb.credentials,
        duplicates=0 if seed is None else 6,
        shuffle=seed is not None,
        seed=seed,
        client=FlaskClientTransport(client),
    )
    assert report.acknowledged == len(report.deliveries), report.failed[:3]
    run_due_jobs(app)

    assert count_rows(db_session, WeComRawEvent, WeComRawEvent.status != "processed") == 0
    friend = friend_of(db_session, ADVISOR, "wmStrategy003")
    assert carried(db_session, friend.id) == {gold}
    assert _rule_group_tags(client, world["h_admin"]) == [
        ("已试驾", "试驾意向", RULE_GROUP, True),
        ("今日试驾", "试驾意向", RULE_GROUP, True),
        ("金卡", "会员等级", RULE_GROUP, False),
    ]
    db_session.expire_all()
    deleted = set(db_session.scalars(select(WeComTag.tag_id).where(WeComTag.deleted.is_(True))))
    assert deleted == {_tag(ours, "下周试驾"), silver}


def test_a_channel_cannot_auto_tag_with_another_apps_rule_group_tag(
    client: Any, world: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    """A channel's auto-tags are marked through mark_tag at every add: a rule-group tag made in
    the console (known from a customer carrying it) would be refused each time, so the channel
    is refused (422 wecom.tag_not_markable); this app's rule-group tag is taken."""
    sb = world["sb"]
    gold = _tag(world["console"], "金卡")
    sb.state.add_external_contact("wmStrategy004", "冯女士", follow_userid=ADVISOR, tags=[gold])
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, "wmStrategy004", int(time.time()))))
    assert client.post(f"{TAGS}/sync", headers=world["h_admin"], json={}).status_code == 202
    headers = staff_headers(make_staff(tree.stores[0], "store_manager", userid="mgr0"))
    ways = sb.hits("/cgi-bin/externalcontact/add_contact_way", "wecom")

    refused = post_channel(client, headers, tree.stores[0].id, [ADVISOR], auto_tag_ids=[gold])
    assert refused.status_code == 422, refused.get_json()
    assert (refused.get_json()["code"], refused.get_json()["errors"]) == (
        "wecom.tag_not_markable",
        {"auto_tag_ids": [gold]},
    )
    assert sb.hits("/cgi-bin/externalcontact/add_contact_way", "wecom") == ways
    taken = post_channel(client, headers, tree.stores[0].id, [ADVISOR], auto_tag_ids=[_tag(world["ours"], "本周试驾")])
    assert taken.status_code == 201, taken.get_json()


@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_customers_bringing_one_console_tag_at_once_learn_it_once(
    app: Any, sandbox_reset: Any, tree: Any, make_staff: Any
) -> None:
    """Twelve customers already marked with the console's 金卡 and 银卡 (unknown to the library)
    add advisor Zhang at once: their events are processed on 6 threads over real HTTP, each
    learning the tags. The unique key makes each tag one library row; every relation carries
    both; no event is left unprocessed."""
    from backend.platform.db import db
    from tests.wecom.helpers import live_server

    sb = sandbox_reset
    sb.state.add_strategy(RULE_GROUP)
    console = sb.state.add_strategy_tag_group(RULE_GROUP, "会员等级", ["金卡", "银卡"])
    gold, silver = _tag(console, "金卡"), _tag(console, "银卡")
    make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR, name="张顾问")
    at = int(time.time())
    events = []
    for i in range(12):
        ext = f"wmStrategyRace{i:02d}"
        sb.state.add_external_contact(ext, f"客户{i}", follow_userid=ADVISOR, tags=[silver, gold])
        events.append(contact_xml(sb, "add_external_contact", ADVISOR, ext, at))

    with live_server(app) as url:
        report = emit(url, events, sb.credentials, concurrency=6)
    assert report.acknowledged == len(events), report.failed[:3]
    run_due_jobs(app)  # a try that lost a lock race is retried by the outbox
    with app.app_context():
        session = db.session_factory()
        try:
            assert count_rows(session, WeComRawEvent, WeComRawEvent.status != "processed") == 0
            rows = session.scalars(select(WeComTag).where(WeComTag.tag_id.in_([gold, silver]))).all()
            assert sorted((r.name, r.kind, r.listed) for r in rows) == [
                ("金卡", "strategy", False),
                ("银卡", "strategy", False),
            ]
            for i in range(12):
                assert carried(session, friend_of(session, ADVISOR, f"wmStrategyRace{i:02d}").id) == {gold, silver}
        finally:
            session.close()
