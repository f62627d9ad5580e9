"""Schemas of stores, their calendar and service types (owner API and workbench)."""

from __future__ import annotations

from marshmallow import fields, validate

from backend.platform.api import OutputSchema, Schema
from backend.stores.models import BayType


class StoresQuerySchema(Schema):
    latitude = fields.Float(validate=validate.Range(min=-90, max=90))
    longitude = fields.Float(validate=validate.Range(min=-180, max=180))
    brand = fields.String(validate=validate.Length(max=64), metadata={"description": "only stores serving it"})
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class StoreSchema(OutputSchema):
    id = fields.Integer()
    name = fields.String()
    code = fields.String()
    address = fields.String()
    latitude = fields.Float(allow_none=True)
    longitude = fields.Float(allow_none=True)
    phone = fields.String(allow_none=True)
    brands = fields.List(fields.String())
    bookable = fields.Boolean()
    distance_km = fields.Float(allow_none=True, metadata={"description": "from the point asked about"})


class StoreListSchema(OutputSchema):
    items = fields.List(fields.Nested(StoreSchema))


class HoursSchema(OutputSchema):
    weekday = fields.Integer(metadata={"description": "0 = Monday"})
    opens = fields.Time()
    closes = fields.Time()
    labour_cap_minutes = fields.Integer(allow_none=True)


class OverrideSchema(OutputSchema):
    id = fields.Integer()
    day = fields.Date()
    closed = fields.Boolean()
    opens = fields.Time(allow_none=True)
    closes = fields.Time(allow_none=True)
    note = fields.String(allow_none=True)


class StoreDetailSchema(StoreSchema):
    hours = fields.List(fields.Nested(HoursSchema), metadata={"description": "open weekdays (local time)"})
    overrides = fields.List(fields.Nested(OverrideSchema), metadata={"description": "holidays and other hours"})


class ServiceTypeSchema(OutputSchema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    duration_minutes = fields.Integer()
    labour_minutes = fields.Integer()
    bay_type = fields.Enum(BayType, by_value=True)


class ServiceTypeListSchema(OutputSchema):
    items = fields.List(fields.Nested(ServiceTypeSchema))


# ---------------------------------------------------------------------------------------------
# Workbench inputs


class ProfileInSchema(Schema):
    address = fields.String(validate=validate.Length(max=255))
    latitude = fields.Float(allow_none=True, validate=validate.Range(min=-90, max=90))
    longitude = fields.Float(allow_none=True, validate=validate.Range(min=-180, max=180))
    phone = fields.String(allow_none=True, validate=validate.Length(max=32))
    brands = fields.List(fields.String(validate=validate.Length(min=1, max=64)), validate=validate.Length(max=20))
    bookable = fields.Boolean()


class HoursInSchema(Schema):
    weekday = fields.Integer(required=True, validate=validate.Range(min=0, max=6))
    opens = fields.Time(required=True)
    closes = fields.Time(required=True)
    labour_cap_minutes = fields.Integer(allow_none=True, validate=validate.Range(min=0, max=100_000))


class WeeklyHoursInSchema(Schema):
    days = fields.List(fields.Nested(HoursInSchema), required=True, validate=validate.Length(max=7))


class WeeklyHoursSchema(OutputSchema):
    days = fields.List(fields.Nested(HoursSchema))


class OverrideInSchema(Schema):
    day = fields.Date(required=True)
    closed = fields.Boolean(load_default=True)
    opens = fields.Time()
    closes = fields.Time()
    note = fields.String(validate=validate.Length(max=128))


class BayInSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=16))
    bay_type = fields.Enum(BayType, by_value=True, required=True)
    active = fields.Boolean(load_default=True)


class BaySchema(OutputSchema):
    id = fields.Integer()
    store_id = fields.Integer()
    code = fields.String()
    bay_type = fields.Enum(BayType, by_value=True)
    active = fields.Boolean()


class BayListSchema(OutputSchema):
    items = fields.List(fields.Nested(BaySchema))
