"""Schemas of service packages (owner API and workbench)."""

from __future__ import annotations

from marshmallow import fields, validate

from backend.packages.models import PurchaseState
from backend.platform.api import OutputSchema, Schema

SERVICE_TYPES = (
    "basic_maintenance",
    "major_maintenance",
    "repair",
    "body_paint",
    "tyres",
    "wash",
    "inspection",
)


class PackageSchema(OutputSchema):
    id = fields.Integer()
    store_id = fields.Integer(allow_none=True, metadata={"description": "null: every store of the group"})
    name = fields.String()
    description = fields.String(allow_none=True)
    service_type = fields.String()
    uses = fields.Integer()
    price_fen = fields.Integer()
    valid_days = fields.Integer()
    active = fields.Boolean()


class PackageListSchema(OutputSchema):
    items = fields.List(fields.Nested(PackageSchema))


class PurchaseSchema(OutputSchema):
    id = fields.Integer()
    package_id = fields.Integer()
    store_id = fields.Integer(allow_none=True)
    name = fields.String()
    service_type = fields.String()
    price_fen = fields.Integer()
    uses_total = fields.Integer()
    uses_left = fields.Integer()
    uses_refunded = fields.Integer()
    state = fields.Enum(PurchaseState, by_value=True)
    code = fields.String(allow_none=True, metadata={"description": "write-off code shown to staff; set once paid"})
    pay_expires_at = fields.DateTime()
    paid_at = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)
    payment = fields.Dict(
        allow_none=True,
        dump_default=None,
        metadata={"description": "how to pay: POST /payments/orders with this body; null once paid or closed"},
    )


class PurchaseListSchema(OutputSchema):
    items = fields.List(fields.Nested(PurchaseSchema))


class PurchaseInSchema(Schema):
    pass


class PackageInSchema(Schema):
    store_id = fields.Integer(load_default=None, allow_none=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    description = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))
    service_type = fields.String(required=True, validate=validate.OneOf(SERVICE_TYPES))
    uses = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=100))
    price_fen = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=100_000_000))
    valid_days = fields.Integer(load_default=365, strict=True, validate=validate.Range(min=1, max=3650))
    active = fields.Boolean(load_default=True)


class PackagePatchSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=64))
    description = fields.String(allow_none=True, validate=validate.Length(max=500))
    active = fields.Boolean()


class UseInSchema(Schema):
    code = fields.String(required=True, validate=validate.Regexp(r"^\d{12}\Z", error="12 digits"))
    nonce = fields.String(
        required=True,
        validate=validate.Length(min=8, max=64),
        metadata={"description": "one per scan: the same nonce again answers the same use"},
    )
    store_id = fields.Integer(
        load_default=None, allow_none=True, metadata={"description": "for staff above store level"}
    )


class UseSchema(OutputSchema):
    id = fields.Integer()
    purchase_id = fields.Integer()
    store_id = fields.Integer()
    staff_id = fields.Integer()
    uses_left_after = fields.Integer()
    used_at = fields.DateTime()


class UseResultSchema(OutputSchema):
    purchase = fields.Nested(PurchaseSchema)
    use = fields.Nested(UseSchema)
