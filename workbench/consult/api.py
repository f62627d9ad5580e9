"""Workbench API of consultations (/api/workbench/v1/consult/...): the inbox (mine, my store's
unclaimed, overdue, closed), a conversation and its messages, claim, answer, read receipts,
transfer, close, reopen, the response-time facts of a conversation, and a store's SLA.

Example — claim from the queue and answer:

    GET  /api/workbench/v1/consult/inbox?box=unclaimed
    POST /api/workbench/v1/consult/conversations/7/claim        → 200 (409 consult.already_claimed
                                                                   when another advisor was first)
    POST /api/workbench/v1/consult/conversations/7/messages
    {"kind": "text", "text": "您好，常规保养 680 元，明天上午可以安排。", "client_id": "a-1"}
    → 201; the answer's response time is in GET …/conversations/7/responses
"""

from __future__ import annotations

from typing import Any

from flask import Response as FlaskResponse
from sqlalchemy import select

from backend.consult import service, views
from backend.consult.api import CONVERSATION_EXAMPLE, MESSAGE_LIST_EXAMPLE
from backend.consult.models import Conversation, Response, Sender
from backend.consult.schemas import (
    ConsultEmptySchema,
    ConsultInboxQuerySchema,
    ConsultMessageInSchema,
    ConsultMessageListSchema,
    ConsultMessageSchema,
    ConsultMessagesQuerySchema,
    ConsultReadInSchema,
    ConsultResponseListSchema,
    ConsultSlaInSchema,
    ConsultSlaSchema,
    ConsultStaffConversationListSchema,
    ConsultStaffConversationSchema,
    ConsultTransferInSchema,
    ConsultTransferTargetListSchema,
)
from backend.org.models import MANAGER_ROLES, OrgKind
from backend.org.scope import get_scoped_or_404
from backend.platform.api import Blueprint, current_staff, role_required, scoped
from backend.platform.db import db
from backend.platform.errors import AppError
from backend.platform.idempotency import idempotent
from workbench.scoping import scope_first

blp = Blueprint(
    "wb_consult", __name__, url_prefix="/api/workbench/v1", audience="staff", description="在线咨询 — consultation"
)

RESOURCE = "consult_conversation"

# Examples in the OpenAPI document (times in UTC: 01:00 is 09:00 in Guangzhou; SLA 15 minutes).
STAFF_CONVERSATION_EXAMPLE = {
    **CONVERSATION_EXAMPLE,
    "unread": 0,
    "other_side_read_message_id": 0,
    "customer_id": 7,
    "customer_name": "陈志强",
    "claimed_at": "2026-12-02T01:02:00+00:00",
    "awaiting_since": None,
    "due_at": None,
    "overdue": False,
    "first_response_at": "2026-12-02T01:06:00+00:00",
    "first_response_seconds": 360,
    "first_response_business_seconds": 360,
    "response_count": 1,
    "resolution_seconds": None,
    "resolution_business_seconds": None,
    "closed_by": None,
    "reopened_count": 0,
    "transfer_count": 0,
}
UNCLAIMED_EXAMPLE = {
    **STAFF_CONVERSATION_EXAMPLE,
    "id": 9,
    "topic": "new_car",
    "car_id": None,
    "advisor": None,
    "created_at": "2026-12-02T02:10:00+00:00",
    "last_message_at": "2026-12-02T02:10:00+00:00",
    "last_excerpt": "ID.4 CROZZ 现在有什么优惠？",
    "unread": 1,
    "customer_id": 23,
    "customer_name": "黄嘉欣",
    "claimed_at": None,
    "awaiting_since": "2026-12-02T02:10:00+00:00",
    "due_at": "2026-12-02T02:25:00+00:00",
    "first_response_at": None,
    "first_response_seconds": None,
    "first_response_business_seconds": None,
    "response_count": 0,
}
CLAIMED_EXAMPLE = {
    **UNCLAIMED_EXAMPLE,
    "advisor": {"id": 15, "name": "王磊"},
    "claimed_at": "2026-12-02T02:12:00+00:00",
}
TRANSFERRED_EXAMPLE = {**STAFF_CONVERSATION_EXAMPLE, "advisor": {"id": 18, "name": "赵敏"}, "transfer_count": 1}
CLOSED_EXAMPLE = {
    **STAFF_CONVERSATION_EXAMPLE,
    "status": "closed",
    "closed_at": "2026-12-02T01:30:00+00:00",
    "resolution_seconds": 1800,
    "resolution_business_seconds": 1800,
    "closed_by": "staff",
}
REOPENED_EXAMPLE = {**CLOSED_EXAMPLE, "status": "open", "closed_at": None, "reopened_count": 1}
STAFF_MESSAGE_EXAMPLE = {
    **MESSAGE_LIST_EXAMPLE["items"][2],
    "id": 45,
    "text": "您好，请问车辆行驶了多少公里？",
    "client_id": "a-2",
    "created_at": "2026-12-02T01:09:00+00:00",
}
RESPONSES_EXAMPLE = {
    "items": [
        {
            "id": 11,
            "message_id": 43,
            "advisor_id": 15,
            "kind": "first_response",
            "waiting_since": "2026-12-02T01:00:00+00:00",
            "responded_at": "2026-12-02T01:06:00+00:00",
            "seconds": 360,
            "business_seconds": 360,
            "sla_seconds": 900,
            "within_sla": True,
        },
        {
            "id": 12,
            "message_id": 45,
            "advisor_id": 15,
            "kind": "reply",
            "waiting_since": "2026-12-02T01:08:00+00:00",
            "responded_at": "2026-12-02T01:09:00+00:00",
            "seconds": 60,
            "business_seconds": 60,
            "sla_seconds": 900,
            "within_sla": True,
        },
    ]
}


def _view(conversation: Conversation) -> dict[str, Any]:
    return views.conversation(db.session(), conversation, Sender.STAFF)


@blp.route("/consult/inbox")
@scoped(RESOURCE)
@blp.arguments(ConsultInboxQuerySchema, location="query")
@blp.response(200, ConsultStaffConversationListSchema, example={"items": [UNCLAIMED_EXAMPLE]})
def inbox(query: dict[str, Any]) -> dict[str, Any]:
    """`box`: mine (open, assigned to me), unclaimed (open, in my store's queue — my stores' for
    managers), overdue (open, the owner waiting past the store's SLA in business time), closed."""
    session = db.session()
    rows = service.inbox(session, current_staff(), query["box"], limit=query["limit"])
    conversations = [row[0] for row in rows]
    names = {row[0].id: row[1] for row in rows}
    return {"items": views.conversations(session, conversations, Sender.STAFF, names)}


@blp.route("/customers/<int:customer_id>/consult/conversations")
@scoped("customer")
@blp.response(200, ConsultStaffConversationListSchema, example={"items": [STAFF_CONVERSATION_EXAMPLE]})
def customer_conversations(customer_id: int) -> dict[str, Any]:
    """A customer's consultations that I may see (for the customer 360 in the sidebar), newest first."""
    session = db.session()
    actor = current_staff()
    customer = get_scoped_or_404(session, actor, "customer", customer_id)
    rows = service.customer_conversations(session, actor, customer.id)
    return {"items": views.conversations(session, rows, Sender.STAFF, {c.id: customer.name for c in rows})}


@blp.route("/consult/conversations/<int:conversation_id>")
@scoped(RESOURCE)
@blp.response(200, ConsultStaffConversationSchema, example=STAFF_CONVERSATION_EXAMPLE)
def get_conversation(conversation_id: int) -> dict[str, Any]:
    return _view(get_scoped_or_404(db.session(), current_staff(), RESOURCE, conversation_id))


@blp.route("/consult/conversations/<int:conversation_id>/messages")
@scoped(RESOURCE)
@blp.arguments(ConsultMessagesQuerySchema, location="query")
@blp.response(200, ConsultMessageListSchema, example=MESSAGE_LIST_EXAMPLE)
def list_messages(query: dict[str, Any], conversation_id: int) -> dict[str, Any]:
    session = db.session()
    conversation = get_scoped_or_404(session, current_staff(), RESOURCE, conversation_id)
    rows = service.messages(session, conversation, query["after_id"], query["limit"])
    return {"items": views.messages(conversation, rows)}


@blp.route("/consult/conversations/<int:conversation_id>/messages", methods=["POST"])
@scoped(RESOURCE)
@idempotent
@scope_first(RESOURCE, "conversation_id")
@blp.arguments(
    ConsultMessageInSchema, example={"kind": "text", "text": "您好，请问车辆行驶了多少公里？", "client_id": "a-2"}
)
@blp.response(201, ConsultMessageSchema, example=STAFF_MESSAGE_EXAMPLE)
@blp.alt_response(
    200,
    schema=ConsultMessageSchema,
    example=STAFF_MESSAGE_EXAMPLE,
    description="this client_id was stored before: the stored message",
)
def send_message(data: dict[str, Any], conversation_id: int) -> Any:
    """Answer (or write first). Posting to an unclaimed conversation claims it for me."""
    session = db.session()
    actor = current_staff()
    message, created = service.post_staff_message(session, actor, conversation_id, data)
    conversation = get_scoped_or_404(session, actor, RESOURCE, conversation_id)
    body = views.messages(conversation, [message])[0]
    if created:
        return body
    return FlaskResponse(ConsultMessageSchema().dumps(body), status=200, mimetype="application/json")


@blp.route("/consult/conversations/<int:conversation_id>/claim", methods=["POST"])
@scoped("consult_claimable")
@scope_first("consult_claimable", "conversation_id")
@blp.arguments(ConsultEmptySchema, example={})
@blp.response(200, ConsultStaffConversationSchema, example=CLAIMED_EXAMPLE)
@blp.alt_response(409, description="consult.already_claimed (another advisor was first) or consult.closed")
def claim(_data: dict[str, Any], conversation_id: int) -> dict[str, Any]:
    """Take an unclaimed conversation of my store; 409 consult.already_claimed if someone was first."""
    return _view(service.claim(db.session(), current_staff(), conversation_id))


@blp.route("/consult/conversations/<int:conversation_id>/read", methods=["POST"])
@scoped(RESOURCE)
@scope_first(RESOURCE, "conversation_id")
@blp.arguments(ConsultReadInSchema, example={"up_to_message_id": 44})
@blp.response(200, ConsultStaffConversationSchema, example=STAFF_CONVERSATION_EXAMPLE)
def mark_read(data: dict[str, Any], conversation_id: int) -> dict[str, Any]:
    session = db.session()
    conversation = service.mark_read(
        session,
        conversation_id,
        Sender.STAFF,
        data["up_to_message_id"],
        lock_with=service.staff_locker(session, current_staff()),
    )
    return _view(conversation)


@blp.route("/consult/conversations/<int:conversation_id>/transfer-targets")
@scoped(RESOURCE)
@blp.response(200, ConsultTransferTargetListSchema, example={"items": [{"id": 18, "name": "孙顾问"}]})
def transfer_targets(conversation_id: int) -> dict[str, Any]:
    """Whom the conversation may be transferred to (active advisors of its store); 403
    consult.not_assignee for those who may not transfer it."""
    session = db.session()
    conversation = get_scoped_or_404(session, current_staff(), RESOURCE, conversation_id)
    return {"items": service.transfer_targets(session, current_staff(), conversation)}


@blp.route("/consult/conversations/<int:conversation_id>/transfer", methods=["POST"])
@scoped(RESOURCE)
@scope_first(RESOURCE, "conversation_id")
@blp.arguments(ConsultTransferInSchema, example={"advisor_id": 18, "note": "客户询问贷款方案"})
@blp.response(200, ConsultStaffConversationSchema, example=TRANSFERRED_EXAMPLE)
@blp.alt_response(422, description="consult.transfer_target_invalid: not an active advisor of the store")
def transfer(data: dict[str, Any], conversation_id: int) -> dict[str, Any]:
    """Hand over to another active advisor of the conversation's store (assignee or manager)."""
    return _view(service.transfer(db.session(), current_staff(), conversation_id, data["advisor_id"], data["note"]))


@blp.route("/consult/conversations/<int:conversation_id>/close", methods=["POST"])
@scoped(RESOURCE)
@scope_first(RESOURCE, "conversation_id")
@blp.arguments(ConsultEmptySchema, example={})
@blp.response(200, ConsultStaffConversationSchema, example=CLOSED_EXAMPLE)
def close(_data: dict[str, Any], conversation_id: int) -> dict[str, Any]:
    """Resolve: the resolution time (wall clock and business) is stored on the conversation."""
    return _view(service.staff_close(db.session(), current_staff(), conversation_id))


@blp.route("/consult/conversations/<int:conversation_id>/reopen", methods=["POST"])
@scoped(RESOURCE)
@scope_first(RESOURCE, "conversation_id")
@blp.arguments(ConsultEmptySchema, example={})
@blp.response(200, ConsultStaffConversationSchema, example=REOPENED_EXAMPLE)
def reopen(_data: dict[str, Any], conversation_id: int) -> dict[str, Any]:
    return _view(service.staff_reopen(db.session(), current_staff(), conversation_id))


@blp.route("/consult/conversations/<int:conversation_id>/responses")
@scoped(RESOURCE)
@blp.response(200, ConsultResponseListSchema, example=RESPONSES_EXAMPLE)
def responses(conversation_id: int) -> dict[str, Any]:
    """The response-time facts of this conversation (first response and each reply)."""
    session = db.session()
    conversation = get_scoped_or_404(session, current_staff(), RESOURCE, conversation_id)
    rows = session.scalars(select(Response).where(Response.conversation_id == conversation.id).order_by(Response.id))
    return {"items": list(rows)}


@blp.route("/consult/stores/<int:org_unit_id>/sla", methods=["PUT"])
@scoped("org_unit")
@scope_first("org_unit", "org_unit_id")
@role_required(*MANAGER_ROLES)
@blp.arguments(ConsultSlaInSchema, example={"sla_minutes": 15})
@blp.response(200, ConsultSlaSchema, example={"store_id": 3, "sla_minutes": 15})
def set_sla(data: dict[str, Any], org_unit_id: int) -> dict[str, Any]:
    """A store's answer deadline in business minutes (managers of the store)."""
    session = db.session()
    actor = current_staff()
    unit = get_scoped_or_404(session, actor, "org_unit", org_unit_id)
    if unit.kind != OrgKind.STORE:
        raise AppError("org.not_found", 404)
    setting = service.set_sla_minutes(session, actor, unit.id, data["sla_minutes"])
    return {"store_id": setting.store_id, "sla_minutes": setting.sla_minutes}
