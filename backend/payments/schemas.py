"""Schemas of the payments feature (owner API and workbench)."""

from __future__ import annotations

from datetime import date

from marshmallow import fields, validate

from backend.platform.api import OutputSchema, Schema


class CreateOrderInSchema(Schema):
    business_type = fields.String(required=True, validate=validate.Length(min=1, max=32))
    business_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    coupon_ids = fields.List(
        fields.Integer(),
        load_default=list,
        validate=validate.Length(max=5),
        metadata={"description": "my unused coupons: off the price, held by the order until paid or closed"},
    )


class SyncInSchema(Schema):
    """No fields: the order id is in the path."""


class PayParamsSchema(OutputSchema):
    """Arguments for `wx.requestPayment` (paySign: RSA-SHA256 over appId, timeStamp, nonceStr, package)."""

    appId = fields.String()  # noqa: N815 - WeChat's names, passed through as they are
    timeStamp = fields.String()  # noqa: N815
    nonceStr = fields.String()  # noqa: N815
    package = fields.String()
    signType = fields.String()  # noqa: N815
    paySign = fields.String()  # noqa: N815


class OrderSchema(OutputSchema):
    id = fields.Integer()
    out_trade_no = fields.String()
    business_type = fields.String()
    business_id = fields.String()
    description = fields.String()
    amount_fen = fields.Integer()
    state = fields.String(metadata={"description": "pending | paid | partially_refunded | refunded | closed"})
    expires_at = fields.DateTime()
    paid_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    refunded_fen = fields.Integer()
    created_at = fields.DateTime()


class CreateOrderOutSchema(OutputSchema):
    order = fields.Nested(OrderSchema)
    pay_params = fields.Nested(PayParamsSchema)


class OrderListSchema(OutputSchema):
    items = fields.List(fields.Nested(OrderSchema))


class RefundSchema(OutputSchema):
    id = fields.Integer()
    order_id = fields.Integer()
    out_refund_no = fields.String()
    refund_id = fields.String(allow_none=True)
    amount_fen = fields.Integer()
    reason = fields.String()
    state = fields.String(metadata={"description": "processing | succeeded | closed | abnormal"})
    requested_by = fields.String()
    created_at = fields.DateTime()
    succeeded_at = fields.DateTime(allow_none=True)


class StaffOrderSchema(OrderSchema):
    customer_id = fields.Integer()
    store_id = fields.Integer(allow_none=True)
    transaction_id = fields.String(allow_none=True)
    paid_via = fields.String(allow_none=True)
    refund_reserved_fen = fields.Integer()
    refund_count = fields.Integer()
    flagged = fields.Boolean()


class StaffOrderDetailSchema(StaffOrderSchema):
    refunds = fields.List(fields.Nested(RefundSchema))


class StaffOrderQuerySchema(Schema):
    state = fields.String(validate=validate.OneOf(["pending", "paid", "partially_refunded", "refunded", "closed"]))
    store_id = fields.Integer()
    customer_id = fields.Integer()
    flagged = fields.Boolean()
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=10_000))
    page_size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class StaffOrderPageSchema(OutputSchema):
    items = fields.List(fields.Nested(StaffOrderSchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()


class RefundInSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=2, max=80))
    amount_fen = fields.Integer(
        validate=validate.Range(min=1), metadata={"description": "omit for the whole refundable amount"}
    )
    out_refund_no = fields.String(
        validate=validate.Regexp(r"^[0-9A-Za-z_\-|*@]{1,64}\Z"),
        metadata={"description": "idempotency key: the same number again returns the same refund"},
    )
    store_at_fault = fields.Boolean(
        load_default=False,
        metadata={
            "description": "the store cannot deliver what was paid for (called off, out of stock): the refund"
            " is owed, so POINTS_REVERSAL_POLICY=block does not refuse it and points already spent become a debt"
        },
    )


class IssueSchema(OutputSchema):
    id = fields.Integer()
    kind = fields.String()
    out_trade_no = fields.String(allow_none=True)
    out_refund_no = fields.String(allow_none=True)
    order_id = fields.Integer(allow_none=True)
    resolution = fields.String(metadata={"description": "flagged | repaired | handled"})
    label = fields.String(metadata={"description": "what happened, in Chinese"})
    detail = fields.Dict(allow_none=True)
    created_at = fields.DateTime()
    handled_by = fields.String(allow_none=True)
    handled_at = fields.DateTime(allow_none=True)
    handling_note = fields.String(allow_none=True)


class IssueListSchema(OutputSchema):
    items = fields.List(fields.Nested(IssueSchema))


class IssueQuerySchema(Schema):
    resolution = fields.String(validate=validate.OneOf(("flagged", "repaired", "handled")))
    kind = fields.String(validate=validate.Length(max=32))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class IssueHandleInSchema(Schema):
    note = fields.String(required=True, validate=validate.Length(min=2, max=255))


class ReconciliationSchema(OutputSchema):
    id = fields.Integer()
    bill_date = fields.Date()
    status = fields.String()
    bill_rows = fields.Integer()
    matched = fields.Integer()
    issues = fields.Integer()
    error = fields.String(allow_none=True)
    ran_at = fields.DateTime()
    issue_list = fields.List(fields.Nested(IssueSchema), data_key="issue_items")


# No WeChat Pay bill is older than this; and a day at the calendar's start (0001-01-01)
# overflowed when its China-time bounds were taken in UTC (500, after the bill was fetched).
# A future day stays allowed: WeChat Pay answers it NO_STATEMENT_EXIST, recorded as failed.
BILL_DAYS = validate.Range(min=date(2000, 1, 1))


class ReconciliationQuerySchema(Schema):
    bill_date = fields.Date(validate=BILL_DAYS)
    limit = fields.Integer(load_default=30, validate=validate.Range(min=1, max=100))


class ReconcileInSchema(Schema):
    bill_date = fields.Date(required=True, validate=BILL_DAYS)
