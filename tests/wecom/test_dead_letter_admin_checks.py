"""Dead-letter admin (list, inspect, replay): bad input is a clean 4xx, and the list is scoped to group admins."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from backend.wecom.models import WeComRawEvent
from tests.wecom.helpers import contact_xml, post_event

ADVISOR = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"
EVENTS = "/api/workbench/v1/wecom/events"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any, db_session: Any) -> dict[str, Any]:
    make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR)
    manager = make_staff(tree.stores[0], "store_manager", userid="advisor.li")
    admin = make_staff(tree.group, "group_admin", userid="admin")
    headers = {"admin": staff_headers(admin), "manager": staff_headers(manager)}
    # staff_headers reads through the test's session: end that read, or the callback's
    # autocommitted INSERT joins it and is rolled back with the request's teardown (harness only).
    db_session.commit()
    return {"sandbox": sandbox_reset, **headers}


def _error_format(resp: Any) -> dict[str, Any]:
    body = resp.get_json()
    assert isinstance(body, dict) and {"code", "status", "message"} <= set(body), resp.data[:300]
    return body


def test_admin_event_ids_out_of_range_answer_404(client: Any, world: Any) -> None:
    """An id beyond BIGINT (a mistyped or hostile URL) is simply not found: 404 in the error
    format for inspect and replay, never a 500."""
    for huge in (2**63, 10**30):
        got = client.get(f"{EVENTS}/{huge}", headers=world["admin"])
        assert got.status_code == 404, (huge, got.status_code, got.data[:200])
        assert _error_format(got)["code"] == "wecom.event_not_found"
        rep = client.post(f"{EVENTS}/{huge}/replay", headers=world["admin"], json={})
        assert rep.status_code == 404, (huge, rep.status_code, rep.data[:200])


def test_admin_bad_filters_and_bodies_are_clean_422(client: Any, db_session: Any, world: Any) -> None:
    """Bad list filters and replay bodies are refused with 422 in the single error format."""
    h = world["admin"]
    for qs in ({"page": 0}, {"page_size": 101}, {"status": "bogus"}, {"page": "x"}, {"page": 10**30}):
        resp = client.get(EVENTS, headers=h, query_string=qs)
        assert resp.status_code == 422, (qs, resp.status_code, resp.data[:200])
        assert _error_format(resp)["code"] == "request.invalid"
    sb = world["sandbox"]
    post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, int(time.time())))
    raw_id = db_session.scalars(select(WeComRawEvent.id)).one()
    for body in ({"reason": "x" * 256}, ["fixed"], {"reason": 5}):
        resp = client.post(f"{EVENTS}/{raw_id}/replay", headers=h, json=body)
        assert resp.status_code == 422, (body, resp.status_code, resp.data[:200])
        _error_format(resp)


def test_admin_replay_of_a_processed_event_is_409_and_manager_sees_nothing(
    client: Any, db_session: Any, world: Any
) -> None:
    """Only dead or ignored events are replayable; a store manager sees no raw event (deny by
    default: 403 on the list, 404 on inspect and replay)."""
    sb = world["sandbox"]
    ack = post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, int(time.time())))
    assert ack.data == b"success", ack.data[:300]
    raw = db_session.scalars(select(WeComRawEvent)).one()
    assert raw.status == "processed"
    resp = client.post(f"{EVENTS}/{raw.id}/replay", headers=world["admin"], json={"reason": "again"})
    assert (resp.status_code, resp.get_json()["code"]) == (409, "wecom.event_not_replayable")
    m = world["manager"]
    assert client.get(EVENTS, headers=m).status_code == 403
    assert client.get(f"{EVENTS}/{raw.id}", headers=m).status_code == 404
    assert client.post(f"{EVENTS}/{raw.id}/replay", headers=m, json={}).status_code == 404
