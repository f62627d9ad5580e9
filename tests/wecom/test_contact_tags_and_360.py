"""WeCom change_external_tag (corp tag library kept in sync, relations carrying deleted tags)
and the workbench profile of a WeCom contact. Review probes: the first part's
each showed a defect (since fixed), the others held."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from backend.wecom.models import RawEventStatus, WeComFriendTag, WeComRawEvent, WeComTag
from tests.wecom.helpers import (
    ZHANG,
    callback_world,
    carried,
    contact_xml,
    corp_b_world,
    friend_of,
    now,
    ok,
    post_event,
    run_due_jobs,
    tag_id,
)

EXT = "wmProbeTag0001"
TAGS = "/api/workbench/v1/wecom/tags"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    return callback_world(sandbox_reset, tree, make_staff)


def tag_event(client: Any, sb: Any, at: int, **fields: str) -> None:
    corp = sb.credentials["WECOM_CORP_ID"]
    xml = sb.state.wecom_event_xml(corp, "change_external_tag", at, StrategyId="0", **fields)
    ok(post_event(client, sb, xml))


def library(session: Any, corp: str) -> dict[str, WeComTag]:
    session.expire_all()
    return {t.tag_id: t for t in session.scalars(select(WeComTag).where(WeComTag.corp_id == corp))}


# =============================================================================================
# Defects found on review (fixed)
# =============================================================================================


def test_a_deleted_tag_the_library_never_knew_leaves_the_relations_carrying_it(
    client: Any, db_session: Any, world: Any
) -> None:
    """An admin creates group 试驾 (tag 已试驾) and an advisor marks the customer: the edit is
    processed (the relation carries 已试驾) before the library learned the tag (its create
    event is still queued). The admin then deletes the group; both tag events are processed
    after that, so no sync ever lists 已试驾. WeCom has removed it from every customer: the
    relation table (segments read it) must not keep it."""
    sb = world["sandbox"]
    sb.state.add_external_contact(EXT, "赵先生", follow_userid=ZHANG)
    db_session.commit()
    t = now() - 20
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, EXT, t)))
    tag_event(client, sb, t + 1, Id="etSomethingElse", TagType="tag", ChangeType="update")  # library synced
    group = sb.state.add_tag_group("试驾", ["已试驾"])
    drive = group["tag"][0]["id"]
    with sb.state.lock:
        sb.state.follows[(ZHANG, EXT)]["tag_ids"] = [drive]
    ok(post_event(client, sb, contact_xml(sb, "edit_external_contact", ZHANG, EXT, t + 3)))
    friend = friend_of(db_session, ZHANG, EXT)
    assert carried(db_session, friend.id) == {drive}
    with sb.state.lock:
        del sb.state.tag_groups[group["group_id"]]
        sb.state.follows[(ZHANG, EXT)]["tag_ids"] = []
    # The create (t+2) and delete (t+4) events, processed after the deletion.
    tag_event(client, sb, t + 2, Id=group["group_id"], TagType="tag_group", ChangeType="create")
    tag_event(client, sb, t + 4, Id=group["group_id"], TagType="tag_group", ChangeType="delete")
    assert drive not in carried(db_session, friend.id)


def test_the_workbench_customer_360_shows_the_wecom_remark_and_tags(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    """Customer 360 of a WeCom contact, as the advisor opens it: the name, the remark the
    advisor gave the contact in WeCom and its corporate tags (the profile's tags)."""
    sb = world["sandbox"]
    suv = tag_id(sb, "SUV")
    sb.state.add_external_contact(EXT, "赵先生", follow_userid=ZHANG, remark="赵总-换车意向", tags=[suv])
    headers = staff_headers(world["advisor"])
    db_session.commit()
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, EXT, now())))
    friend = friend_of(db_session, ZHANG, EXT)
    assert carried(db_session, friend.id) == {suv}  # stored
    db_session.commit()
    resp = client.get(f"/api/workbench/v1/customers/{friend.customer_id}", headers=headers)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_data(as_text=True)
    shown = json.loads(body)
    assert shown["name"] == "赵先生"
    shows = {"remark": "赵总-换车意向" in body, "tag": suv in body or "SUV" in body}
    assert shows == {"remark": True, "tag": True}, (shows, sorted(shown))


# =============================================================================================
# Held on review (regression tests)
# =============================================================================================


def test_one_tag_deleted_leaves_only_that_tag(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sandbox"]
    corp = sb.credentials["WECOM_CORP_ID"]
    suv, sedan = tag_id(sb, "SUV"), tag_id(sb, "轿车")
    sb.state.add_external_contact(EXT, "赵先生", follow_userid=ZHANG, tags=[suv, sedan])
    db_session.commit()
    t = now() - 10
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, EXT, t)))
    tag_event(client, sb, t + 1, Id=suv, TagType="tag", ChangeType="create")
    friend = friend_of(db_session, ZHANG, EXT)
    assert carried(db_session, friend.id) == {suv, sedan}
    with sb.state.lock:  # WeCom lists it as deleted (rather than omitting it)
        group, tag = sb.state.find_tag(sedan)
        tag["deleted"] = True
    tag_event(client, sb, t + 2, Id=sedan, TagType="tag", ChangeType="delete")
    assert carried(db_session, friend.id) == {suv}
    lib = library(db_session, corp)
    assert lib[sedan].deleted and not lib[suv].deleted


def test_group_rename_and_move_follow_wecom(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sandbox"]
    corp = sb.credentials["WECOM_CORP_ID"]
    suv = tag_id(sb, "SUV")
    t = now() - 10
    tag_event(client, sb, t, Id=suv, TagType="tag", ChangeType="create")
    with sb.state.lock:
        cars, tag = sb.state.find_tag(suv)
        cars["group_name"] = "意向车型(新)"
        grades = next(g for g in sb.state.tag_groups.values() if g["group_name"] == "客户等级")
        moved = grades["tag"].pop(0)  # "A" moves into the renamed group
        cars["tag"].append(moved)
    tag_event(client, sb, t + 1, Id=cars["group_id"], TagType="tag_group", ChangeType="update")
    lib = library(db_session, corp)
    assert lib[suv].group_name == "意向车型(新)"
    assert (lib[moved["id"]].group_id, lib[moved["id"]].group_name) == (cars["group_id"], "意向车型(新)")


def test_a_tag_event_whose_list_fetch_fails_is_retried_until_the_tag_is_known(
    app: Any, client: Any, db_session: Any, world: Any
) -> None:
    sb = world["sandbox"]
    corp = sb.credentials["WECOM_CORP_ID"]
    group = sb.state.add_tag_group("渠道", ["抖音"])
    new = group["tag"][0]["id"]
    sb.state.set_fault("errcode", errcode=-1, path="/cgi-bin/externalcontact/get_corp_tag_list", count=2)
    tag_event(client, sb, now(), Id=group["group_id"], TagType="tag_group", ChangeType="create")
    db_session.expire_all()
    raw = db_session.scalars(select(WeComRawEvent)).one()
    assert raw.status == RawEventStatus.RETRYING
    assert new not in library(db_session, corp)
    db_session.commit()
    run_due_jobs(app)
    db_session.expire_all()
    assert db_session.scalars(select(WeComRawEvent.status)).one() == RawEventStatus.PROCESSED
    assert new in library(db_session, corp) and not library(db_session, corp)[new].deleted


def test_a_tag_deleted_in_another_corp_with_the_same_id_stays_on_this_corps_relation(
    app: Any, client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, monkeypatch: Any
) -> None:
    """Corp B's relation carries tag id X; corp A's library has a tag with the same id X, which
    corp A deletes. Corp A's sync takes X off corp A's relations only."""
    from backend.wecom import service as svc

    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch) as w:
        friend_b, b_tag = w["friend_b"], w["b_tag"]
        db_session.add(WeComFriendTag(friend_id=friend_b.id, tag_id=b_tag))
        # corp A knew a tag of the same id (not in its WeCom any more: the sync deletes it)
        db_session.add(WeComTag(corp_id=w["corp_a"], tag_id=b_tag, group_id="gX", group_name="X", name="同号"))
        db_session.commit()
        with app.app_context():
            svc.sync_tag_library(db_session, w["corp_a"], svc.gateway_for(w["corp_a"]))
            db_session.commit()
        assert library(db_session, w["corp_a"])[b_tag].deleted
        assert carried(db_session, friend_b.id) == {b_tag}
        assert not library(db_session, w["corp_b"])[b_tag].deleted


def test_workbench_views_never_show_a_noted_number_in_clear(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    sb = world["sandbox"]
    sb.state.add_external_contact(EXT, "赵先生", follow_userid=ZHANG, remark="赵总 13712345678")
    with sb.state.lock:
        sb.state.follows[(ZHANG, EXT)]["remark_mobiles"] = ["13712345678"]
    headers = staff_headers(world["manager"])
    db_session.commit()
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, EXT, now())))
    friend = friend_of(db_session, ZHANG, EXT)
    db_session.commit()
    for url in (
        f"/api/workbench/v1/customers/{friend.customer_id}",
        "/api/workbench/v1/customers",
        f"/api/workbench/v1/customers/{friend.customer_id}/timeline",
    ):
        resp = client.get(url, headers=headers)
        assert resp.status_code == 200, (url, resp.get_json())
        assert "13712345678" not in resp.get_data(as_text=True), url
