"""Races on MariaDB with real threads: one claim wins, a message retried concurrently is stored
once, concurrent answers to one wait make one response."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.consult.models import Conversation, Message, Response
from backend.platform.db import db
from backend.touchpoints.models import Touchpoint
from tests.consult.conftest import WB, open_conv, owner_says, staff_says
from tests.threads import run_threads

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def _count(app: Any, model: Any, *where: Any) -> int:
    with app.app_context():
        return db.session().scalar(select(func.count()).select_from(model).where(*where))


def test_two_advisors_claiming_at_once_exactly_one_wins(app: Any, world: Any) -> None:
    client = app.test_client()
    for _round in range(3):
        cid = open_conv(client, world.walk_in, "new_car", text="想试驾")["id"]
        claimers = [world.sales, world.sales2, world.manager]
        url = f"{WB}/conversations/{cid}/claim"
        results = run_threads(3, lambda i, url=url, who=claimers: client.post(url, json={}, headers=who[i].headers))
        statuses = sorted(r.status_code for r in results)
        assert statuses == [200, 409, 409], [r.get_json() for r in results]
        losers = [r.get_json()["code"] for r in results if r.status_code == 409]
        assert losers == ["consult.already_claimed"] * 2
        winner = next(i for i, r in enumerate(results) if r.status_code == 200)
        with app.app_context():
            advisor_id = db.session().scalar(select(Conversation.advisor_id).where(Conversation.id == cid))
        assert advisor_id == claimers[winner].id
        ref = f"consult:{cid}:claimed"
        assert _count(app, Touchpoint, Touchpoint.source_ref == ref) == 1


def test_a_message_sent_concurrently_with_one_client_id_is_stored_once(app: Any, world: Any) -> None:
    client = app.test_client()
    cid = open_conv(client, world.owner, "service")["id"]
    results = run_threads(4, lambda i: owner_says(client, world.owner, cid, "同一条", client_id="dup-1"))
    assert sorted(r.status_code for r in results) == [200, 200, 200, 201]
    assert len({r.get_json()["id"] for r in results}) == 1
    assert _count(app, Message, Message.conversation_id == cid) == 2


def test_concurrent_answers_to_one_wait_make_one_response(app: Any, world: Any) -> None:
    client = app.test_client()
    cid = open_conv(client, world.walk_in, "new_car", text="有优惠吗")["id"]
    results = run_threads(2, lambda i: staff_says(client, [world.sales, world.sales2][i], cid, f"回答{i}"))
    codes = sorted(r.status_code for r in results)
    # Both answer through the row lock: the first claims it, the second no longer sees it.
    assert codes == [201, 404], [r.get_json() for r in results]
    assert _count(app, Response, Response.conversation_id == cid) == 1


def test_a_customer_merge_racing_messages_neither_deadlocks_nor_loses_one(
    app: Any, world: Any, make_customer: Any, member_headers: Any
) -> None:
    from tests.consult.conftest import Person

    client = app.test_client()
    dup = make_customer(world.store, name="陈先生(重复)")
    dup_person = Person(dup.id, member_headers(dup))
    cid = open_conv(client, dup_person, "service")["id"]

    def act(i: int) -> Any:
        if i == 0:
            return client.post(
                "/api/workbench/v1/customer-merges",
                json={"source_id": dup.id, "target_id": world.owner.id, "reason": "同一人"},
                headers=world.manager.headers,
            )
        return staff_says(client, world.manager, cid, f"第{i}条", client_id=f"race-{i}")

    results = run_threads(5, act)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert results[0].status_code == 201, results[0].get_json()
    assert all(r.status_code == 201 for r in results[1:]), [r.get_json() for r in results[1:]]
    with app.app_context():
        session = db.session()
        assert session.scalar(select(Conversation.customer_id).where(Conversation.id == cid)) == world.owner.id
        refs = [f"consult:msg:{m}" for m in session.scalars(select(Message.id).where(Message.conversation_id == cid))]
        owners = set(session.scalars(select(Touchpoint.customer_id).where(Touchpoint.source_ref.in_(refs))))
    assert len(refs) == 5 and owners == {world.owner.id}  # every message's touchpoint on the survivor
