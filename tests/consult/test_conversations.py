"""Conversations over HTTP: routing to the assigned advisor or the store's queue, messages both
ways, claiming, the staff inbox, scope, idempotency and bad input."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.consult.models import Conversation, Message
from backend.touchpoints.models import Touchpoint
from tests.consult.conftest import APP, WB, inbox, open_conv, owner_says, staff_says


def _count(db_session: Any, model: Any, *where: Any) -> int:
    db_session.expire_all()
    return db_session.scalar(select(func.count()).select_from(model).where(*where))


def test_a_topic_goes_to_the_owners_advisor_for_it(client: Any, world: Any, db_session: Any) -> None:
    service_conv = open_conv(client, world.owner, "service", car_id=world.car_id)
    assert service_conv["advisor"] == {"id": world.service.id, "name": "赵服务"}
    assert service_conv["status"] == "open" and service_conv["car_id"] == world.car_id
    assert service_conv["store_id"] == world.store.id and service_conv["last_excerpt"] == "保养多少钱？"
    sales_conv = open_conv(client, world.owner, "new_car", text="新款帕萨特有现车吗")
    assert sales_conv["advisor"]["id"] == world.sales.id
    # No insurance advisor assigned to this owner: the store's queue.
    queued = open_conv(client, world.owner, "insurance")
    assert queued["advisor"] is None
    assert [c["id"] for c in inbox(client, world.service, "mine")] == [service_conv["id"]]
    assert [c["id"] for c in inbox(client, world.sales, "mine")] == [sales_conv["id"]]
    assert [c["id"] for c in inbox(client, world.insurance, "unclaimed")] == [queued["id"]]
    mine = client.get(f"{APP}/conversations", headers=world.owner.headers).get_json()["items"]
    assert [c["id"] for c in mine] == [queued["id"], sales_conv["id"], service_conv["id"]]
    kinds = db_session.scalars(
        select(Touchpoint.kind).where(Touchpoint.customer_id == world.owner.id).order_by(Touchpoint.id)
    ).all()
    assert kinds.count("consult_opened") == 3 and kinds.count("consult_message") == 3


def test_messages_both_ways_with_cards_and_images(client: Any, world: Any, db_session: Any) -> None:
    conv = open_conv(client, world.owner, "service")
    cid = conv["id"]
    image = client.post(
        f"{APP}/conversations/{cid}/messages",
        json={"kind": "image", "image_ref": "cloud://env-1/dash.jpg", "text": "仪表盘亮灯"},
        headers=world.owner.headers,
    )
    assert image.status_code == 201 and image.get_json()["ref"] == {"image_ref": "cloud://env-1/dash.jpg"}
    card = client.post(
        f"{APP}/conversations/{cid}/messages",
        json={"kind": "car_card", "car_id": world.car_id},
        headers=world.owner.headers,
    )
    assert card.status_code == 201 and card.get_json()["ref"]["plate"] == "沪A12345"
    answer = staff_says(client, world.service, cid, "建议到店检查，明天上午可以吗？")
    assert answer.status_code == 201 and answer.get_json()["sender"] == "staff"
    from backend.customers.models import Car
    from tests.booking.helpers import foreign_booking_ids

    foreign_car = Car(customer_id=world.stranger.id, vin="LFV2A21K7G3000017")
    db_session.add(foreign_car)
    db_session.flush()
    ids = foreign_booking_ids(  # a booking of this owner's car (the helper serves the scope test too)
        db_session,
        SimpleNamespace(id=world.store.id),
        SimpleNamespace(id=world.owner.id),
        SimpleNamespace(id=world.car_id),
    )
    booking_id = ids["booking_id"]
    db_session.commit()
    booking = client.post(
        f"{WB}/conversations/{cid}/messages",
        json={"kind": "booking_card", "booking_id": booking_id},
        headers=world.service.headers,
    )
    assert booking.status_code == 201 and booking.get_json()["ref"] == {"booking_id": booking_id}
    unknown = client.post(
        f"{WB}/conversations/{cid}/messages",
        json={"kind": "booking_card", "booking_id": booking_id + 1000},
        headers=world.service.headers,
    )
    assert unknown.status_code == 404 and unknown.get_json()["code"] == "consult.booking_not_found"
    for url, headers in (
        (f"{WB}/conversations/{cid}/messages", world.service.headers),
        (f"{APP}/conversations/{cid}/messages", world.owner.headers),
    ):
        resp = client.post(url, json={"kind": "car_card", "car_id": foreign_car.id}, headers=headers)
        assert resp.status_code == 404 and resp.get_json()["code"] == "car.not_found"
    listed = client.get(f"{APP}/conversations/{cid}/messages", headers=world.owner.headers).get_json()["items"]
    assert [m["kind"] for m in listed] == ["text", "image", "car_card", "text", "booking_card"]
    assert [m["sender"] for m in listed] == ["owner", "owner", "owner", "staff", "staff"]
    later = client.get(
        f"{APP}/conversations/{cid}/messages", query_string={"after_id": listed[2]["id"]}, headers=world.owner.headers
    ).get_json()["items"]
    assert [m["id"] for m in later] == [listed[3]["id"], listed[4]["id"]]
    tps = db_session.scalars(
        select(Touchpoint).where(Touchpoint.kind == "consult_message").order_by(Touchpoint.id)
    ).all()
    assert len(tps) == 5
    assert all(t.customer_id == world.owner.id and t.store_id == world.store.id for t in tps)
    assert {t.advisor_id for t in tps} == {world.service.id}
    assert [t.payload["sender"] for t in tps] == ["owner", "owner", "owner", "staff", "staff"]


def test_unclaimed_is_claimed_once_and_then_leaves_the_queue(client: Any, world: Any, db_session: Any) -> None:
    conv = open_conv(client, world.walk_in, "new_car", text="想看看新车")
    cid = conv["id"]
    assert conv["advisor"] is None
    for who in (world.sales, world.sales2, world.manager):
        assert [c["id"] for c in inbox(client, who, "unclaimed")] == [cid]
    assert inbox(client, world.foreign_advisor, "unclaimed") == []
    won = client.post(f"{WB}/conversations/{cid}/claim", json={}, headers=world.sales2.headers)
    assert won.status_code == 200 and won.get_json()["advisor"]["id"] == world.sales2.id
    lost = client.post(f"{WB}/conversations/{cid}/claim", json={}, headers=world.manager.headers)
    assert lost.status_code == 409 and lost.get_json()["code"] == "consult.already_claimed"
    again = client.post(f"{WB}/conversations/{cid}/claim", json={}, headers=world.sales2.headers)
    assert again.status_code == 200 and again.get_json()["advisor"]["id"] == world.sales2.id  # a double tap
    # The other advisor no longer sees it at all; the manager still does (their store).
    assert client.get(f"{WB}/conversations/{cid}", headers=world.sales.headers).status_code == 404
    assert inbox(client, world.sales, "unclaimed") == [] and inbox(client, world.manager, "unclaimed") == []
    assert [c["id"] for c in inbox(client, world.sales2, "mine")] == [cid]
    assert _count(db_session, Touchpoint, Touchpoint.kind == "consult_claimed") == 1


def test_answering_an_unclaimed_conversation_claims_it(client: Any, world: Any) -> None:
    cid = open_conv(client, world.walk_in, "other", text="营业时间？")["id"]
    resp = staff_says(client, world.sales, cid, "每天 8:30-18:00")
    assert resp.status_code == 201
    detail = client.get(f"{WB}/conversations/{cid}", headers=world.sales.headers).get_json()
    assert detail["advisor"]["id"] == world.sales.id and detail["customer_name"] == "刘女士"
    taken = client.post(f"{WB}/conversations/{cid}/claim", json={}, headers=world.sales2.headers)
    assert taken.status_code == 409 and taken.get_json()["code"] == "consult.already_claimed"
    assert (
        client.post(f"{WB}/conversations/{cid}/claim", json={}, headers=world.foreign_advisor.headers).status_code
        == 404
    )


def test_a_message_sent_twice_is_stored_once(client: Any, world: Any, db_session: Any) -> None:
    cid = open_conv(client, world.owner, "service")["id"]
    first = owner_says(client, world.owner, cid, "第二个问题", client_id="c-42")
    again = owner_says(client, world.owner, cid, "第二个问题", client_id="c-42")
    assert first.status_code == 201 and again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    headers = {**world.service.headers, "Idempotency-Key": "answer-1"}
    a1 = client.post(f"{WB}/conversations/{cid}/messages", json={"kind": "text", "text": "好的"}, headers=headers)
    a2 = client.post(f"{WB}/conversations/{cid}/messages", json={"kind": "text", "text": "好的"}, headers=headers)
    assert a1.status_code == 201 and a2.headers.get("Idempotent-Replayed") == "true"
    assert a2.get_json()["id"] == a1.get_json()["id"]
    assert _count(db_session, Message, Message.conversation_id == cid) == 3
    assert _count(db_session, Touchpoint, Touchpoint.kind == "consult_message") == 3
    # Same key, another body: refused.
    other = client.post(f"{WB}/conversations/{cid}/messages", json={"kind": "text", "text": "不一样"}, headers=headers)
    assert other.status_code == 422 and other.get_json()["code"] == "request.idempotency_key_reused"
    # Opening with an Idempotency-Key: one conversation.
    open_headers = {**world.walk_in.headers, "Idempotency-Key": "open-1"}
    body = {"topic": "service", "message": {"kind": "text", "text": "你好"}}
    o1 = client.post(f"{APP}/conversations", json=body, headers=open_headers)
    o2 = client.post(f"{APP}/conversations", json=body, headers=open_headers)
    assert o1.status_code == 201 and o2.get_json()["id"] == o1.get_json()["id"]
    assert _count(db_session, Conversation, Conversation.customer_id == world.walk_in.id) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "text", "text": ""}, "text"),
        ({"kind": "text", "text": "   \n "}, "text"),
        ({"kind": "text"}, "text"),
        ({"kind": "text", "text": "长" * 1001}, "text"),
        ({"kind": "image"}, "image_ref"),
        ({"kind": "image", "image_ref": "x" * 256}, "image_ref"),
        ({"kind": "car_card"}, "car_id"),
        ({"kind": "video", "text": "hi"}, "kind"),
        ({"kind": "text", "text": "hi", "client_id": "c" * 65}, "client_id"),
        ({"kind": "text", "text": "hi", "extra": 1}, "extra"),
    ],
)
def test_empty_oversized_and_malformed_messages_are_refused(
    client: Any, world: Any, db_session: Any, body: dict, field: str
) -> None:
    cid = open_conv(client, world.owner, "service")["id"]
    for url, headers in (
        (f"{APP}/conversations/{cid}/messages", world.owner.headers),
        (f"{WB}/conversations/{cid}/messages", world.service.headers),
    ):
        resp = client.post(url, json=body, headers=headers)
        assert resp.status_code == 422, resp.get_json()
        assert resp.get_json()["code"] == "request.invalid" and field in str(resp.get_json()["errors"])
    assert _count(db_session, Message, Message.conversation_id == cid) == 1


def test_a_closed_conversation_and_other_owners_conversations_refuse_messages(
    client: Any, world: Any, db_session: Any
) -> None:
    cid = open_conv(client, world.owner, "service")["id"]
    theirs = owner_says(client, world.stranger, cid, "我也来")
    assert theirs.status_code == 404 and theirs.get_json()["code"] == "consult.not_found"
    assert client.get(f"{APP}/conversations/{cid}/messages", headers=world.stranger.headers).status_code == 404
    assert client.post(f"{APP}/conversations/{cid}/close", json={}, headers=world.stranger.headers).status_code == 404
    assert staff_says(client, world.foreign_advisor, cid).status_code == 404
    assert client.post(f"{APP}/conversations/{cid}/close", json={}, headers=world.owner.headers).status_code == 200
    closed = owner_says(client, world.owner, cid, "还有一个问题")
    assert closed.status_code == 409 and closed.get_json()["code"] == "consult.closed"
    assert staff_says(client, world.service, cid).get_json()["code"] == "consult.closed"
    assert _count(db_session, Message, Message.conversation_id == cid) == 1


def test_bad_opens_are_refused(
    client: Any, world: Any, db_session: Any, make_customer: Any, member_headers: Any
) -> None:
    cases = [
        ({"topic": "gossip"}, 422, "request.invalid"),
        ({}, 422, "request.invalid"),
        ({"topic": "service", "car_id": 999999}, 404, "car.not_found"),
        ({"topic": "service", "store_id": world.store.id + 100000}, 404, "org.not_found"),
        ({"topic": "service", "message": {"kind": "text", "text": ""}}, 422, "request.invalid"),
    ]
    for body, status, code in cases:
        resp = client.post(f"{APP}/conversations", json=body, headers=world.owner.headers)
        assert (resp.status_code, resp.get_json()["code"]) == (status, code), body
    # Another owner's car is not mine.
    stranger_car = client.post(
        f"{APP}/conversations", json={"topic": "service", "car_id": world.car_id}, headers=world.stranger.headers
    )
    assert stranger_car.status_code == 404
    homeless = make_customer(None, openid="o-homeless")
    resp = client.post(f"{APP}/conversations", json={"topic": "service"}, headers=member_headers(homeless))
    assert resp.status_code == 422 and resp.get_json()["code"] == "consult.store_required"
    ok = client.post(
        f"{APP}/conversations", json={"topic": "service", "store_id": world.store.id}, headers=member_headers(homeless)
    )
    assert ok.status_code == 201 and ok.get_json()["advisor"] is None
    assert _count(db_session, Conversation, Conversation.customer_id == world.owner.id) == 0


def test_an_owner_may_keep_only_so_many_open(client: Any, world: Any) -> None:
    from backend.consult.service import MAX_OPEN_PER_OWNER

    for _ in range(MAX_OPEN_PER_OWNER):
        open_conv(client, world.walk_in, "other", text=None)
    resp = client.post(f"{APP}/conversations", json={"topic": "other"}, headers=world.walk_in.headers)
    assert resp.status_code == 409 and resp.get_json()["code"] == "consult.too_many_open"


def test_inbox_scopes(client: Any, world: Any, make_staff: Any, staff_headers: Any, tree: Any) -> None:
    mine = open_conv(client, world.owner, "service")["id"]
    queued = open_conv(client, world.walk_in, "new_car")["id"]
    foreign = open_conv(client, world.stranger, "new_car")["id"]
    admin = staff_headers(make_staff(tree.group, "group_admin"))
    region = staff_headers(make_staff(tree.regions[0], "region_manager"))
    ids = lambda h, box: [c["id"] for c in client.get(f"{WB}/inbox?box={box}", headers=h).get_json()["items"]]  # noqa: E731
    assert ids(admin, "unclaimed") == [queued]  # the stranger's went to their own advisor
    assert sorted(ids(world.manager.headers, "unclaimed")) == [queued]
    assert ids(region, "unclaimed") == [queued]
    assert client.get(f"{WB}/conversations/{foreign}", headers=world.manager.headers).status_code == 404
    assert client.get(f"{WB}/conversations/{foreign}", headers=admin).status_code == 200
    assert client.get(f"{WB}/conversations/{mine}", headers=world.sales.headers).status_code == 404
    assert client.get(f"{WB}/inbox?box=nope", headers=admin).status_code == 422


def test_the_inbox_and_the_owners_list_have_no_n_plus_one(
    client: Any, world: Any, make_customer: Any, member_headers: Any
) -> None:
    from sqlalchemy import event

    from backend.platform.db import db
    from tests.consult.conftest import Person

    def count_queries(n: int) -> tuple[int, int]:
        for _ in range(n):
            owner = make_customer(None, name="批量")
            person = Person(owner.id, member_headers(owner))
            open_conv(client, person, "new_car", store_id=world.store.id)
        counts = []
        for url, headers in (
            (f"{WB}/inbox?box=unclaimed&limit=100", world.manager.headers),
            (f"{APP}/conversations", world.owner.headers),
        ):
            statements: list[str] = []
            listener = lambda *a, _s=statements, **k: _s.append(a[2])  # noqa: E731
            bind = db.session().get_bind()
            event.listen(bind, "before_cursor_execute", listener)
            try:
                assert client.get(url, headers=headers).status_code == 200
            finally:
                event.remove(bind, "before_cursor_execute", listener)
            counts.append(len(statements))
        return counts[0], counts[1]

    for _ in range(3):
        open_conv(client, world.owner, "service")  # the owner's own list grows too
    few = count_queries(2)
    for _ in range(5):
        open_conv(client, world.owner, "new_car")
    many = count_queries(12)
    assert many == few, f"{few} queries for few conversations, {many} for many"


def test_a_customers_conversations_for_the_sidebar(client: Any, world: Any) -> None:
    service_conv = open_conv(client, world.owner, "service")["id"]
    sales_conv = open_conv(client, world.owner, "new_car")["id"]
    url = f"/api/workbench/v1/customers/{world.owner.id}/consult/conversations"
    as_manager = client.get(url, headers=world.manager.headers).get_json()["items"]
    assert [c["id"] for c in as_manager] == [sales_conv, service_conv]
    assert as_manager[0]["customer_name"] == "陈先生"
    # The sales advisor sees the customer, but only the conversations assigned to them.
    as_sales = client.get(url, headers=world.sales.headers).get_json()["items"]
    assert [c["id"] for c in as_sales] == [sales_conv]
    assert client.get(url, headers=world.foreign_advisor.headers).status_code == 404


def test_a_resigned_advisor_gets_nothing_new_the_queue_does(client: Any, world: Any, db_session: Any) -> None:
    from sqlalchemy import update

    from backend.org.models import Staff

    db_session.execute(update(Staff).where(Staff.id == world.service.id).values(status="resigned"))
    db_session.commit()
    conv = open_conv(client, world.owner, "service")
    assert conv["advisor"] is None
    assert [c["id"] for c in inbox(client, world.manager, "unclaimed")] == [conv["id"]]
