"""who sees and changes a channel and its template, and concurrent creates with
the same state on real threads.

Written as review probes: those that showed a defect (since fixed) say what failed."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.wecom.models import WeComChannel
from tests.threads import count_committed, run_threads
from tests.wecom.helpers import CHANNELS, ZHANG, post_channel, upstream_calls

TEMPLATES = "/api/workbench/v1/wecom/welcome-templates"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    zhang = make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    make_staff(tree.stores[3], "sales_advisor", userid="advisor.far", name="远店顾问")
    return {
        "sb": sandbox_reset,
        "s0": tree.stores[0].id,
        "s3": tree.stores[3].id,
        "h": staff_headers(make_staff(tree.stores[0], "store_manager", userid="mgr0")),
        "far": staff_headers(make_staff(tree.stores[3], "store_manager", userid="mgr3")),
        "advisor": staff_headers(zhang),
        "region0": staff_headers(make_staff(tree.regions[0], "region_manager", userid="rm0")),
        "region1": staff_headers(make_staff(tree.regions[1], "region_manager", userid="rm1")),
        "admin": staff_headers(make_staff(tree.group, "group_admin", userid="gadmin")),
    }


def error_format(resp: Any) -> bool:
    body = resp.get_json() or {}
    return {"code", "status", "message"} <= set(body) and body["status"] == resp.status_code


# --- checks that held on review


def test_an_advisor_sees_no_channel_and_changes_none(client: Any, world: Any) -> None:
    channel = post_channel(client, world["h"], world["s0"], [ZHANG]).get_json()
    h = world["advisor"]
    assert client.get(CHANNELS, headers=h).get_json() == []
    for resp in (
        client.get(f"{CHANNELS}/{channel['id']}", headers=h),
        client.get(f"{CHANNELS}/{channel['id']}/stats", headers=h),
    ):
        assert (resp.status_code, resp.get_json()["code"]) == (404, "wecom.channel_not_found") and error_format(resp)
    for resp in (
        client.patch(f"{CHANNELS}/{channel['id']}", headers=h, json={"userids": [ZHANG]}),
        client.delete(f"{CHANNELS}/{channel['id']}", headers=h),
        post_channel(client, h, world["s0"], [ZHANG], state="advisor-own"),
    ):
        assert resp.status_code in (403, 404) and error_format(resp)
    assert upstream_calls(world["sb"], "/cgi-bin/externalcontact/update_contact_way") == []
    assert upstream_calls(world["sb"], "/cgi-bin/externalcontact/del_contact_way") == []


def test_another_stores_and_regions_managers_get_404_and_nothing_reaches_wecom(
    client: Any, db_session: Any, world: Any
) -> None:
    channel = post_channel(client, world["h"], world["s0"], [ZHANG]).get_json()
    url = f"{CHANNELS}/{channel['id']}"
    for who in ("far", "region1"):
        h = world[who]
        assert client.get(CHANNELS, headers=h).get_json() == []
        for resp in (
            client.get(url, headers=h),
            client.get(f"{url}/stats", headers=h),
            client.patch(url, headers=h, json={"name": "x"}),
            client.delete(url, headers=h),
        ):
            assert (resp.status_code, resp.get_json()["code"]) == (404, "wecom.channel_not_found"), who
    assert client.get(url, headers=world["region0"]).status_code == 200
    assert upstream_calls(world["sb"], "/cgi-bin/externalcontact/update_contact_way") == []
    assert upstream_calls(world["sb"], "/cgi-bin/externalcontact/del_contact_way") == []
    db_session.expire_all()
    assert db_session.get(WeComChannel, channel["id"]).active is True


def test_another_stores_manager_cannot_use_this_stores_template_or_store(client: Any, world: Any) -> None:
    template = client.post(
        TEMPLATES, headers=world["h"], json={"name": "店0", "store_id": world["s0"], "text": "hi"}
    ).get_json()
    far = world["far"]
    mine = post_channel(client, far, world["s3"], ["advisor.far"], state="far-qr").get_json()
    resp = client.patch(f"{CHANNELS}/{mine['id']}", headers=far, json={"welcome_template_id": template["id"]})
    assert (resp.status_code, resp.get_json()["code"]) == (404, "wecom.template_not_found")
    resp = post_channel(client, far, world["s0"], ["advisor.far"], state="far-in-s0")
    assert (resp.status_code, resp.get_json()["code"]) == (403, "wecom.store_forbidden")
    resp = client.patch(f"{TEMPLATES}/{template['id']}", headers=far, json={"text": "改"})
    assert (resp.status_code, resp.get_json()["code"]) == (404, "wecom.template_not_found")


# --- defects found on review, since fixed


def test_a_group_wide_template_can_be_used_on_a_store_channel_by_its_manager(client: Any, world: Any) -> None:
    """Was a design inconsistency: `_check_template_store` accepts a group-wide template
    (store_id None) on a store's channel, and group-wide materials are visible to every store
    ("brand pictures every store may attach"); but the template scope rule (_by_store) hides
    group-wide templates from every non-admin, so a store manager cannot list or attach the
    group's welcome: 404 wecom.template_not_found."""
    group_template = client.post(
        TEMPLATES, headers=world["admin"], json={"name": "集团欢迎", "store_id": None, "text": "欢迎来到集团"}
    )
    assert group_template.status_code == 201, group_template.get_json()
    tid = group_template.get_json()["id"]
    assert tid in [t["id"] for t in client.get(TEMPLATES, headers=world["h"]).get_json()]
    resp = post_channel(client, world["h"], world["s0"], [ZHANG], welcome_template_id=tid)
    assert resp.status_code == 201, resp.get_json()


# ------------------------------------------------------------------ real threads


@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_concurrent_creates_with_one_state_make_one_channel_and_one_contact_way(
    app: Any, db_session: Any, world: Any
) -> None:
    states = ["race-qr", "race-qr", "RACE-QR", "race-qr"]

    def request(i: int) -> tuple[int, str | None]:
        resp = app.test_client().post(
            CHANNELS,
            headers=world["h"],
            json={
                "name": f"并发{i}",
                "kind": "campaign",
                "state": states[i],
                "userids": [ZHANG],
                "store_id": world["s0"],
            },
        )
        return resp.status_code, resp.get_json().get("code")

    try:
        results = run_threads(4, request)
        assert sorted(r[0] for r in results) == [201, 409, 409, 409], results
        assert {r[1] for r in results if r[0] == 409} == {"wecom.channel_state_taken"}
        assert count_committed(app, WeComChannel) == 1
        assert len(upstream_calls(world["sb"], "/cgi-bin/externalcontact/add_contact_way")) == 1
        db_session.expire_all()
        (channel,) = db_session.scalars(select(WeComChannel)).all()
        assert channel.config_id in world["sb"].state.contact_ways
    finally:
        db_session.close()
