"""A message's client_id is the app's own opaque id for it: two messages whose ids differ only
in case are two messages (the second was taken for a resend of the first and dropped)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from backend.consult.models import Message
from tests.consult.conftest import open_conv, owner_says


def test_client_ids_that_differ_only_in_case_are_two_messages(client: Any, world: Any, db_session: Any) -> None:
    cid = open_conv(client, world.owner, "service")["id"]
    first = owner_says(client, world.owner, cid, "第一条", client_id="Msg-7f3A")
    second = owner_says(client, world.owner, cid, "第二条", client_id="msg-7f3a")
    resend = owner_says(client, world.owner, cid, "第二条", client_id="msg-7f3a")
    assert (first.status_code, second.status_code, resend.status_code) == (201, 201, 200)
    assert second.get_json()["id"] != first.get_json()["id"] and second.get_json()["text"] == "第二条"
    assert resend.get_json()["id"] == second.get_json()["id"]
    count = select(func.count()).select_from(Message).where(Message.conversation_id == cid)
    assert db_session.scalar(count) == 3  # the opening message and the two
