"""Owner API of consultations (/api/app/v1/consult/...): open a conversation, write and read
messages, read receipts, close and reopen.

Example — open a conversation about servicing my car, with the first message:

    POST /api/app/v1/consult/conversations
    Idempotency-Key: 5f0c…
    {"topic": "service", "car_id": 12,
     "message": {"kind": "text", "text": "保养大概多少钱？", "client_id": "m-1"}}
    → 201 {"id": 7, "topic": "service", "status": "open", "advisor": {"id": 15, "name": "王磊"}, …}

    POST /api/app/v1/consult/conversations/7/messages
    {"kind": "image", "image_ref": "cloud://env/abc.jpg", "client_id": "m-2"}
    → 201 (the same client_id again: 200 with the stored message)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Response as FlaskResponse

from backend.consult import service, views
from backend.consult.models import Sender
from backend.consult.schemas import (
    ConsultConversationListSchema,
    ConsultConversationSchema,
    ConsultEmptySchema,
    ConsultMessageInSchema,
    ConsultMessageListSchema,
    ConsultMessageSchema,
    ConsultMessagesQuerySchema,
    ConsultOpenInSchema,
    ConsultReadInSchema,
)
from backend.platform.api import Blueprint, current_member, self_only
from backend.platform.db import db
from backend.platform.idempotency import idempotent

blp = Blueprint(
    "owner_consult", __name__, url_prefix="/api/app/v1", audience="owner", description="在线咨询 — consultation"
)

OPEN_EXAMPLE = {
    "topic": "service",
    "car_id": 12,
    "message": {"kind": "text", "text": "保养大概多少钱？", "client_id": "m-1"},
}
MESSAGE_EXAMPLE = {"kind": "text", "text": "明天上午可以到店吗？", "client_id": "m-3"}
# Answers carry times in UTC (2026-12-02T01:00:00+00:00 is 09:00 in Guangzhou). The workbench
# reuses these.
CONVERSATION_EXAMPLE = {
    "id": 7,
    "topic": "service",
    "car_id": 12,
    "store_id": 3,
    "advisor": {"id": 15, "name": "王磊"},
    "status": "open",
    "created_at": "2026-12-02T01:00:00+00:00",
    "last_message_at": "2026-12-02T01:06:00+00:00",
    "last_excerpt": "您好，常规保养 680 元，明天上午可以安排。",
    "closed_at": None,
    "unread": 1,
    "other_side_read_message_id": 42,
}
OPENED_EXAMPLE = {
    **CONVERSATION_EXAMPLE,
    "last_message_at": "2026-12-02T01:00:00+00:00",
    "last_excerpt": "保养大概多少钱？",
    "unread": 0,
    "other_side_read_message_id": 0,
}
CONVERSATION_LIST_EXAMPLE = {
    "items": [
        CONVERSATION_EXAMPLE,
        {
            "id": 5,
            "topic": "insurance",
            "car_id": 12,
            "store_id": 3,
            "advisor": {"id": 18, "name": "赵敏"},
            "status": "closed",
            "created_at": "2026-11-20T06:12:00+00:00",
            "last_message_at": "2026-11-20T06:40:00+00:00",
            "last_excerpt": "好的，续保方案已发您，谢谢",
            "closed_at": "2026-11-20T07:00:00+00:00",
            "unread": 0,
            "other_side_read_message_id": 30,
        },
    ]
}
OWNER_MESSAGE_EXAMPLE = {
    "id": 41,
    "conversation_id": 7,
    "sender": "owner",
    "staff_id": None,
    "kind": "text",
    "text": "保养大概多少钱？",
    "ref": None,
    "client_id": "m-1",
    "created_at": "2026-12-02T01:00:00+00:00",
    "read": True,
}
MESSAGE_LIST_EXAMPLE = {
    "items": [
        OWNER_MESSAGE_EXAMPLE,
        {
            "id": 42,
            "conversation_id": 7,
            "sender": "owner",
            "staff_id": None,
            "kind": "car_card",
            "text": None,
            "ref": {"car_id": 12, "vin": "LFV2A21K6L3012345", "plate": "粤A·3K8M2", "series": "迈腾"},
            "client_id": "m-2",
            "created_at": "2026-12-02T01:00:30+00:00",
            "read": True,
        },
        {
            "id": 43,
            "conversation_id": 7,
            "sender": "staff",
            "staff_id": 15,
            "kind": "text",
            "text": "您好，常规保养 680 元，明天上午可以安排。",
            "ref": None,
            "client_id": "a-1",
            "created_at": "2026-12-02T01:06:00+00:00",
            "read": False,
        },
    ]
}
SENT_MESSAGE_EXAMPLE = {
    **OWNER_MESSAGE_EXAMPLE,
    "id": 44,
    "text": "明天上午可以到店吗？",
    "client_id": "m-3",
    "created_at": "2026-12-02T01:08:00+00:00",
    "read": False,
}
READ_EXAMPLE = {**CONVERSATION_EXAMPLE, "unread": 0}
CLOSED_EXAMPLE = {**READ_EXAMPLE, "status": "closed", "closed_at": "2026-12-02T01:30:00+00:00"}


def own_first(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The conversation must be mine before the body is validated: another owner's id always
    answers 404, never 422."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        service.owner_conversation(db.session(), current_member().customer_id, kwargs["conversation_id"])
        return fn(*args, **kwargs)

    return wrapper


@blp.route("/consult/conversations", methods=["POST"])
@self_only
@idempotent
@blp.arguments(ConsultOpenInSchema, example=OPEN_EXAMPLE)
@blp.response(201, ConsultConversationSchema, example=OPENED_EXAMPLE)
@blp.alt_response(409, description="consult.too_many_open: close some conversations first")
def open_conversation(data: dict[str, Any]) -> dict[str, Any]:
    """Open a consultation about a topic (optionally a car of mine, a store other than my home
    store, and the first message). It goes to my advisor for the topic, else to the store's queue."""
    session = db.session()
    conversation = service.open_conversation(session, current_member(), **data)
    return views.conversation(session, conversation, Sender.OWNER)


@blp.route("/consult/conversations")
@self_only
@blp.response(200, ConsultConversationListSchema, example=CONVERSATION_LIST_EXAMPLE)
def my_conversations() -> dict[str, Any]:
    """My consultations, newest first, with unread counts."""
    session = db.session()
    rows = service.owner_conversations(session, current_member().customer_id)
    return {"items": views.conversations(session, rows, Sender.OWNER)}


@blp.route("/consult/conversations/<int:conversation_id>")
@self_only
@blp.response(200, ConsultConversationSchema, example=CONVERSATION_EXAMPLE)
def my_conversation(conversation_id: int) -> dict[str, Any]:
    session = db.session()
    conversation = service.owner_conversation(session, current_member().customer_id, conversation_id)
    return views.conversation(session, conversation, Sender.OWNER)


@blp.route("/consult/conversations/<int:conversation_id>/messages")
@self_only
@blp.arguments(ConsultMessagesQuerySchema, location="query")
@blp.response(200, ConsultMessageListSchema, example=MESSAGE_LIST_EXAMPLE)
def my_messages(query: dict[str, Any], conversation_id: int) -> dict[str, Any]:
    """Messages oldest first; poll with `after_id` = the last id you have. `read` on my messages
    is the advisor's read receipt."""
    session = db.session()
    conversation = service.owner_conversation(session, current_member().customer_id, conversation_id)
    rows = service.messages(session, conversation, query["after_id"], query["limit"])
    return {"items": views.messages(conversation, rows)}


@blp.route("/consult/conversations/<int:conversation_id>/messages", methods=["POST"])
@self_only
@idempotent
@own_first
@blp.arguments(ConsultMessageInSchema, example=MESSAGE_EXAMPLE)
@blp.response(201, ConsultMessageSchema, example=SENT_MESSAGE_EXAMPLE)
@blp.alt_response(
    200,
    schema=ConsultMessageSchema,
    example=SENT_MESSAGE_EXAMPLE,
    description="this client_id was stored before: the stored message",
)
@blp.alt_response(409, description="consult.closed: the conversation is closed (reopen it first)")
def send_message(data: dict[str, Any], conversation_id: int) -> Any:
    """Send a message (text ≤ 1000 characters, image reference, car card, booking card). A
    closed conversation refuses messages (409 consult.closed): reopen it first."""
    session = db.session()
    message, created = service.post_owner_message(session, current_member(), conversation_id, data)
    conversation = service.owner_conversation(session, current_member().customer_id, conversation_id)
    body = views.messages(conversation, [message])[0]
    if created:
        return body
    return FlaskResponse(ConsultMessageSchema().dumps(body), status=200, mimetype="application/json")


@blp.route("/consult/conversations/<int:conversation_id>/read", methods=["POST"])
@self_only
@own_first
@blp.arguments(ConsultReadInSchema, example={"up_to_message_id": 43})
@blp.response(200, ConsultConversationSchema, example=READ_EXAMPLE)
def mark_read(data: dict[str, Any], conversation_id: int) -> dict[str, Any]:
    """Read receipt: I have read everything up to this message."""
    session = db.session()
    member = current_member()
    locker = service.owner_locker(session, member)
    conversation = service.mark_read(session, conversation_id, Sender.OWNER, data["up_to_message_id"], lock_with=locker)
    return views.conversation(session, conversation, Sender.OWNER)


@blp.route("/consult/conversations/<int:conversation_id>/close", methods=["POST"])
@self_only
@own_first
@blp.arguments(ConsultEmptySchema, example={})
@blp.response(200, ConsultConversationSchema, example=CLOSED_EXAMPLE)
def close(_data: dict[str, Any], conversation_id: int) -> dict[str, Any]:
    """My question is answered: close the conversation."""
    session = db.session()
    return views.conversation(session, service.owner_close(session, current_member(), conversation_id), Sender.OWNER)


@blp.route("/consult/conversations/<int:conversation_id>/reopen", methods=["POST"])
@self_only
@own_first
@blp.arguments(ConsultEmptySchema, example={})
@blp.response(200, ConsultConversationSchema, example=READ_EXAMPLE)
def reopen(_data: dict[str, Any], conversation_id: int) -> dict[str, Any]:
    """Reopen a closed conversation (to write again)."""
    session = db.session()
    return views.conversation(session, service.owner_reopen(session, current_member(), conversation_id), Sender.OWNER)
