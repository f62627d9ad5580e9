"""Schemas of consultations (owner API and workbench)."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from backend.consult.models import ConversationStatus, MessageKind, ResponseKind, Sender, Topic
from backend.platform.api import OutputSchema, Schema

MAX_TEXT = 1000


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("empty")


class ConsultMessageInSchema(Schema):
    kind = fields.String(load_default="text", validate=validate.OneOf([k.value for k in MessageKind]))
    text = fields.String(
        load_default=None,
        allow_none=True,
        validate=[validate.Length(max=MAX_TEXT), _not_blank],
        metadata={"description": f"the text (kind text), or a caption; at most {MAX_TEXT} characters"},
    )
    image_ref = fields.String(
        load_default=None,
        validate=[validate.Length(min=1, max=255), _not_blank],
        metadata={"description": "kind image: the uploaded file's reference (cloud fileID / media id)"},
    )
    car_id = fields.Integer(
        load_default=None, strict=True, metadata={"description": "kind car_card: one of the owner's cars"}
    )
    booking_id = fields.Integer(
        load_default=None, strict=True, metadata={"description": "kind booking_card: one of the owner's bookings"}
    )
    client_id = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "the client's id of this message: sending it again stores nothing new"},
    )

    @validates_schema
    def _complete(self, data: dict[str, Any], **_: Any) -> None:
        needs = {"text": "text", "image": "image_ref", "car_card": "car_id", "booking_card": "booking_id"}
        field = needs[data["kind"]]
        if data.get(field) is None:
            raise ValidationError({field: ["required for this kind"]})


class ConsultMessageSchema(OutputSchema):
    id = fields.Integer()
    conversation_id = fields.Integer()
    sender = fields.Enum(Sender, by_value=True)
    staff_id = fields.Integer(allow_none=True)
    kind = fields.Enum(MessageKind, by_value=True)
    text = fields.String(allow_none=True)
    ref = fields.Dict(allow_none=True, metadata={"description": "image_ref, or the car / booking of a card"})
    client_id = fields.String(allow_none=True)
    created_at = fields.DateTime()
    read = fields.Boolean(metadata={"description": "read by the other side (read receipt)"})


class ConsultMessageListSchema(OutputSchema):
    items = fields.List(fields.Nested(ConsultMessageSchema))


class ConsultMessagesQuerySchema(Schema):
    after_id = fields.Integer(load_default=0, validate=validate.Range(min=0))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=100))


class ConsultOpenInSchema(Schema):
    topic = fields.String(required=True, validate=validate.OneOf([t.value for t in Topic]))
    car_id = fields.Integer(load_default=None, allow_none=True, strict=True)
    store_id = fields.Integer(
        load_default=None, allow_none=True, strict=True, metadata={"description": "default: my home store"}
    )
    message = fields.Nested(ConsultMessageInSchema, load_default=None, metadata={"description": "the first message"})


class ConsultReadInSchema(Schema):
    up_to_message_id = fields.Integer(required=True, strict=True)


class ConsultEmptySchema(Schema):
    pass


class ConsultTransferInSchema(Schema):
    advisor_id = fields.Integer(required=True, strict=True)
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))


class ConsultAdvisorRefSchema(OutputSchema):
    id = fields.Integer()
    name = fields.String()


class ConsultTransferTargetListSchema(OutputSchema):
    items = fields.List(fields.Nested(ConsultAdvisorRefSchema))


class ConsultConversationSchema(OutputSchema):
    id = fields.Integer()
    topic = fields.Enum(Topic, by_value=True)
    car_id = fields.Integer(allow_none=True)
    store_id = fields.Integer()
    advisor = fields.Nested(ConsultAdvisorRefSchema, allow_none=True, metadata={"description": "null: in the queue"})
    status = fields.Enum(ConversationStatus, by_value=True)
    created_at = fields.DateTime()
    last_message_at = fields.DateTime(allow_none=True)
    last_excerpt = fields.String(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    unread = fields.Integer(metadata={"description": "messages from the other side I have not read"})
    other_side_read_message_id = fields.Integer(metadata={"description": "read receipt of the other side"})


class ConsultConversationListSchema(OutputSchema):
    items = fields.List(fields.Nested(ConsultConversationSchema))


class ConsultStaffConversationSchema(ConsultConversationSchema):
    customer_id = fields.Integer()
    customer_name = fields.String(allow_none=True)
    claimed_at = fields.DateTime(allow_none=True)
    awaiting_since = fields.DateTime(allow_none=True, metadata={"description": "an owner message waits since"})
    due_at = fields.DateTime(allow_none=True, metadata={"description": "SLA deadline of that wait (business time)"})
    overdue = fields.Boolean()
    first_response_at = fields.DateTime(allow_none=True)
    first_response_seconds = fields.Integer(allow_none=True)
    first_response_business_seconds = fields.Integer(allow_none=True)
    response_count = fields.Integer()
    resolution_seconds = fields.Integer(allow_none=True)
    resolution_business_seconds = fields.Integer(allow_none=True)
    closed_by = fields.String(allow_none=True)
    reopened_count = fields.Integer()
    transfer_count = fields.Integer()


class ConsultStaffConversationListSchema(OutputSchema):
    items = fields.List(fields.Nested(ConsultStaffConversationSchema))


class ConsultInboxQuerySchema(Schema):
    box = fields.String(load_default="mine", validate=validate.OneOf(["mine", "unclaimed", "overdue", "closed"]))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=100))


class ConsultResponseSchema(OutputSchema):
    id = fields.Integer()
    message_id = fields.Integer()
    advisor_id = fields.Integer()
    kind = fields.Enum(ResponseKind, by_value=True)
    waiting_since = fields.DateTime()
    responded_at = fields.DateTime()
    seconds = fields.Integer()
    business_seconds = fields.Integer()
    sla_seconds = fields.Integer()
    within_sla = fields.Boolean()


class ConsultResponseListSchema(OutputSchema):
    items = fields.List(fields.Nested(ConsultResponseSchema))


class ConsultSlaInSchema(Schema):
    sla_minutes = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=24 * 60))


class ConsultSlaSchema(OutputSchema):
    store_id = fields.Integer()
    sla_minutes = fields.Integer()
