"""Schemas of coupons (owner API and workbench)."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from backend.offers.models import AutoIssue, CouponKind, CouponStatus, PushStatus
from backend.platform.api import OutputSchema, Schema


class _CouponWorth(OutputSchema):
    """What a coupon is worth: shown to staff (templates) and owners (offers) alike."""

    id = fields.Integer()
    name = fields.String()
    kind = fields.Enum(CouponKind, by_value=True)
    value_fen = fields.Integer()
    threshold_fen = fields.Integer()
    percent_off = fields.Integer()
    cap_fen = fields.Integer()
    service_type = fields.String(allow_none=True)
    gift_name = fields.String(allow_none=True)
    store_id = fields.Integer(allow_none=True, metadata={"description": "null: the group's, every store"})


class CouponTemplateSchema(_CouponWorth):
    stock = fields.Integer()
    issued = fields.Integer()
    per_member_limit = fields.Integer()
    claim_starts_at = fields.DateTime()
    claim_ends_at = fields.DateTime()
    use_starts_at = fields.DateTime(allow_none=True)
    use_ends_at = fields.DateTime(allow_none=True)
    use_days = fields.Integer(allow_none=True)
    business_types = fields.List(fields.String(), allow_none=True)
    item_ids = fields.List(fields.String(), allow_none=True)
    brands = fields.List(fields.String(), allow_none=True)
    eligible_tiers = fields.List(fields.String(), allow_none=True)
    segment_id = fields.Integer(allow_none=True)
    car_brand = fields.String(allow_none=True)
    new_members_only = fields.Boolean()
    exclusive = fields.Boolean()
    # Strings, not fields.Enum: the JSON column gives the kinds back as plain strings, which
    # fields.Enum cannot dump (every read of a template that had kinds answered 500).
    combinable_kinds = fields.List(
        fields.String(validate=validate.OneOf([k.value for k in CouponKind])), allow_none=True
    )
    max_per_order = fields.Integer()
    exchange_code = fields.String(allow_none=True)
    auto_issue_on = fields.Enum(AutoIssue, by_value=True, allow_none=True)
    active = fields.Boolean()


class CouponTemplateListSchema(OutputSchema):
    items = fields.List(fields.Nested(CouponTemplateSchema))


class CouponOfferSchema(_CouponWorth):
    """An offer as the owner sees it: what is left, not how many were issued."""

    left = fields.Method("_left")
    claim_ends_at = fields.DateTime()

    def _left(self, template: Any) -> int:
        return max(template.stock - template.issued, 0)


class CouponOfferListSchema(OutputSchema):
    items = fields.List(fields.Nested(CouponOfferSchema))


class _CouponTemplateFields(Schema):
    name = fields.String(validate=validate.Length(min=1, max=64))
    stock = fields.Integer(strict=True, validate=validate.Range(min=0, max=10_000_000))
    per_member_limit = fields.Integer(strict=True, validate=validate.Range(min=1, max=100))
    claim_starts_at = fields.AwareDateTime()
    claim_ends_at = fields.AwareDateTime()
    use_starts_at = fields.AwareDateTime(allow_none=True)
    use_ends_at = fields.AwareDateTime(allow_none=True)
    use_days = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=3650))
    business_types = fields.List(
        fields.String(validate=validate.Length(min=1, max=32)),
        allow_none=True,
        metadata={"description": "payment business types it applies to online (service_package...); null: all"},
    )
    item_ids = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)),
        allow_none=True,
        metadata={"description": "the business objects it applies to online (a package id...); null: all"},
    )
    brands = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)),
        allow_none=True,
        metadata={"description": "usable only at stores serving one of these brands; null: every store"},
    )
    eligible_tiers = fields.List(fields.String(validate=validate.Length(max=32)), allow_none=True)
    segment_id = fields.Integer(allow_none=True)
    car_brand = fields.String(allow_none=True, validate=validate.Length(max=32))
    new_members_only = fields.Boolean()
    exclusive = fields.Boolean(metadata={"description": "alone on a payment order (default true)"})
    combinable_kinds = fields.List(
        fields.Enum(CouponKind, by_value=True),
        allow_none=True,
        metadata={"description": "kinds it may share an order with when not exclusive; null: any"},
    )
    max_per_order = fields.Integer(strict=True, validate=validate.Range(min=1, max=5))
    exchange_code = fields.String(
        allow_none=True,
        validate=validate.Regexp(r"^[A-Z0-9]{6,32}\Z", error="6-32 capital letters and digits"),
        metadata={"description": "兑换码 members type to get one (POST /offers/exchange)"},
    )
    auto_issue_on = fields.Enum(
        AutoIssue,
        by_value=True,
        allow_none=True,
        metadata={"description": "given automatically, once per member: " + ", ".join(a.value for a in AutoIssue)},
    )
    active = fields.Boolean()

    @validates_schema
    def _windows(self, data: dict[str, Any], **_: Any) -> None:
        starts, ends = data.get("claim_starts_at"), data.get("claim_ends_at")
        if starts and ends and ends <= starts:
            raise ValidationError("must be after claim_starts_at", "claim_ends_at")
        use_starts, use_ends = data.get("use_starts_at"), data.get("use_ends_at")
        if use_starts and use_ends and use_ends <= use_starts:
            raise ValidationError("must be after use_starts_at", "use_ends_at")


class CouponTemplateInSchema(_CouponTemplateFields):
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    kind = fields.Enum(CouponKind, by_value=True, required=True)
    value_fen = fields.Integer(load_default=0, strict=True, validate=validate.Range(min=0, max=100_000_000))
    threshold_fen = fields.Integer(load_default=0, strict=True, validate=validate.Range(min=0, max=100_000_000))
    percent_off = fields.Integer(load_default=0, strict=True, validate=validate.Range(min=0, max=99))
    cap_fen = fields.Integer(load_default=0, strict=True, validate=validate.Range(min=0, max=100_000_000))
    service_type = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=32))
    gift_name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))
    store_id = fields.Integer(load_default=None, allow_none=True)
    stock = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=10_000_000))
    claim_starts_at = fields.AwareDateTime(required=True)
    claim_ends_at = fields.AwareDateTime(required=True)

    @validates_schema
    def _kind_needs(self, data: dict[str, Any], **_: Any) -> None:
        """What each kind must say, so that a coupon always means something at the counter."""
        kind = data.get("kind")
        needs = {
            CouponKind.FIXED: ("value_fen",),
            CouponKind.THRESHOLD: ("value_fen", "threshold_fen"),
            CouponKind.PERCENT: ("percent_off", "cap_fen"),
            CouponKind.VOUCHER: ("service_type",),
            CouponKind.GIFT: ("gift_name",),
        }.get(kind, ())
        missing = {name: ["required for this kind"] for name in needs if not data.get(name)}
        if missing:
            raise ValidationError(missing)
        if kind == CouponKind.THRESHOLD and data["value_fen"] >= data["threshold_fen"]:
            raise ValidationError("must be less than threshold_fen", "value_fen")
        if data.get("use_days") is None and data.get("use_ends_at") is None:
            raise ValidationError("use_days or use_ends_at is required", "use_ends_at")


class CouponTemplatePatchSchema(_CouponTemplateFields):
    """Windows, stock, limits, eligibility; what a coupon is worth is fixed once issued."""


class CouponSchema(OutputSchema):
    id = fields.Integer()
    template_id = fields.Integer()
    customer_id = fields.Integer()
    code = fields.String(metadata={"description": "12 digits, typed by staff when the QR cannot be scanned"})
    status = fields.Enum(CouponStatus, by_value=True)
    source = fields.String()
    valid_from = fields.DateTime()
    valid_until = fields.DateTime()
    issued_at = fields.DateTime()
    used_at = fields.DateTime(allow_none=True)
    locked_order_id = fields.Integer(allow_none=True, metadata={"description": "the payment order holding it"})
    discount_fen = fields.Integer(allow_none=True, metadata={"description": "taken off that order"})


class CouponListSchema(OutputSchema):
    items = fields.List(fields.Nested(CouponSchema))


class CouponQuerySchema(Schema):
    status = fields.Enum(CouponStatus, by_value=True, load_default=None)


class CouponQrSchema(OutputSchema):
    token = fields.String(metadata={"description": "render as a QR; valid about 60 s, fetch a new one then"})
    code = fields.String()
    expires_at = fields.DateTime()


class CouponScanInSchema(Schema):
    token = fields.String(load_default=None, validate=validate.Length(min=1, max=512))
    code = fields.String(load_default=None, validate=validate.Regexp(r"^\d{12}\Z", error="12 digits"))
    nonce = fields.String(
        load_default=None,
        validate=validate.Length(min=8, max=64),
        metadata={"description": "with a typed code: one per confirmation; a scanned QR carries its own"},
    )
    store_id = fields.Integer(
        load_default=None, allow_none=True, metadata={"description": "for staff above store level"}
    )

    @validates_schema
    def _one_of(self, data: dict[str, Any], **_: Any) -> None:
        if bool(data.get("token")) == bool(data.get("code")):
            raise ValidationError("give the scanned token or the typed code, not both", "token")


class CouponWriteOffSchema(OutputSchema):
    id = fields.Integer()
    coupon_id = fields.Integer()
    nonce = fields.String()
    store_id = fields.Integer()
    staff_id = fields.Integer()
    used_at = fields.DateTime()
    reversed_at = fields.DateTime(allow_none=True)
    reversed_by = fields.Integer(allow_none=True)
    reverse_reason = fields.String(allow_none=True)


class CouponPreviewSchema(OutputSchema):
    coupon = fields.Nested(CouponSchema)
    template = fields.Nested(CouponTemplateSchema)
    store_id = fields.Integer()
    usable = fields.Method("_usable")
    refusal = fields.String(
        allow_none=True, metadata={"description": "why it cannot be used here now (the code confirm would answer)"}
    )

    def _usable(self, view: dict[str, Any]) -> bool:
        return view["refusal"] is None


class CouponWriteOffResultSchema(OutputSchema):
    coupon = fields.Nested(CouponSchema)
    write_off = fields.Nested(CouponWriteOffSchema)


class CouponReverseInSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=2, max=255))


class CouponGiveInSchema(Schema):
    customer_id = fields.Integer(required=True)
    reason = fields.String(required=True, validate=validate.Length(min=2, max=255))
    ref = fields.String(
        required=True,
        validate=validate.Length(min=4, max=64),
        metadata={"description": "the client's id of this gift: a retry gives once"},
    )


class CouponReportRowSchema(OutputSchema):
    template_id = fields.Integer()
    name = fields.String()
    store_id = fields.Integer(allow_none=True)
    issued = fields.Integer()
    claimed = fields.Integer(metadata={"description": "claimed by owners"})
    given = fields.Integer(metadata={"description": "every other source (see by_source)"})
    by_source = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={"description": "claim, staff, push, auto, exchange, mall"},
    )
    used = fields.Integer()
    locked = fields.Integer(metadata={"description": "held by open payment orders"})
    expired = fields.Integer()
    unused = fields.Integer()
    used_at_stores = fields.List(fields.Dict(), metadata={"description": "[{store_id, used}] written off at the store"})
    by_campaign = fields.List(fields.Dict(), metadata={"description": "[{campaign_id, issued, used}]"})


class CouponReportSchema(OutputSchema):
    items = fields.List(fields.Nested(CouponReportRowSchema))


class CouponClaimInSchema(Schema):
    """No fields: the offer is in the path (send `{}`)."""


class CouponExchangeInSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=6, max=32))


class CouponPushInSchema(Schema):
    segment_id = fields.Integer(required=True)
    campaign_id = fields.Integer(
        load_default=None,
        allow_none=True,
        metadata={"description": "pushes for one campaign give each member one coupon in all"},
    )


class CouponPushSchema(OutputSchema):
    id = fields.Integer()
    template_id = fields.Integer()
    segment_id = fields.Integer()
    campaign_id = fields.Integer(allow_none=True)
    status = fields.Enum(PushStatus, by_value=True)
    issued = fields.Integer()
    skipped = fields.Integer(metadata={"description": "not eligible or over the per-member limit"})
    sold_out = fields.Integer(metadata={"description": "members left without one when the stock ran out"})
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)


class CouponPushListSchema(OutputSchema):
    items = fields.List(fields.Nested(CouponPushSchema))
