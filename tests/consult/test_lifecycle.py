"""Transfer, close, reopen and read receipts over HTTP."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.platform.audit import AuditLog
from backend.touchpoints.models import Touchpoint
from tests.consult.conftest import APP, WB, inbox, open_conv, owner_says, staff_says


def _transfer(client: Any, who: Any, cid: int, advisor_id: int) -> Any:
    return client.post(f"{WB}/conversations/{cid}/transfer", json={"advisor_id": advisor_id}, headers=who.headers)


def test_transfer_to_a_colleague(client: Any, world: Any, db_session: Any) -> None:
    cid = open_conv(client, world.owner, "new_car", text="想了解二手车置换")["id"]
    resp = _transfer(client, world.sales, cid, world.sales2.id)
    assert resp.status_code == 200 and resp.get_json()["advisor"]["id"] == world.sales2.id
    assert resp.get_json()["transfer_count"] == 1
    assert client.get(f"{WB}/conversations/{cid}", headers=world.sales.headers).status_code == 404
    assert [c["id"] for c in inbox(client, world.sales2, "mine")] == [cid]
    # The answer counts for the advisor who gave it.
    staff_says(client, world.sales2, cid, "可以置换")
    facts = client.get(f"{WB}/conversations/{cid}/responses", headers=world.sales2.headers).get_json()["items"]
    assert [f["advisor_id"] for f in facts] == [world.sales2.id]
    # A manager moves it on again.
    assert _transfer(client, world.manager, cid, world.insurance.id).status_code == 200
    db_session.expire_all()
    tps = db_session.scalars(select(Touchpoint).where(Touchpoint.kind == "consult_transferred").order_by(Touchpoint.id))
    assert [(t.payload["from_staff_id"], t.advisor_id) for t in tps] == [
        (world.sales.id, world.sales2.id),
        (world.sales2.id, world.insurance.id),
    ]
    assert (
        db_session.scalars(select(AuditLog.action).where(AuditLog.action == "consult.transferred")).all()
        == ["consult.transferred"] * 2
    )


def test_bad_transfers_are_refused(client: Any, world: Any, make_staff: Any, tree: Any, db_session: Any) -> None:
    cid = open_conv(client, world.owner, "new_car")["id"]
    resigned = make_staff(tree.stores[0], "sales_advisor", status="resigned")
    other_store_same_region = make_staff(tree.stores[1], "sales_advisor")
    for target in (
        world.foreign_advisor.id,  # another division's store
        other_store_same_region.id,  # another store of the manager's region
        world.manager.id,  # not an advisor
        resigned.id,
        world.sales.id,  # already the assignee
        987654,
    ):
        resp = _transfer(client, world.sales, cid, target)
        assert resp.status_code == 422 and resp.get_json()["code"] == "consult.transfer_target_invalid", target
    assert client.post(f"{WB}/conversations/{cid}/transfer", json={}, headers=world.sales.headers).status_code == 422
    # Someone who does not see it: 404, not a hint that it exists.
    assert _transfer(client, world.sales2, cid, world.sales2.id).status_code == 404
    assert _transfer(client, world.foreign_advisor, cid, world.foreign_advisor.id).status_code == 404
    db_session.expire_all()
    detail = client.get(f"{WB}/conversations/{cid}", headers=world.sales.headers).get_json()
    assert detail["advisor"]["id"] == world.sales.id and detail["transfer_count"] == 0
    client.post(f"{WB}/conversations/{cid}/close", json={}, headers=world.sales.headers)
    closed = _transfer(client, world.sales, cid, world.sales2.id)
    assert closed.status_code == 409 and closed.get_json()["code"] == "consult.closed"


def test_close_and_reopen(client: Any, world: Any, db_session: Any) -> None:
    cid = open_conv(client, world.owner, "service")["id"]
    closed = client.post(f"{APP}/conversations/{cid}/close", json={}, headers=world.owner.headers)
    assert closed.status_code == 200 and closed.get_json()["status"] == "closed" and closed.get_json()["closed_at"]
    again = client.post(f"{APP}/conversations/{cid}/close", json={}, headers=world.owner.headers)
    assert again.status_code == 409 and again.get_json()["code"] == "consult.closed"
    assert [c["id"] for c in inbox(client, world.service, "closed")] == [cid]
    assert inbox(client, world.service, "mine") == []
    reopened = client.post(f"{APP}/conversations/{cid}/reopen", json={}, headers=world.owner.headers)
    assert reopened.status_code == 200 and reopened.get_json()["status"] == "open"
    not_closed = client.post(f"{APP}/conversations/{cid}/reopen", json={}, headers=world.owner.headers)
    assert not_closed.status_code == 409 and not_closed.get_json()["code"] == "consult.not_closed"
    assert owner_says(client, world.owner, cid, "又有问题").status_code == 201
    # Staff close and reopen too; the other advisors of the store cannot.
    assert client.post(f"{WB}/conversations/{cid}/close", json={}, headers=world.sales.headers).status_code == 404
    staff_closed = client.post(f"{WB}/conversations/{cid}/close", json={}, headers=world.service.headers)
    assert staff_closed.status_code == 200 and staff_closed.get_json()["closed_by"] == "staff"
    assert staff_closed.get_json()["reopened_count"] == 1 and staff_closed.get_json()["awaiting_since"] is None
    assert client.post(f"{WB}/conversations/{cid}/reopen", json={}, headers=world.manager.headers).status_code == 200
    db_session.expire_all()
    refs = db_session.scalars(
        select(Touchpoint.source_ref)
        .where(Touchpoint.kind.in_(["consult_closed", "consult_reopened"]))
        .order_by(Touchpoint.id)
    ).all()
    assert refs == [
        f"consult:{cid}:closed:0",
        f"consult:{cid}:reopened:1",
        f"consult:{cid}:closed:1",
        f"consult:{cid}:reopened:2",
    ]


def test_read_receipts(client: Any, world: Any) -> None:
    cid = open_conv(client, world.owner, "service", text="第一条")["id"]
    second = owner_says(client, world.owner, cid, "第二条").get_json()
    staff_view = inbox(client, world.service, "mine")[0]
    assert staff_view["unread"] == 2 and staff_view["other_side_read_message_id"] == second["id"]
    first_id = second["id"] - 1
    resp = client.post(
        f"{WB}/conversations/{cid}/read", json={"up_to_message_id": first_id}, headers=world.service.headers
    )
    assert resp.status_code == 200 and resp.get_json()["unread"] == 1
    mine = client.get(f"{APP}/conversations/{cid}/messages", headers=world.owner.headers).get_json()["items"]
    assert [m["read"] for m in mine] == [True, False]
    client.post(
        f"{WB}/conversations/{cid}/read", json={"up_to_message_id": second["id"]}, headers=world.service.headers
    )
    # Never backwards.
    back = client.post(
        f"{WB}/conversations/{cid}/read", json={"up_to_message_id": first_id}, headers=world.service.headers
    )
    assert back.status_code == 200 and back.get_json()["unread"] == 0
    mine = client.get(f"{APP}/conversations/{cid}/messages", headers=world.owner.headers).get_json()["items"]
    assert [m["read"] for m in mine] == [True, True]
    answer = staff_says(client, world.service, cid, "收到").get_json()
    assert answer["read"] is False
    listed = client.get(f"{APP}/conversations", headers=world.owner.headers).get_json()["items"]
    assert listed[0]["unread"] == 1
    ok = client.post(
        f"{APP}/conversations/{cid}/read", json={"up_to_message_id": answer["id"]}, headers=world.owner.headers
    )
    assert ok.status_code == 200 and ok.get_json()["unread"] == 0
    staff_msgs = client.get(f"{WB}/conversations/{cid}/messages", headers=world.service.headers).get_json()["items"]
    assert staff_msgs[-1]["read"] is True
    # A message id of another thread, or none at all: refused.
    other = open_conv(client, world.owner, "new_car", text="别的")["id"]
    for bad in (answer["id"] + 1000, 0, -1):
        resp = client.post(
            f"{APP}/conversations/{other}/read", json={"up_to_message_id": bad}, headers=world.owner.headers
        )
        assert resp.status_code == 422, bad
    assert client.post(f"{APP}/conversations/{cid}/read", json={}, headers=world.owner.headers).status_code == 422
