"""Schemas of events (owner API and workbench)."""

from __future__ import annotations

from datetime import UTC

from marshmallow import fields, validate

from backend.events.models import EventStatus, FeeKind, RegistrationState
from backend.platform.api import OutputSchema, Schema


def _when(**kwargs: object) -> fields.AwareDateTime:
    return fields.AwareDateTime(default_timezone=UTC, **kwargs)  # type: ignore[arg-type]


TIERS = fields.List(
    fields.String(validate=validate.Length(min=1, max=32)),
    validate=validate.Length(max=10),
    metadata={"description": "tiers allowed to sign up; empty: every tier"},
)


class EventInSchema(Schema):
    org_unit_id = fields.Integer(metadata={"description": "organiser: a store, region or the group (default: mine)"})
    store_id = fields.Integer(metadata={"description": "venue store where staff check in (a store event: itself)"})
    title = fields.String(required=True, validate=validate.Length(min=1, max=64))
    description = fields.String(validate=validate.Length(max=2000))
    place = fields.String(required=True, validate=validate.Length(min=1, max=255))
    starts_at = _when(required=True)
    ends_at = _when(required=True)
    signup_opens_at = _when(metadata={"description": "default: now"})
    signup_closes_at = _when(metadata={"description": "default: the start"})
    cancel_cutoff_at = _when(metadata={"description": "seats may be given back before this; default: sign-up close"})
    checkin_opens_at = _when(metadata={"description": "default: one hour before the start"})
    checkin_closes_at = _when(metadata={"description": "default: the end"})
    capacity = fields.Integer(required=True, validate=validate.Range(min=1, max=100_000))
    max_party_size = fields.Integer(
        load_default=1, validate=validate.Range(min=1, max=20), metadata={"description": "seats per sign-up"}
    )
    waitlist_limit = fields.Integer(allow_none=True, validate=validate.Range(min=0, max=100_000))
    eligible_tiers = TIERS
    segment_id = fields.Integer(allow_none=True, metadata={"description": "only members of this segment"})
    fee_kind = fields.Enum(FeeKind, by_value=True, load_default=FeeKind.FREE)
    fee_points = fields.Integer(load_default=0, validate=validate.Range(min=0, max=1_000_000))
    fee_fen = fields.Integer(load_default=0, validate=validate.Range(min=0, max=100_000_000))
    attendance_points = fields.Integer(load_default=0, validate=validate.Range(min=0, max=1_000_000))


class EventPatchSchema(Schema):
    store_id = fields.Integer(allow_none=True)
    title = fields.String(validate=validate.Length(min=1, max=64))
    description = fields.String(allow_none=True, validate=validate.Length(max=2000))
    place = fields.String(validate=validate.Length(min=1, max=255))
    starts_at = _when()
    ends_at = _when()
    signup_opens_at = _when()
    signup_closes_at = _when()
    cancel_cutoff_at = _when()
    checkin_opens_at = _when()
    checkin_closes_at = _when()
    capacity = fields.Integer(validate=validate.Range(min=1, max=100_000))
    max_party_size = fields.Integer(validate=validate.Range(min=1, max=20))
    waitlist_limit = fields.Integer(allow_none=True, validate=validate.Range(min=0, max=100_000))
    eligible_tiers = TIERS
    segment_id = fields.Integer(allow_none=True)
    fee_kind = fields.Enum(FeeKind, by_value=True)
    fee_points = fields.Integer(validate=validate.Range(min=0, max=1_000_000))
    fee_fen = fields.Integer(validate=validate.Range(min=0, max=100_000_000))
    attendance_points = fields.Integer(validate=validate.Range(min=0, max=1_000_000))


class EventCancelInSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=255))


class EventNoBodySchema(Schema):
    pass


class EventSchema(OutputSchema):
    id = fields.Integer()
    org_unit_id = fields.Integer()
    store_id = fields.Integer(allow_none=True)
    title = fields.String()
    description = fields.String(allow_none=True)
    place = fields.String()
    status = fields.Enum(EventStatus, by_value=True)
    starts_at = fields.DateTime()
    ends_at = fields.DateTime()
    signup_opens_at = fields.DateTime()
    signup_closes_at = fields.DateTime()
    cancel_cutoff_at = fields.DateTime()
    checkin_opens_at = fields.DateTime()
    checkin_closes_at = fields.DateTime()
    capacity = fields.Integer()
    seats_taken = fields.Integer()
    seats_left = fields.Method("_seats_left")
    waitlist_count = fields.Integer()
    max_party_size = fields.Integer()
    eligible_tiers = fields.List(fields.String())
    segment_id = fields.Integer(allow_none=True)
    fee_kind = fields.Enum(FeeKind, by_value=True)
    fee_points = fields.Integer()
    fee_fen = fields.Integer()
    attendance_points = fields.Integer()

    def _seats_left(self, event: object) -> int:
        return max(0, getattr(event, "capacity", 0) - getattr(event, "seats_taken", 0))


class StaffEventSchema(EventSchema):
    waitlist_limit = fields.Integer(allow_none=True)
    created_by_staff_id = fields.Integer(allow_none=True)
    published_at = fields.DateTime(allow_none=True)
    cancelled_at = fields.DateTime(allow_none=True)
    cancel_reason = fields.String(allow_none=True)


class EventListSchema(OutputSchema):
    items = fields.List(fields.Nested(EventSchema))


class StaffEventPageSchema(OutputSchema):
    items = fields.List(fields.Nested(StaffEventSchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()


class StaffEventQuerySchema(Schema):
    status = fields.List(fields.Enum(EventStatus, by_value=True))
    store_id = fields.Integer()
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=10_000))
    page_size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class OwnerEventQuerySchema(Schema):
    store_id = fields.Integer()


class SignUpInSchema(Schema):
    party_size = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100))


class RegistrationSchema(OutputSchema):
    id = fields.Integer()
    event_id = fields.Integer()
    customer_id = fields.Integer()
    state = fields.Enum(RegistrationState, by_value=True)
    party_size = fields.Integer()
    waitlist_position = fields.Integer(allow_none=True, metadata={"description": "1 = next in line"})
    offer_expires_at = fields.DateTime(allow_none=True)
    hold_expires_at = fields.DateTime(allow_none=True, metadata={"description": "pay before this"})
    fee_points = fields.Integer()
    fee_fen = fields.Integer()
    payment_order_id = fields.Integer(allow_none=True)
    confirmed_at = fields.DateTime(allow_none=True)
    cancelled_at = fields.DateTime(allow_none=True)
    cancelled_by = fields.String(allow_none=True)
    checked_in_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class OwnerEventSchema(EventSchema):
    my_registration = fields.Nested(RegistrationSchema, allow_none=True)


class OwnerEventListSchema(OutputSchema):
    items = fields.List(fields.Nested(OwnerEventSchema))


class RegistrationListSchema(OutputSchema):
    items = fields.List(fields.Nested(RegistrationSchema))


class StaffRegistrationSchema(RegistrationSchema):
    customer_name = fields.String(allow_none=True)
    checked_in_by = fields.Integer(allow_none=True)


class StaffRegistrationListSchema(OutputSchema):
    items = fields.List(fields.Nested(StaffRegistrationSchema))


class RegistrationQuerySchema(Schema):
    state = fields.List(fields.Enum(RegistrationState, by_value=True))


class QrSchema(OutputSchema):
    token = fields.String()
    expires_at = fields.DateTime()


class CheckInInSchema(Schema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=1000))
    store_id = fields.Integer(metadata={"description": "staff above stores: the store checking in"})
