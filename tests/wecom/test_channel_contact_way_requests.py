"""channel contact ways — exact request shapes sent to WeCom, updates, WeCom
failures on create, state uniqueness, changes to a deleted channel, auditing, odd input.

Written as review probes: those that showed a defect (since fixed) say what failed."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from backend.platform.audit import AuditLog
from backend.wecom.models import WeComChannel
from tests.wecom.helpers import CHANNELS, ZHANG, contact_way, post_channel, run_due_jobs, upstream_calls

LI = "advisor.li"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    make_staff(tree.stores[0], "sales_advisor", userid=LI, name="李顾问")
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    return {"sb": sandbox_reset, "store0": tree.stores[0].id, "h": staff_headers(manager)}


def create(client: Any, world: Any, userids: list[str] | None = None, **overrides: Any) -> Any:
    return post_channel(client, world["h"], world["store0"], userids or [ZHANG], **overrides)


def error_format(resp: Any) -> bool:
    body = resp.get_json() or {}
    return {"code", "status", "message"} <= set(body) and body["status"] == resp.status_code


# --- checks that held on review


def test_single_person_add_contact_way_body_is_exact(client: Any, world: Any) -> None:
    """An advisor's own QR code with one advisor and no cap is a single-person way (type 1)."""
    resp = create(client, world, kind="advisor")
    assert resp.status_code == 201, resp.get_json()
    (call,) = upstream_calls(world["sb"], "/cgi-bin/externalcontact/add_contact_way")
    assert call["json"] == {
        "type": 1,
        "scene": 2,
        "remark": "门店0活码",
        "skip_verify": True,
        "state": "store0-qr",
        "user": [ZHANG],
    }


def test_two_advisors_make_a_multi_person_way_and_remark_is_cut_to_30_chars(client: Any, world: Any) -> None:
    name = "春季车展活码" * 10  # 60 Chinese characters
    resp = create(client, world, [ZHANG, LI], name=name, skip_verify=False, kind="event")
    assert resp.status_code == 201, resp.get_json()
    (call,) = upstream_calls(world["sb"], "/cgi-bin/externalcontact/add_contact_way")
    body = call["json"]
    assert (body["type"], body["scene"], body["user"], body["skip_verify"]) == (2, 2, [ZHANG, LI], False)
    assert body["remark"] == name[:30] and len(body["remark"]) == 30
    assert "party" not in body and "is_temp" not in body


def test_update_advisors_sends_config_id_users_and_the_unchanged_state(client: Any, world: Any) -> None:
    channel = create(client, world, [ZHANG, LI]).get_json()
    resp = client.patch(f"{CHANNELS}/{channel['id']}", headers=world["h"], json={"userids": [LI]})
    assert resp.status_code == 200, resp.get_json()
    (call,) = upstream_calls(world["sb"], "/cgi-bin/externalcontact/update_contact_way")
    assert call["json"]["config_id"] == channel["config_id"]
    assert (call["json"]["user"], call["json"]["state"]) == ([LI], "store0-qr")
    assert contact_way(world["sb"], channel["config_id"])["user"] == [LI]
    # a change WeCom does not hold (the welcome template, the auto tags) makes no call
    assert client.patch(f"{CHANNELS}/{channel['id']}", headers=world["h"], json={"auto_tag_ids": []}).status_code == 200
    assert len(upstream_calls(world["sb"], "/cgi-bin/externalcontact/update_contact_way")) == 1


def test_state_cannot_be_patched_and_the_refusal_is_the_error_format(client: Any, world: Any) -> None:
    channel = create(client, world).get_json()
    resp = client.patch(f"{CHANNELS}/{channel['id']}", headers=world["h"], json={"state": "other"})
    assert resp.status_code == 422 and error_format(resp)
    assert upstream_calls(world["sb"], "/cgi-bin/externalcontact/update_contact_way") == []


@pytest.mark.parametrize("errcode", [60111, 40058, 45009])
def test_wecom_refusing_the_create_leaves_no_channel_and_the_state_free(
    client: Any, db_session: Any, world: Any, errcode: int
) -> None:
    world["sb"].state.set_fault(
        "errcode", errcode=errcode, service="wecom", path="/cgi-bin/externalcontact/add_contact_way", count=1
    )
    refused = create(client, world)
    assert refused.status_code == 502 and error_format(refused)
    assert refused.get_json()["errors"]["upstream"]["errcode"] == errcode
    db_session.expire_all()
    assert db_session.scalars(select(WeComChannel)).all() == []
    assert create(client, world).status_code == 201  # the state was not left taken


def test_state_is_unique_ignoring_case(client: Any, world: Any) -> None:
    assert create(client, world, state="Spring-QR").status_code == 201
    again = create(client, world, state="spring-qr")
    assert (again.status_code, again.get_json()["code"]) == (409, "wecom.channel_state_taken")
    assert error_format(again)
    assert len(upstream_calls(world["sb"], "/cgi-bin/externalcontact/add_contact_way")) == 1


@pytest.mark.parametrize(
    "body",
    [
        None,
        "text",
        {"name": None},
        {"userids": "advisor.zhang"},
        {"userids": [None]},
        {"state": 123},
        {"skip_verify": "maybe"},
        {"daily_cap": 1.5},
        {"auto_tag_ids": [1]},
        {"store_id": True},
        {"welcome_template_id": -1},
    ],
)
def test_odd_create_bodies_are_4xx_in_the_error_format(client: Any, world: Any, body: Any) -> None:
    base = {"name": "n", "kind": "store", "state": "odd-qr", "userids": [ZHANG], "store_id": world["store0"]}
    payload = {**base, **body} if isinstance(body, dict) else body
    resp = client.post(CHANNELS, headers=world["h"], json=payload)
    assert 400 <= resp.status_code < 500 and error_format(resp), (resp.status_code, resp.get_json())
    assert upstream_calls(world["sb"], "/cgi-bin/externalcontact/add_contact_way") == []


@pytest.mark.parametrize("state", [" store0-qr", "store0 qr", "store0-qr ", "store0\tqr", "店0", "ｓｔｏｒｅ０"])
def test_states_with_whitespace_or_non_ascii_are_refused_before_wecom(client: Any, world: Any, state: str) -> None:
    """A state is 1..30 of [A-Za-z0-9_.:-] (so bytes == characters, within WeCom's 30 characters)."""
    resp = create(client, world, state=state)
    assert (resp.status_code, resp.get_json()["code"]) == (422, "request.invalid") and error_format(resp)
    assert upstream_calls(world["sb"], "/cgi-bin/externalcontact/add_contact_way") == []


# --- defects found on review, since fixed


def test_a_create_that_times_out_leaves_no_contact_way_unknown_to_dealerloop(
    client: Any, db_session: Any, world: Any
) -> None:
    """Was a defect: WeCom creates the contact way but answers after the client's timeout (2 s in
    tests): the request is a 504 and its channel row is rolled back, yet the contact way exists
    in WeCom. Nobody knows its config_id, so it can never be deleted; the manager's retry makes
    a second one with the same state. Expected: no contact way in WeCom that no channel holds."""
    sb = world["sb"]
    # a first channel, so that the client holds a token this sandbox issued (a stale one would
    # be answered 40014 after the delay, and no contact way made)
    assert create(client, world, state="warm-up").status_code == 201
    sb.state.set_fault("slow", seconds=3, service="wecom", path="/cgi-bin/externalcontact/add_contact_way", count=1)
    first = create(client, world)
    assert first.status_code == 504 and error_format(first)
    deadline = time.monotonic() + 5  # WeCom finishes the slow call after our client gave up
    while len(sb.state.contact_ways) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    retry = create(client, world)
    assert retry.status_code == 201, retry.get_json()
    # The failed create left a sweep behind (committed with its 504); once due it lists the ways
    # WeCom made since and deletes the one with this state that no channel holds.
    run_due_jobs(client.application)
    assert sb.hits("/cgi-bin/externalcontact/list_contact_way") >= 1
    db_session.expire_all()
    known = {c.config_id for c in db_session.scalars(select(WeComChannel))}
    with sb.state.lock:
        in_wecom = {cid for cid, way in sb.state.contact_ways.items() if way.get("state") == "store0-qr"}
    assert in_wecom - known == set(), f"orphan contact ways in WeCom: {sorted(in_wecom - known)}"
    assert in_wecom == {retry.get_json()["config_id"]}  # the retry's own way is kept


def test_a_deleted_channel_cannot_be_edited_as_if_live(client: Any, db_session: Any, world: Any) -> None:
    """Was a defect: After DELETE the contact way is gone from WeCom; a PATCH that changes the
    advisors answers 200 and stores them (nothing reaches WeCom, `applied_userids` stays stale),
    so the manager believes a dead QR code now routes to Li. Expected: a 4xx (409)."""
    channel = create(client, world, [ZHANG, LI]).get_json()
    assert client.delete(f"{CHANNELS}/{channel['id']}", headers=world["h"]).status_code == 204
    resp = client.patch(f"{CHANNELS}/{channel['id']}", headers=world["h"], json={"userids": [LI], "name": "新"})
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.get_json())


def test_changing_a_channels_advisors_is_audited_like_create_and_delete(
    client: Any, db_session: Any, world: Any
) -> None:
    """Was a defect: create_channel writes `wecom.channel_created` and delete_channel
    `wecom.channel_deleted`, but update_channel writes nothing: who moved the store's QR code
    (and its new customers) from Zhang to Li is not on record."""
    channel = create(client, world, [ZHANG, LI]).get_json()
    assert client.patch(f"{CHANNELS}/{channel['id']}", headers=world["h"], json={"userids": [LI]}).status_code == 200
    db_session.expire_all()
    actions = [a.action for a in db_session.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert "wecom.channel_created" in actions
    assert any(a.startswith("wecom.channel_") and a not in ("wecom.channel_created",) for a in actions), actions


@pytest.mark.parametrize("field", ["name", "userids"])
def test_a_lone_surrogate_in_a_channel_field_is_4xx_not_500(client: Any, world: Any, field: str) -> None:
    """Was a defect: JSON allows "\\ud800" (a lone UTF-16 surrogate); Python keeps it and the
    first .encode() (MariaDB driver, WeCom client) raises UnicodeEncodeError → 500."""
    base = '{"name": %s, "kind": "store", "state": "sur-qr", "userids": %s, "store_id": %d}'  # noqa: UP031
    name = '"\\ud800"' if field == "name" else '"n"'
    userids = '["\\ud800"]' if field == "userids" else f'["{ZHANG}"]'
    raw = base % (name, userids, world["store0"])
    resp = client.post(CHANNELS, headers={**world["h"], "Content-Type": "application/json"}, data=raw)
    assert resp.status_code < 500, (resp.status_code, resp.get_json())
    assert 400 <= resp.status_code < 500 and error_format(resp)
