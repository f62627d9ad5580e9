from __future__ import annotations

from marshmallow import fields, validate

from backend.notices.service import RESULTS
from backend.platform.api import OutputSchema, Schema


class GrantsInSchema(Schema):
    results = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=64)),
        values=fields.String(validate=validate.OneOf(RESULTS)),
        required=True,
        validate=validate.Length(min=1, max=20),
        metadata={
            "description": "What wx.requestSubscribeMessage answered, per template id; each accept is one grant",
            "example": {"TPL_BOOKING_REMINDER": "accept", "TPL_BOOKING_CHANGED": "reject"},
        },
    )


class GrantsSchema(OutputSchema):
    grants = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={"description": "one-time grants left per configured template id"},
    )


class NoticeSchema(OutputSchema):
    id = fields.Integer()
    template_setting = fields.String()
    status = fields.String(metadata={"description": "pending | sent | no_grant | no_template | no_openid"})
    created_at = fields.DateTime()
    sent_at = fields.DateTime(allow_none=True)


class NoticeListSchema(OutputSchema):
    items = fields.List(fields.Nested(NoticeSchema))
