"""Schemas of segments (workbench)."""

from __future__ import annotations

from marshmallow import fields, validate

from backend.platform.api import OutputSchema, Schema


class SegmentSchema(OutputSchema):
    id = fields.Integer()
    name = fields.String()
    description = fields.String(allow_none=True)
    owner_unit_id = fields.Integer()
    filters = fields.Dict()
    archived = fields.Boolean()
    created_by = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class SegmentListSchema(OutputSchema):
    items = fields.List(fields.Nested(SegmentSchema))


_FILTERS_DOC = {
    "description": "tags_any/tags_all/tags_none, tiers, lifecycle_stages, store_ids, has_car, car_brands, "
    "car_series, last_visit_within_days, no_visit_for_days, points_min, points_max (see backend/segments/service.py)"
}


class SegmentInSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    description = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=255))
    owner_unit_id = fields.Integer(
        load_default=None, allow_none=True, metadata={"description": "default: my own org unit"}
    )
    filters = fields.Dict(required=True, metadata=_FILTERS_DOC)


class SegmentPatchSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=64))
    description = fields.String(allow_none=True, validate=validate.Length(max=255))
    filters = fields.Dict(metadata=_FILTERS_DOC)


class PreviewInSchema(Schema):
    owner_unit_id = fields.Integer(load_default=None, allow_none=True)
    filters = fields.Dict(required=True, metadata=_FILTERS_DOC)


class CountSchema(OutputSchema):
    count = fields.Integer()


class MembersQuerySchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=10_000))
    page_size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class MemberSchema(OutputSchema):
    id = fields.Integer()
    name = fields.String(allow_none=True)
    home_store_id = fields.Integer(allow_none=True)
    tier = fields.String()
    lifecycle_stage = fields.String()


class MemberPageSchema(OutputSchema):
    items = fields.List(fields.Nested(MemberSchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()
