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


def _view(conversation: Conversation) -> dict[str, Any]:
    return views.conversation(db.session(), conversation, Sender.STAFF)


@blp.route("/consult/inbox")
@scoped(RESOURCE)
@blp.arguments(ConsultInboxQuerySchema, location="query")
@blp.response(200, ConsultStaffConversationListSchema)
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
@blp.response(200, ConsultStaffConversationListSchema)
def customer_conversations(customer_id: int) -> dict[str, Any]:
    """A customer's consultations that I may see (for the customer 360 in the sidebar), newest first."""
    session = db.session()
    actor = current_staff()
    customer = get_scoped_or_404(session, actor, "customer", customer_id)
    rows = service.customer_conversations(session, actor, customer.id)
    return {"items": views.conversations(session, rows, Sender.STAFF, {c.id: customer.name for c in rows})}


@blp.route("/consult/conversations/<int:conversation_id>")
@scoped(RESOURCE)
@blp.response(200, ConsultStaffConversationSchema)
def get_conversation(conversation_id: int) -> dict[str, Any]:
    return _view(get_scoped_or_404(db.session(), current_staff(), RESOURCE, conversation_id))


@blp.route("/consult/conversations/<int:conversation_id>/messages")
@scoped(RESOURCE)
@blp.arguments(ConsultMessagesQuerySchema, location="query")
@blp.response(200, ConsultMessageListSchema)
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
    ConsultMessageInSchema, example={"kind": "text", "text": "您好，请问车辆行驶了多少公里？", "client_id": "a-1"}
)
@blp.response(201, ConsultMessageSchema)
@blp.alt_response(200, schema=ConsultMessageSchema, description="this client_id was stored before: the stored message")
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
@blp.arguments(ConsultEmptySchema)
@blp.response(200, ConsultStaffConversationSchema)
@blp.alt_response(409, description="consult.already_claimed (another advisor was first) or consult.closed")
def claim(_data: dict[str, Any], conversation_id: int) -> dict[str, Any]:
    """Take an unclaimed conversation of my store; 409 consult.already_claimed if someone was first."""
    return _view(service.claim(db.session(), current_staff(), conversation_id))


@blp.route("/consult/conversations/<int:conversation_id>/read", methods=["POST"])
@scoped(RESOURCE)
@scope_first(RESOURCE, "conversation_id")
@blp.arguments(ConsultReadInSchema, example={"up_to_message_id": 42})
@blp.response(200, ConsultStaffConversationSchema)
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


@blp.route("/consult/conversations/<int:conversation_id>/transfer", methods=["POST"])
@scoped(RESOURCE)
@scope_first(RESOURCE, "conversation_id")
@blp.arguments(ConsultTransferInSchema, example={"advisor_id": 5, "note": "客户询问贷款方案"})
@blp.response(200, ConsultStaffConversationSchema)
@blp.alt_response(422, description="consult.transfer_target_invalid: not an active advisor of the store")
def transfer(data: dict[str, Any], conversation_id: int) -> dict[str, Any]:
    """Hand over to another active advisor of the conversation's store (assignee or manager)."""
    return _view(service.transfer(db.session(), current_staff(), conversation_id, data["advisor_id"], data["note"]))


@blp.route("/consult/conversations/<int:conversation_id>/close", methods=["POST"])
@scoped(RESOURCE)
@scope_first(RESOURCE, "conversation_id")
@blp.arguments(ConsultEmptySchema)
@blp.response(200, ConsultStaffConversationSchema)
def close(_data: dict[str, Any], conversation_id: int) -> dict[str, Any]:
    """Resolve: the resolution time (wall clock and business) is stored on the conversation."""
    return _view(service.staff_close(db.session(), current_staff(), conversation_id))


@blp.route("/consult/conversations/<int:conversation_id>/reopen", methods=["POST"])
@scoped(RESOURCE)
@scope_first(RESOURCE, "conversation_id")
@blp.arguments(ConsultEmptySchema)
@blp.response(200, ConsultStaffConversationSchema)
def reopen(_data: dict[str, Any], conversation_id: int) -> dict[str, Any]:
    return _view(service.staff_reopen(db.session(), current_staff(), conversation_id))


@blp.route("/consult/conversations/<int:conversation_id>/responses")
@scoped(RESOURCE)
@blp.response(200, ConsultResponseListSchema)
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
@blp.response(200, ConsultSlaSchema)
def set_sla(data: dict[str, Any], org_unit_id: int) -> dict[str, Any]:
    """A store's answer deadline in business minutes (managers of the store)."""
    session = db.session()
    actor = current_staff()
    unit = get_scoped_or_404(session, actor, "org_unit", org_unit_id)
    if unit.kind != OrgKind.STORE:
        raise AppError("org.not_found", 404)
    setting = service.set_sla_minutes(session, actor, unit.id, data["sla_minutes"])
    return {"store_id": setting.store_id, "sla_minutes": setting.sla_minutes}
