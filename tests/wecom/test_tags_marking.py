"""Tags marked from dealerloop: the workbench calls `mark_tag` through the real client against the
sandbox, updates the relation table and writes the touchpoints itself (API actions produce no
callback). Scoped to the staff actor's data; bad input answers 4xx and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.platform.audit import AuditLog
from backend.touchpoints.models import Touchpoint
from backend.wecom.models import WeComFriendTag
from tests.wecom.helpers import befriend_and_sync_tags, tag_id

ADVISOR = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"


@pytest.fixture
def world(client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> Any:
    sb = sandbox_reset
    advisor = make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR, name="张顾问")
    admin = make_staff(tree.group, "group_admin", userid="admin")
    outsider = make_staff(tree.stores[3], "store_manager", userid="far.away")
    friend = befriend_and_sync_tags(client, db_session, sb, staff_headers, admin, ADVISOR, CUSTOMER)
    return {"sb": sb, "advisor": advisor, "outsider": outsider, "friend": friend, "customer_id": friend.customer_id}


def url(world: Any) -> str:
    return f"/api/workbench/v1/wecom/customers/{world['customer_id']}/tags"


def tags_of(session: Any, friend_id: int) -> set[str]:
    session.expire_all()
    return set(session.scalars(select(WeComFriendTag.tag_id).where(WeComFriendTag.friend_id == friend_id)))


def workbench_touchpoints(session: Any) -> list[tuple[str, str]]:
    session.expire_all()
    rows = session.scalars(select(Touchpoint).where(Touchpoint.source == "workbench"))
    return sorted((t.kind, t.payload["tag_id"]) for t in rows)


def test_advisor_marks_and_unmarks_tags_through_mark_tag(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    sb, friend = world["sb"], world["friend"]
    suv, grade_a = tag_id(sb, "SUV"), tag_id(sb, "A")
    assert tags_of(db_session, friend.id) == {suv}
    headers = staff_headers(world["advisor"])

    resp = client.post(url(world), headers=headers, json={"add_tag_ids": [grade_a], "remove_tag_ids": [suv]})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert (body["userid"], body["external_userid"], body["tag_ids"]) == (ADVISOR, CUSTOMER, [grade_a])
    assert (body["added"], body["removed"]) == ([grade_a], [suv])
    calls = sb.state.received("/cgi-bin/externalcontact/mark_tag", "wecom")
    assert [c["json"] for c in calls] == [
        {"userid": ADVISOR, "external_userid": CUSTOMER, "add_tag": [grade_a], "remove_tag": [suv]}
    ]
    assert sb.state.follows[(ADVISOR, CUSTOMER)]["tag_ids"] == [grade_a]  # WeCom has it too
    assert tags_of(db_session, friend.id) == {grade_a}
    assert workbench_touchpoints(db_session) == [("tag_added", grade_a), ("tag_removed", suv)]
    tp = db_session.scalars(select(Touchpoint).where(Touchpoint.source == "workbench")).first()
    assert tp.customer_id == world["customer_id"] and tp.payload["by_staff_id"] == world["advisor"].id
    assert db_session.scalars(select(AuditLog.action).where(AuditLog.action == "wecom.tags_marked")).one()

    # the same request again: WeCom is asked again (it is idempotent), nothing new is recorded
    again = client.post(url(world), headers=headers, json={"add_tag_ids": [grade_a], "remove_tag_ids": [suv]})
    assert again.status_code == 200 and (again.get_json()["added"], again.get_json()["removed"]) == ([], [])
    assert workbench_touchpoints(db_session) == [("tag_added", grade_a), ("tag_removed", suv)]


def test_another_scopes_customer_answers_404_and_nothing_is_called(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    resp = client.post(
        url(world), headers=staff_headers(world["outsider"]), json={"add_tag_ids": [tag_id(world["sb"], "A")]}
    )
    assert (resp.status_code, resp.get_json()["code"]) == (404, "customer.not_found")
    missing = client.post(
        "/api/workbench/v1/wecom/customers/999999/tags", headers=staff_headers(world["advisor"]), json={}
    )
    assert missing.status_code == 404
    assert world["sb"].hits("/cgi-bin/externalcontact/mark_tag", "wecom") == 0
    assert workbench_touchpoints(db_session) == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "wecom.tags_empty"),
        ({"add_tag_ids": ["etNoSuchTag"]}, "wecom.tag_unknown"),
        ({"add_tag_ids": ["SAME"], "remove_tag_ids": ["SAME"]}, "wecom.tags_conflict"),
        ({"add_tag_ids": "not-a-list"}, "request.invalid"),
    ],
)
def test_bad_tag_requests_are_refused(
    client: Any, db_session: Any, world: Any, staff_headers: Any, body: dict, code: str
) -> None:
    resp = client.post(url(world), headers=staff_headers(world["advisor"]), json=body)
    assert resp.status_code == 422
    assert resp.get_json()["code"] == code
    assert world["sb"].hits("/cgi-bin/externalcontact/mark_tag", "wecom") == 0


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"mode": "errcode", "errcode": 84061}, 409, "wecom.not_a_friend"),
        ({"mode": "down"}, 502, "upstream.unavailable"),
        ({"mode": "errcode", "errcode": 45009}, 502, "upstream.rejected"),
    ],
)
def test_wecom_refusing_mark_tag_changes_nothing(
    client: Any, db_session: Any, world: Any, staff_headers: Any, fault: dict, status: int, code: str
) -> None:
    sb, friend = world["sb"], world["friend"]
    before = tags_of(db_session, friend.id)
    sb.state.set_fault(service="wecom", path="/cgi-bin/externalcontact/mark_tag", **fault)
    resp = client.post(url(world), headers=staff_headers(world["advisor"]), json={"add_tag_ids": [tag_id(sb, "B")]})
    assert (resp.status_code, resp.get_json()["code"]) == (status, code)
    assert tags_of(db_session, friend.id) == before
    assert workbench_touchpoints(db_session) == []
