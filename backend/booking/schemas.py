"""Schemas of maintenance booking (owner API and workbench)."""

from __future__ import annotations

from datetime import UTC

from marshmallow import fields, validate

from backend.booking.models import BookingStatus
from backend.platform.api import OutputSchema, Schema
from backend.stores.models import BayType


def _when(**kwargs: object) -> fields.AwareDateTime:
    return fields.AwareDateTime(default_timezone=UTC, **kwargs)  # type: ignore[arg-type]


REASON = fields.String(required=True, validate=validate.Length(min=1, max=255))


class SlotsQuerySchema(Schema):
    store_id = fields.Integer(required=True)
    service_type_id = fields.Integer(required=True)
    car_id = fields.Integer(required=True)
    start = fields.Date(metadata={"description": "first local day (default today)"})
    days = fields.Integer(load_default=14, validate=validate.Range(min=1, max=62))


class FreeSlotSchema(OutputSchema):
    slot_id = fields.Integer()
    day = fields.Date()
    starts_at = _when()
    ends_at = _when()
    free = fields.Integer(metadata={"description": "places left"})


class FreeSlotListSchema(OutputSchema):
    items = fields.List(fields.Nested(FreeSlotSchema))


class BookingInSchema(Schema):
    car_id = fields.Integer(required=True)
    service_type_id = fields.Integer(required=True)
    slot_id = fields.Integer(required=True, metadata={"description": "from GET /booking/slots"})
    advisor_id = fields.Integer(metadata={"description": "preferred service advisor (default: the least loaded)"})
    note = fields.String(validate=validate.Length(max=500))


class RescheduleInSchema(Schema):
    slot_id = fields.Integer(required=True)
    reason = fields.String(validate=validate.Length(max=255))


class ReasonInSchema(Schema):
    reason = REASON


class BookingSchema(OutputSchema):
    id = fields.Integer()
    status = fields.Enum(BookingStatus, by_value=True)
    customer_id = fields.Integer()
    car_id = fields.Integer()
    store_id = fields.Integer()
    service_type_id = fields.Integer()
    slot_id = fields.Integer()
    starts_at = _when()
    ends_at = _when()
    advisor_id = fields.Integer(allow_none=True)
    advisor_chosen = fields.Boolean()
    bay_id = fields.Integer(allow_none=True)
    note = fields.String(allow_none=True)
    reschedule_count = fields.Integer()
    version = fields.Integer()
    cancel_reason = fields.String(allow_none=True)
    cancelled_by = fields.String(allow_none=True)
    cancelled_at = _when(allow_none=True)
    arrived_at = _when(allow_none=True)
    started_at = _when(allow_none=True)
    completed_at = _when(allow_none=True)
    no_show_at = _when(allow_none=True)
    mileage_km = fields.Integer(allow_none=True)
    work_done = fields.List(fields.String(), allow_none=True)
    created_at = _when()


class BookingListSchema(OutputSchema):
    items = fields.List(fields.Nested(BookingSchema))


class MyBookingsQuerySchema(Schema):
    active = fields.Boolean(load_default=False)


class CheckinCodeSchema(OutputSchema):
    token = fields.String(metadata={"description": "show as a QR; refresh before expires_at"})
    expires_at = _when()


# ---------------------------------------------------------------------------------------------
# Workbench


class StaffBookingQuerySchema(Schema):
    store_id = fields.Integer()
    day = fields.Date(metadata={"description": "local day (default today)"})
    days = fields.Integer(load_default=1, validate=validate.Range(min=1, max=31))
    status = fields.List(fields.Enum(BookingStatus, by_value=True))
    mine = fields.Boolean(load_default=False)
    plate = fields.String(validate=validate.Length(min=2, max=16), metadata={"description": "part of the plate"})
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=10_000))
    page_size = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class StaffBookingSchema(BookingSchema):
    customer_name = fields.String(allow_none=True)
    plate = fields.String(allow_none=True)
    service_name = fields.String(allow_none=True)


class StaffBookingPageSchema(OutputSchema):
    items = fields.List(fields.Nested(StaffBookingSchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()


class BookingHistorySchema(OutputSchema):
    kind = fields.String()
    occurred_at = _when()
    channel = fields.String()
    payload = fields.Dict()


class StaffBookingDetailSchema(StaffBookingSchema):
    history = fields.List(fields.Nested(BookingHistorySchema))


class StepInSchema(Schema):
    """No fields: the booking is in the path (send `{}`)."""


class ScanInSchema(Schema):
    token = fields.String(required=True, validate=validate.Length(min=10, max=600))


class BookingBayInSchema(Schema):
    bay_id = fields.Integer(required=True)


class CompleteInSchema(Schema):
    mileage_km = fields.Integer(required=True, validate=validate.Range(min=0, max=2_000_000))
    work_done = fields.List(
        fields.String(validate=validate.Length(min=1, max=200)), required=True, validate=validate.Length(min=1, max=50)
    )


class SlotSchema(OutputSchema):
    id = fields.Integer()
    store_id = fields.Integer()
    day = fields.Date()
    starts_at = _when()
    ends_at = _when()
    bay_type = fields.Enum(BayType, by_value=True)
    capacity = fields.Integer()
    booked = fields.Integer()


class SlotListSchema(OutputSchema):
    items = fields.List(fields.Nested(SlotSchema))


class StoreSlotsQuerySchema(Schema):
    day = fields.Date()
    days = fields.Integer(load_default=7, validate=validate.Range(min=1, max=62))
    bay_type = fields.Enum(BayType, by_value=True)


class SlotPatchSchema(Schema):
    capacity = fields.Integer(required=True, validate=validate.Range(min=0, max=500))


class TemplateRowSchema(Schema):
    weekday = fields.Integer(required=True, validate=validate.Range(min=0, max=6))
    block_start = fields.Time(required=True, metadata={"description": "local time, e.g. 09:00"})
    block_minutes = fields.Integer(load_default=60, validate=validate.Range(min=15, max=480))
    bay_type = fields.Enum(BayType, by_value=True, required=True)
    capacity = fields.Integer(required=True, validate=validate.Range(min=0, max=500))


class TemplateRowOutSchema(OutputSchema):
    weekday = fields.Integer()
    block_start = fields.Time()
    block_minutes = fields.Integer()
    bay_type = fields.Enum(BayType, by_value=True)
    capacity = fields.Integer()


class CapacityTemplateInSchema(Schema):
    rows = fields.List(fields.Nested(TemplateRowSchema), required=True, validate=validate.Length(max=500))


class CapacityTemplateSchema(OutputSchema):
    rows = fields.List(fields.Nested(TemplateRowOutSchema))


class GenerateInSchema(Schema):
    start = fields.Date()
    days = fields.Integer(load_default=14, validate=validate.Range(min=1, max=62))


class GeneratedSchema(OutputSchema):
    created = fields.Integer()
