"""Phone numbers typed into consultation messages: stored masked with the text as typed sealed
alongside, shown masked to everyone (the owner included), the full text only through the
audited reveal for staff who see the conversation and may call the customer."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from backend.consult.models import Message
from tests.consult.conftest import APP, WB, open_conv, staff_says
from tests.pii_helpers import clear_copies, reveals

TYPED = "我的电话 138 1234 5678，座机021-62345678，下午回我"
SHOWN = "我的电话 138****5678，座机021-****5678，下午回我"
REVEAL = "/api/workbench/v1/consult/messages/{}/text"


def _row(db_session: Any, message_id: int) -> Message:
    db_session.expire_all()
    return db_session.scalars(select(Message).where(Message.id == message_id)).one()


def test_numbers_in_a_message_are_sealed_masked_and_revealed_with_audit(
    client: Any, world: Any, db_session: Any, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    conv = open_conv(client, world.owner, "service", text=TYPED)
    assert conv["last_excerpt"] == SHOWN[:60]
    reply = staff_says(client, world.service, conv["id"], text="您好，我打 +86-139-8765-4321 这个号可以吗")
    assert reply.status_code == 201, reply.get_json()
    assert reply.get_json()["text"] == "您好，我打 139****4321 这个号可以吗"

    assert clear_copies(db_session, caplog, "13812345678", "62345678", "13987654321") == {}
    owner_view = client.get(f"{APP}/conversations/{conv['id']}/messages", headers=world.owner.headers).get_json()
    staff_view = client.get(f"{WB}/conversations/{conv['id']}/messages", headers=world.service.headers).get_json()
    # The owner sees their own message masked too: the full text is for the audited reveal.
    owner_texts = {m["text"] for m in owner_view["items"]}
    assert owner_texts == {SHOWN, "您好，我打 139****4321 这个号可以吗"}
    assert SHOWN in [m["text"] for m in staff_view["items"]]
    owner_message_id = next(m["id"] for m in staff_view["items"] if m["text"] == SHOWN)
    row = _row(db_session, owner_message_id)
    assert row.text == SHOWN and row.text_sealed is not None and b"1381234" not in row.text_sealed

    resp = client.get(REVEAL.format(owner_message_id), headers=world.service.headers)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json() == {"text": TYPED}
    assert reveals(db_session, "consult_message.text") == [
        (str(world.service.id), "consult_message.text", str(owner_message_id))
    ]


def test_a_message_reveal_outside_the_scope_is_404_and_writes_no_audit(
    client: Any, world: Any, db_session: Any
) -> None:
    conv = open_conv(client, world.owner, "service", text=TYPED)
    message_id = client.get(f"{WB}/conversations/{conv['id']}/messages", headers=world.service.headers).get_json()[
        "items"
    ][0]["id"]
    resp = client.get(REVEAL.format(message_id), headers=world.foreign_advisor.headers)
    assert resp.status_code == 404 and resp.get_json()["code"] == "consult.not_found"
    assert reveals(db_session, "consult_message.text") == []


def test_a_message_without_a_number_is_stored_as_typed(client: Any, world: Any, db_session: Any) -> None:
    conv = open_conv(client, world.owner, "service", text="保养多少钱？VIN LFV2A21K7G3000009，订单20261207123456")
    items = client.get(f"{WB}/conversations/{conv['id']}/messages", headers=world.service.headers).get_json()["items"]
    row = _row(db_session, items[0]["id"])
    assert row.text == "保养多少钱？VIN LFV2A21K7G3000009，订单20261207123456" and row.text_sealed is None
    resp = client.get(REVEAL.format(row.id), headers=world.service.headers)
    assert resp.get_json() == {"text": row.text}
