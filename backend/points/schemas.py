"""Schemas of the points feature (owner API and workbench)."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from backend.platform.api import OutputSchema, Schema
from backend.points.models import ItemKind, LedgerKind, LimitPeriod, MallOrderState
from backend.points.tiers import TIERS

REASON_LABELS = {
    "sign_in": "每日签到",
    "order_paid": "消费得积分",
    "order_refunded": "退款扣回",
    "mall_redeem": "积分商城兑换",
    "mall_cancel": "兑换取消退回",
    "mall_unpaid": "未支付订单退回",
    "expired": "积分过期",
    "staff_adjustment": "门店调整",
    "bulk_grant": "活动赠送",
}


class AccountSchema(OutputSchema):
    available = fields.Integer(metadata={"description": "spendable points; negative = a debt from a refund"})
    pending = fields.Integer(metadata={"description": "earned on paid orders, available after the return window"})
    frozen = fields.Integer(metadata={"description": "held by points+cash orders awaiting payment"})
    lifetime_earned = fields.Integer()
    debt = fields.Integer()
    tier = fields.String()
    tier_name = fields.String()
    growth = fields.Integer(metadata={"description": "growth value in the tier window"})
    next_tier = fields.String(allow_none=True)
    next_tier_growth = fields.Integer(allow_none=True)
    expiring_points = fields.Integer(metadata={"description": "points expiring in the next 30 days"})
    next_expiry_at = fields.DateTime(allow_none=True)


class LedgerEntrySchema(OutputSchema):
    id = fields.Integer()
    kind = fields.Enum(LedgerKind, by_value=True)
    delta = fields.Integer()
    pending_delta = fields.Integer()
    frozen_delta = fields.Integer()
    reason_code = fields.String()
    reason = fields.Function(lambda row: REASON_LABELS.get(row.reason_code, row.reason_code))
    ref_type = fields.String(allow_none=True)
    ref_id = fields.String(allow_none=True)
    note = fields.String(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)
    balance_after = fields.Integer()
    created_at = fields.DateTime()


class StaffLedgerEntrySchema(LedgerEntrySchema):
    operator = fields.String()
    idempotency_key = fields.String()
    remaining = fields.Integer()


class LedgerQuerySchema(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.Integer(validate=validate.Range(min=1), metadata={"description": "next_cursor of the last page"})


class LedgerPageSchema(OutputSchema):
    items = fields.List(fields.Nested(LedgerEntrySchema))
    next_cursor = fields.Integer(allow_none=True)


class StaffLedgerPageSchema(OutputSchema):
    account = fields.Nested(AccountSchema)
    items = fields.List(fields.Nested(StaffLedgerEntrySchema))
    next_cursor = fields.Integer(allow_none=True)


class ExpiringQuerySchema(Schema):
    days = fields.Integer(load_default=30, validate=validate.Range(min=1, max=366))


class ExpiringBucketSchema(OutputSchema):
    points = fields.Integer(attribute="remaining")
    expires_at = fields.DateTime()
    reason_code = fields.String()


class ExpiringSchema(OutputSchema):
    total = fields.Integer()
    items = fields.List(fields.Nested(ExpiringBucketSchema))


class SigninInSchema(Schema):
    """No fields: the member and the day come from the token and the clock."""


class SigninResultSchema(OutputSchema):
    sign_date = fields.Date()
    streak = fields.Integer()
    cycle_day = fields.Integer()
    points = fields.Integer()


class SigninStatusSchema(OutputSchema):
    today = fields.Date()
    signed_today = fields.Boolean()
    streak = fields.Integer()
    cycle_day = fields.Integer()
    next_points = fields.Integer()
    cycle_days = fields.Integer()
    cycle_bonus = fields.Dict(keys=fields.String(), values=fields.Integer())


class TierSchema(OutputSchema):
    code = fields.String()
    name = fields.String()
    min_growth = fields.Integer()
    multiplier_pct = fields.Integer()
    rank = fields.Integer()


class TiersSchema(OutputSchema):
    current = fields.String()
    growth = fields.Integer()
    tiers = fields.List(fields.Nested(TierSchema))


# ---------------------------------------------------------------------------------------------
# Mall

_TIER_CODES = [t.code for t in TIERS]


class MallItemSchema(OutputSchema):
    id = fields.Integer()
    name = fields.String()
    description = fields.String(allow_none=True)
    kind = fields.Enum(ItemKind, by_value=True)
    points_price = fields.Integer()
    cash_fen = fields.Integer()
    stock = fields.Integer()
    sold = fields.Integer()
    per_order_limit = fields.Integer()
    per_member_limit = fields.Integer(allow_none=True)
    limit_period = fields.Enum(LimitPeriod, by_value=True)
    per_period_limit = fields.Integer(allow_none=True)
    min_tier = fields.String(allow_none=True)
    sale_starts_at = fields.DateTime(allow_none=True)
    sale_ends_at = fields.DateTime(allow_none=True)
    store_id = fields.Integer(allow_none=True)
    active = fields.Boolean()


class MallItemListSchema(OutputSchema):
    items = fields.List(fields.Nested(MallItemSchema))


class AddressSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=32))
    phone = fields.String(required=True, validate=validate.Regexp(r"^1\d{10}\Z"))
    region = fields.String(required=True, validate=validate.Length(min=1, max=64))
    detail = fields.String(required=True, validate=validate.Length(min=1, max=200))


class ShippingAddressSchema(OutputSchema):
    name = fields.String()
    phone = fields.String(metadata={"description": "in full: this answer is audited"})
    region = fields.String()
    detail = fields.String()


class RedeemInSchema(Schema):
    item_id = fields.Integer(required=True, validate=validate.Range(min=1))
    quantity = fields.Integer(load_default=1, validate=validate.Range(min=1, max=99))
    address = fields.Nested(AddressSchema, allow_none=True)


class MallOrderSchema(OutputSchema):
    id = fields.Integer()
    order_no = fields.String()
    item_id = fields.Integer()
    item_kind = fields.Enum(ItemKind, by_value=True)
    quantity = fields.Integer()
    points_total = fields.Integer()
    cash_fen_total = fields.Integer()
    state = fields.Enum(MallOrderState, by_value=True)
    store_id = fields.Integer(allow_none=True)
    address = fields.Dict(allow_none=True, metadata={"description": "phone masked (staff: GET .../address)"})
    carrier = fields.String(allow_none=True)
    tracking_no = fields.String(allow_none=True)
    shipped_at = fields.DateTime(allow_none=True)
    voucher_code = fields.String(allow_none=True)
    codes = fields.List(fields.String(), metadata={"description": "virtual codes, once the order is complete"})
    pay_expires_at = fields.DateTime(allow_none=True)
    payment = fields.Dict(
        allow_none=True,
        metadata={"description": "for a cash part: create the payment with business_type/business_id"},
    )
    created_at = fields.DateTime()
    cancelled_at = fields.DateTime(allow_none=True)


class StaffMallOrderSchema(MallOrderSchema):
    customer_id = fields.Integer()
    cancel_reason = fields.String(allow_none=True)


class MallOrderListSchema(OutputSchema):
    items = fields.List(fields.Nested(MallOrderSchema))
    next_cursor = fields.Integer(allow_none=True)


class StaffMallOrderListSchema(OutputSchema):
    items = fields.List(fields.Nested(StaffMallOrderSchema))
    next_cursor = fields.Integer(allow_none=True)


class MallOrderQuerySchema(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.Integer(validate=validate.Range(min=1))
    state = fields.Enum(MallOrderState, by_value=True)


class CancelInSchema(Schema):
    reason = fields.String(load_default="member cancelled", validate=validate.Length(min=1, max=200))


class StaffCancelInSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=200))


class MallItemInSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    description = fields.String(validate=validate.Length(max=1000), allow_none=True)
    kind = fields.Enum(ItemKind, by_value=True, required=True)
    points_price = fields.Integer(required=True, validate=validate.Range(min=1, max=10_000_000))
    cash_fen = fields.Integer(load_default=0, validate=validate.Range(min=0, max=10_000_000))
    stock = fields.Integer(load_default=0, validate=validate.Range(min=0, max=10_000_000))
    per_order_limit = fields.Integer(load_default=1, validate=validate.Range(min=1, max=99))
    per_member_limit = fields.Integer(allow_none=True, validate=validate.Range(min=1))
    limit_period = fields.Enum(LimitPeriod, by_value=True, load_default=LimitPeriod.NONE)
    per_period_limit = fields.Integer(allow_none=True, validate=validate.Range(min=1))
    min_tier = fields.String(allow_none=True, validate=validate.OneOf(_TIER_CODES))
    sale_starts_at = fields.AwareDateTime(allow_none=True)
    sale_ends_at = fields.AwareDateTime(allow_none=True)
    store_id = fields.Integer(allow_none=True)
    active = fields.Boolean(load_default=True)

    @validates_schema
    def _consistent(self, data: dict[str, Any], **_: Any) -> None:
        start, end = data.get("sale_starts_at"), data.get("sale_ends_at")
        if start and end and end <= start:
            raise ValidationError("must be after sale_starts_at", "sale_ends_at")
        if data.get("per_period_limit") and data.get("limit_period", LimitPeriod.NONE) == LimitPeriod.NONE:
            raise ValidationError("a per-period limit needs a limit_period", "limit_period")


class MallItemPatchSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=128))
    description = fields.String(validate=validate.Length(max=1000), allow_none=True)
    points_price = fields.Integer(validate=validate.Range(min=1, max=10_000_000))
    cash_fen = fields.Integer(validate=validate.Range(min=0, max=10_000_000))
    stock_delta = fields.Integer(validate=validate.Range(min=-10_000_000, max=10_000_000))
    per_order_limit = fields.Integer(validate=validate.Range(min=1, max=99))
    per_member_limit = fields.Integer(allow_none=True, validate=validate.Range(min=1))
    min_tier = fields.String(allow_none=True, validate=validate.OneOf(_TIER_CODES))
    sale_starts_at = fields.AwareDateTime(allow_none=True)
    sale_ends_at = fields.AwareDateTime(allow_none=True)
    active = fields.Boolean()


class CodesInSchema(Schema):
    codes = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)), required=True, validate=validate.Length(min=1, max=5000)
    )


class CodesResultSchema(OutputSchema):
    added = fields.Integer()
    available = fields.Integer()


class ShipInSchema(Schema):
    carrier = fields.String(required=True, validate=validate.Length(min=1, max=32))
    tracking_no = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9-]{4,64}\Z"))


class VoucherInSchema(Schema):
    voucher_code = fields.String(required=True, validate=validate.Regexp(r"^\d{12}\Z"))


# ---------------------------------------------------------------------------------------------
# Adjustments and grants


class AdjustmentInSchema(Schema):
    delta = fields.Integer(required=True, validate=validate.Range(min=-1_000_000, max=1_000_000))
    reason = fields.String(required=True, validate=validate.Length(min=2, max=255))

    @validates_schema
    def _non_zero(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("delta") == 0:
            raise ValidationError("must not be zero", "delta")


class AdjustmentSchema(OutputSchema):
    id = fields.Integer()
    customer_id = fields.Integer()
    delta = fields.Integer()
    reason = fields.String()
    state = fields.String()
    requested_by = fields.Integer()
    decided_by = fields.Integer(allow_none=True)
    ledger_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    decided_at = fields.DateTime(allow_none=True)


class AdjustmentListSchema(OutputSchema):
    items = fields.List(fields.Nested(AdjustmentSchema))


class DecisionInSchema(Schema):
    approve = fields.Boolean(required=True)


class BulkGrantInSchema(Schema):
    batch_key = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.:-]{4,64}\Z"))
    customer_ids = fields.List(
        fields.Integer(validate=validate.Range(min=1)), required=True, validate=validate.Length(min=1, max=10_000)
    )
    points = fields.Integer(required=True, validate=validate.Range(min=1, max=100_000))
    reason = fields.String(required=True, validate=validate.Length(min=2, max=255))


class BulkGrantResultSchema(OutputSchema):
    batch_key = fields.String()
    members = fields.Integer()
    queued = fields.Boolean()
