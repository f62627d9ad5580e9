"""Owner API of the payments feature (/api/app/v1/payments/...).

The client never states a price: it names the business object and the feature that owns it
quotes the amount. `POST /payments/orders` is idempotent twice over: an `Idempotency-Key`
replays the response, and the same business object returns its open order.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.payments import service
from backend.payments.models import PaymentOrder
from backend.payments.schemas import (
    CreateOrderInSchema,
    CreateOrderOutSchema,
    OrderListSchema,
    OrderSchema,
    SyncInSchema,
)
from backend.platform.api import Blueprint, current_member, self_only
from backend.platform.db import db
from backend.platform.errors import AppError
from backend.platform.idempotency import idempotent

blp = Blueprint("owner_payments", __name__, url_prefix="/api/app/v1", audience="owner", description="支付 — payments")


def _my_order(order_id: int) -> PaymentOrder:
    order = db.session().get(PaymentOrder, order_id)
    if order is None or order.customer_id != current_member().customer_id:
        raise AppError("payment.order_not_found", 404)
    return order


@blp.route("/payments/orders", methods=["POST"])
@self_only
@idempotent
@blp.arguments(CreateOrderInSchema)
@blp.response(201, CreateOrderOutSchema)
def create_order(data: dict[str, Any]) -> dict[str, Any]:
    """Create (or return the open) payment order for a business object and prepay it.

    With `coupon_ids`, the price is the business object's less the coupons (fixed, threshold or
    percent; a voucher or gift is for the store counter), applied in this order: thresholds
    (each judged on the price before coupons), fixed amounts, then percentages on what is left;
    combined only as each template allows (`exclusive`, `combinable_kinds`, `max_per_order`).
    Refusals (409, `errors.coupon_id` names the coupon): coupon.in_use (another open order
    holds it), coupon.not_combinable, coupon.threshold_not_met, coupon.wrong_store,
    coupon.not_for_this_order, coupon.store_only. Coupons are used when the order is paid and
    released when it closes or is refunded in full.

    Returns the order and the `wx.requestPayment` parameters. Success in the mini-program is not
    proof of payment: poll `GET /payments/orders/{id}` or call `.../sync`."""
    session = db.session()
    gw = service.gateway()
    order = service.create_order_for(
        session,
        current_member().customer_id,
        data["business_type"],
        data["business_id"],
        gw=gw,
        coupon_ids=data["coupon_ids"],
    )
    pay_params = service.prepay(session, gw, order)
    return {"order": order, "pay_params": pay_params}


@blp.route("/payments/orders")
@self_only
@blp.response(200, OrderListSchema)
def list_orders() -> dict[str, Any]:
    """My payment orders, newest first (the last 50)."""
    items = db.session().scalars(
        select(PaymentOrder)
        .where(PaymentOrder.customer_id == current_member().customer_id)
        .order_by(PaymentOrder.id.desc())
        .limit(50)
    )
    return {"items": list(items)}


@blp.route("/payments/orders/<int:order_id>")
@self_only
@blp.response(200, OrderSchema)
def get_order(order_id: int) -> PaymentOrder:
    """One of my payment orders (our state; see `.../sync` to ask WeChat Pay)."""
    return _my_order(order_id)


@blp.route("/payments/orders/<int:order_id>/sync", methods=["POST"])
@self_only
@blp.arguments(SyncInSchema)
@blp.response(200, OrderSchema)
def sync_order(_body: dict[str, Any], order_id: int) -> PaymentOrder:
    """After `wx.requestPayment` succeeds: asks WeChat Pay (out-trade-no query) when the order is
    still pending here, and applies a payment through the same checks as a notification."""
    order = _my_order(order_id)
    return service.sync_order(db.session(), service.gateway(), order.id)
