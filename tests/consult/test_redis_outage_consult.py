"""Redis down while owners and advisors talk: a walk-in's queued conversation, its claim (the
claim tapped twice, a colleague one moment later), an owner's messages and the advisor's answer
(each sent twice with one Idempotency-Key) are stored at once; the WeCom app messages to the
advisors and the owner's subscribe message wait in the outbox, and once Redis is back each is
sent once. The same keys after the outage change nothing."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.consult.models import Conversation, Message
from backend.notices.models import SubscribeNotice
from backend.platform.db import db
from backend.platform.jobs import OutboxJob
from backend.wecom.models import AppMessage
from tests.consult.conftest import APP, REPLIED, WB, open_conv

pytestmark = [pytest.mark.redis]


def _count(app: Any, model: Any, *where: Any) -> int:
    with app.app_context():
        try:
            return db.session().scalar(select(func.count()).select_from(model).where(*where))
        finally:
            db.session.remove()


def _jobs(app: Any) -> Counter[tuple[str, str]]:
    with app.app_context():
        try:
            return Counter((str(n), str(s)) for n, s in db.session().execute(select(OutboxJob.name, OutboxJob.status)))
        finally:
            db.session.remove()


def test_consultation_while_redis_is_down_then_each_message_sent_once(
    app: Any, client: Any, world: Any, sandbox_reset: Any, redis_outage: Any
) -> None:
    state = sandbox_reset.state
    state.add_user("o-consult-owner")
    state.set_subscribe_grants("o-consult-owner", REPLIED, 2)
    for _ in range(2):
        grant = client.post(
            "/api/app/v1/notices/grants", json={"results": {REPLIED: "accept"}}, headers=world.owner.headers
        )
        assert grant.status_code == 200, grant.get_json()

    redis_outage.down()
    # A walk-in's question goes to the queue; the store's sales advisors are told; one claims it.
    queued = open_conv(client, world.walk_in, "new_car", text="有试驾车吗")["id"]
    claims = [
        client.post(f"{WB}/conversations/{queued}/claim", json={}, headers=who.headers)
        for who in (world.sales, world.sales, world.sales2)
    ]
    assert claims[0].status_code == 200, claims[0].get_json()
    # the claimer's own second tap answers the conversation, a colleague's is refused
    assert claims[1].status_code == 200 and claims[1].get_json()["advisor"]["id"] == world.sales.id
    assert (claims[2].status_code, claims[2].get_json()["code"]) == (409, "consult.already_claimed")

    # The owner asks their service advisor, twice the same message, and is answered (twice the same).
    cid = open_conv(client, world.owner, "service", text="保养多少钱？")["id"]
    owner_key = {**world.owner.headers, "Idempotency-Key": "rd-consult-o1"}
    sent = [
        client.post(f"{APP}/conversations/{cid}/messages", json={"kind": "text", "text": "急"}, headers=owner_key)
        for _ in range(2)
    ]
    assert [s.status_code for s in sent] == [201, 201] and sent[1].get_json()["id"] == sent[0].get_json()["id"]
    staff_key = {**world.service.headers, "Idempotency-Key": "rd-consult-s1"}
    answer = {"kind": "text", "text": "常规保养 680 元"}
    answers = [client.post(f"{WB}/conversations/{cid}/messages", json=answer, headers=staff_key) for _ in range(2)]
    assert [a.status_code for a in answers] == [201, 201], answers[0].get_json()
    assert answers[1].get_json()["id"] == answers[0].get_json()["id"]
    again = {**world.owner.headers, "Idempotency-Key": "rd-consult-o2"}
    new_wait = client.post(
        f"{APP}/conversations/{cid}/messages", json={"kind": "text", "text": "那换机油呢"}, headers=again
    )
    assert new_wait.status_code == 201, new_wait.get_json()

    def assert_rows() -> None:
        assert _count(app, Conversation) == 2
        assert _count(app, Message, Message.conversation_id == cid) == 4  # 2 asked, 1 answer, 1 new
        assert _count(app, SubscribeNotice, SubscribeNotice.customer_id == world.owner.id) == 1
        # sales and sales2 for the queue; the service advisor for each of the owner's two waits
        assert _count(app, AppMessage) == 4

    assert_rows()
    with app.app_context():
        owner_of = db.session().scalar(select(Conversation.advisor_id).where(Conversation.id == queued))
        db.session.remove()
    assert owner_of == world.sales.id
    jobs = _jobs(app)
    assert {s for _, s in jobs} == {"pending"}, jobs
    assert state.app_messages == [] and state.subscribe_messages == []

    redis_outage.up()
    redis_outage.drain()
    cards = Counter(m["touser"] for m in state.app_messages)
    assert cards == {"adv.sales": 1, "adv.sales2": 1, "adv.service": 2}, cards
    assert [(m["touser"], m["template_id"]) for m in state.subscribe_messages] == [("o-consult-owner", REPLIED)]

    # The same keys once Redis is back: the same messages, nothing sent again.
    replay = client.post(f"{WB}/conversations/{cid}/messages", json=answer, headers=staff_key)
    assert replay.get_json()["id"] == answers[0].get_json()["id"]
    replay = client.post(
        f"{APP}/conversations/{cid}/messages", json={"kind": "text", "text": "那换机油呢"}, headers=again
    )
    assert replay.get_json()["id"] == new_wait.get_json()["id"]
    assert redis_outage.drain() == 0
    assert_rows()
    assert sum(Counter(m["touser"] for m in state.app_messages).values()) == sum(cards.values())
    assert len(state.subscribe_messages) == 1
    jobs = _jobs(app)
    assert {s for _, s in jobs} == {"done"}, jobs
