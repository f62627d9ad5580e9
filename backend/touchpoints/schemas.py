from datetime import UTC, datetime

from marshmallow import fields, validate

from backend.platform.api import OutputSchema, Schema
from backend.touchpoints.models import Channel, Kind

# Times outside this window are mistakes (and some cannot even be expressed in UTC).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
SANE_TIME = validate.Range(min=EARLIEST, max=LATEST)


class TimelineQuerySchema(Schema):
    kind = fields.List(fields.Enum(Kind, by_value=True), metadata={"description": "repeat to filter by several kinds"})
    channel = fields.List(fields.Enum(Channel, by_value=True))
    advisor_id = fields.Integer()
    since = fields.AwareDateTime(validate=SANE_TIME, metadata={"description": "ISO 8601 with offset"})
    until = fields.AwareDateTime(validate=SANE_TIME)
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(validate=validate.Length(max=200))


class OwnerFeedQuerySchema(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(validate=validate.Length(max=200))


class TouchpointSchema(OutputSchema):
    id = fields.Integer()
    occurred_at = fields.DateTime()
    kind = fields.String()
    channel = fields.String()
    advisor_id = fields.Integer(allow_none=True)
    store_id = fields.Integer(allow_none=True)
    source = fields.String()
    payload = fields.Dict(allow_none=True)


class OwnerActivitySchema(OutputSchema):
    id = fields.Integer()
    occurred_at = fields.DateTime()
    kind = fields.String()
    channel = fields.String()
    store_id = fields.Integer(allow_none=True)


class TimelinePageSchema(OutputSchema):
    items = fields.List(fields.Nested(TouchpointSchema))
    next_cursor = fields.String(allow_none=True, metadata={"description": "pass as ?cursor= for the next (older) page"})


class OwnerFeedPageSchema(OutputSchema):
    items = fields.List(fields.Nested(OwnerActivitySchema))
    next_cursor = fields.String(allow_none=True)
