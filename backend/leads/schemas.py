"""Schemas of leads and vehicle listings (owner API and workbench)."""

from __future__ import annotations

from datetime import UTC

from marshmallow import fields, validate

from backend.leads.models import LeadPriority, LeadStatus, LeadType, ListingCondition, ListingStatus
from backend.platform.api import OutputSchema, Schema

PHOTOS = fields.List(
    fields.Url(schemes={"https"}, validate=validate.Length(max=500)),
    validate=validate.Length(max=9),
    load_default=list,
    metadata={"description": "https URLs of uploaded photos (at most 9)"},
)


def _when(**kwargs: object) -> fields.AwareDateTime:
    return fields.AwareDateTime(default_timezone=UTC, **kwargs)  # type: ignore[arg-type]


class LocationSchema(Schema):
    address = fields.String(validate=validate.Length(max=255))
    latitude = fields.Float(validate=validate.Range(min=-90, max=90))
    longitude = fields.Float(validate=validate.Range(min=-180, max=180))


class LeadInSchema(Schema):
    type = fields.Enum(LeadType, by_value=True, required=True)
    car_id = fields.Integer(metadata={"description": "one of my cars: required for trade_in, insurance, accident"})
    listing_id = fields.Integer(metadata={"description": "a vehicle for sale: required for used_car"})
    store_id = fields.Integer(metadata={"description": "default: the listing's store, else my home store"})
    note = fields.String(validate=validate.Length(max=500))
    photos = PHOTOS
    # new_car / used_car
    brand = fields.String(validate=validate.Length(max=64))
    series = fields.String(validate=validate.Length(max=64))
    budget_fen = fields.Integer(validate=validate.Range(min=0))
    # trade_in
    mileage_km = fields.Integer(validate=validate.Range(min=0, max=2_000_000))
    condition = fields.String(validate=validate.Length(max=200))
    target_series = fields.String(validate=validate.Length(max=64))
    # loan
    amount_fen = fields.Integer(validate=validate.Range(min=0))
    down_payment_fen = fields.Integer(validate=validate.Range(min=0))
    term_months = fields.Integer(validate=validate.OneOf([6, 12, 18, 24, 36, 48, 60]))
    # insurance
    insurance_kind = fields.String(validate=validate.OneOf(["quote", "renewal"]))
    current_insurer = fields.String(validate=validate.Length(max=64))
    expires_on = fields.Date()
    # accident
    location = fields.Nested(LocationSchema)
    injuries = fields.Boolean()
    drivable = fields.Boolean()
    tow_requested = fields.Boolean(load_default=False)
    repair_booking_requested = fields.Boolean(load_default=False)
    preferred_time = _when(metadata={"description": "accident: when the owner would like the repair"})


class LeadSchema(OutputSchema):
    id = fields.Integer()
    type = fields.Enum(LeadType, by_value=True)
    status = fields.Enum(LeadStatus, by_value=True)
    priority = fields.Enum(LeadPriority, by_value=True)
    customer_id = fields.Integer()
    store_id = fields.Integer()
    advisor_id = fields.Integer(allow_none=True)
    car_id = fields.Integer(allow_none=True)
    listing_id = fields.Integer(allow_none=True)
    note = fields.String(allow_none=True)
    details = fields.Dict()
    photos = fields.List(fields.String())
    location = fields.Dict(allow_none=True)
    injuries = fields.Boolean(allow_none=True)
    drivable = fields.Boolean(allow_none=True)
    tow_requested = fields.Boolean()
    repair_booking_requested = fields.Boolean()
    preferred_time = fields.DateTime(allow_none=True)
    contact_due_at = fields.DateTime(metadata={"description": "SLA: contact the owner before this"})
    contacted_at = fields.DateTime(allow_none=True)
    appointment_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    lost_reason = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class LeadListSchema(OutputSchema):
    items = fields.List(fields.Nested(LeadSchema))


class StaffLeadSchema(LeadSchema):
    routed_role = fields.String()
    routed_by = fields.String(
        metadata={"description": "assigned_advisor | round_robin | store_manager | manual | none"}
    )
    escalated_at = fields.DateTime(allow_none=True)
    overdue = fields.Boolean()
    version = fields.Integer(metadata={"description": "send it back with a status change to detect concurrent edits"})
    customer_name = fields.String(allow_none=True)


class HistorySchema(OutputSchema):
    kind = fields.String()
    occurred_at = fields.DateTime()
    advisor_id = fields.Integer(allow_none=True)
    advisor_name = fields.String(allow_none=True)
    previous_advisor_name = fields.String(allow_none=True)
    payload = fields.Dict(allow_none=True)


class StaffLeadDetailSchema(StaffLeadSchema):
    history = fields.List(fields.Nested(HistorySchema))


class StaffLeadPageSchema(OutputSchema):
    items = fields.List(fields.Nested(StaffLeadSchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()


class LeadQuerySchema(Schema):
    mine = fields.Boolean(metadata={"description": "only the leads assigned to me"})
    store_id = fields.Integer()
    type = fields.List(fields.Enum(LeadType, by_value=True))
    status = fields.List(fields.Enum(LeadStatus, by_value=True))
    priority = fields.Enum(LeadPriority, by_value=True)
    overdue = fields.Boolean(metadata={"description": "true: still new past its SLA; false: the others"})
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=10_000))
    page_size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class StatusInSchema(Schema):
    status = fields.Enum(LeadStatus, by_value=True, required=True)
    lost_reason = fields.String(validate=validate.Length(max=255), metadata={"description": "required for lost"})
    appointment_at = _when(metadata={"description": "required for appointment"})
    note = fields.String(validate=validate.Length(max=500))
    version = fields.Integer(metadata={"description": "the version you saw: 409 lead.version_conflict if it moved"})


class ReassignInSchema(Schema):
    advisor_id = fields.Integer(required=True)


class ListingSchema(OutputSchema):
    id = fields.Integer()
    store_id = fields.Integer()
    condition = fields.Enum(ListingCondition, by_value=True)
    title = fields.String()
    brand = fields.String()
    series = fields.String(allow_none=True)
    model = fields.String(allow_none=True)
    year = fields.Integer(allow_none=True)
    mileage_km = fields.Integer()
    price_fen = fields.Integer()
    photos = fields.List(fields.String())
    description = fields.String(allow_none=True)
    status = fields.Enum(ListingStatus, by_value=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class ListingListSchema(OutputSchema):
    items = fields.List(fields.Nested(ListingSchema))


class ListingQuerySchema(Schema):
    store_id = fields.Integer()
    condition = fields.Enum(ListingCondition, by_value=True)


class StaffListingQuerySchema(ListingQuerySchema):
    status = fields.List(fields.Enum(ListingStatus, by_value=True))


class ListingInSchema(Schema):
    store_id = fields.Integer(metadata={"description": "advisors: their own store (default)"})
    condition = fields.Enum(ListingCondition, by_value=True, required=True)
    title = fields.String(required=True, validate=validate.Length(min=1, max=128))
    brand = fields.String(required=True, validate=validate.Length(min=1, max=64))
    series = fields.String(validate=validate.Length(max=64))
    model = fields.String(validate=validate.Length(max=128))
    year = fields.Integer(validate=validate.Range(min=1980, max=2100))
    mileage_km = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2_000_000))
    price_fen = fields.Integer(required=True, validate=validate.Range(min=1))
    photos = PHOTOS
    description = fields.String(validate=validate.Length(max=2000))
    status = fields.Enum(ListingStatus, by_value=True, load_default=ListingStatus.ON_SALE)


class ListingPatchSchema(Schema):
    title = fields.String(validate=validate.Length(min=1, max=128))
    series = fields.String(validate=validate.Length(max=64))
    model = fields.String(validate=validate.Length(max=128))
    year = fields.Integer(validate=validate.Range(min=1980, max=2100))
    mileage_km = fields.Integer(validate=validate.Range(min=0, max=2_000_000))
    price_fen = fields.Integer(validate=validate.Range(min=1))
    photos = fields.List(fields.Url(schemes={"https"}), validate=validate.Length(max=9))
    description = fields.String(validate=validate.Length(max=2000))
    status = fields.Enum(ListingStatus, by_value=True)
