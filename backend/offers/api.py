"""Owner API of coupons: offers to claim (/api/app/v1/offers), my coupons and the QR shown at
the store (/api/app/v1/me/coupons)."""

from __future__ import annotations

from typing import Any

from backend.customers.service import member_customer
from backend.offers import service
from backend.offers.models import Coupon
from backend.offers.schemas import (
    CouponListSchema,
    CouponOfferListSchema,
    CouponQrSchema,
    CouponQuerySchema,
    CouponSchema,
)
from backend.platform.api import Blueprint, current_member, self_only
from backend.platform.db import db
from backend.platform.idempotency import idempotent

blp = Blueprint("owner_offers", __name__, url_prefix="/api/app/v1", audience="owner", description="优惠券 — coupons")

COUPON_EXAMPLE = {
    "id": 301,
    "template_id": 12,
    "customer_id": 7,
    "code": "402193857710",
    "status": "unused",
    "source": "claim",
    "valid_from": "2026-12-03T02:00:00+00:00",
    "valid_until": "2027-01-02T02:00:00+00:00",
    "issued_at": "2026-12-03T02:00:00+00:00",
    "used_at": None,
}


@blp.route("/offers")
@self_only
@blp.response(200, CouponOfferListSchema)
def offers() -> dict[str, Any]:
    """Coupons open for claiming now, soonest closing first, with how many are left."""
    return {"items": service.claimable_templates(db.session())}


@blp.route("/offers/<int:offer_id>/claim", methods=["POST"])
@self_only
@idempotent
@blp.response(201, CouponSchema, example=COUPON_EXAMPLE)
def claim(offer_id: int) -> Coupon:
    """Claim one coupon of an offer. Send an Idempotency-Key: a retried tap answers the same coupon.

    Refusals: 409 `coupon.sold_out`, `coupon.limit_reached` (the offer's per-member limit),
    `coupon.not_claimable` (outside the claim window), `coupon.not_eligible` (`errors.eligibility`
    lists what is missing: tier, new_member, car_brand, segment); 404 `coupon.template_not_found`.
    """
    session = db.session()
    return service.claim(session, member_customer(session, current_member()), offer_id)


@blp.route("/me/coupons")
@self_only
@blp.arguments(CouponQuerySchema, location="query")
@blp.response(200, CouponListSchema)
def my_coupons(args: dict[str, Any]) -> dict[str, Any]:
    """My coupons, soonest expiring first; `status` filters (unused, used, expired)."""
    status = args.get("status")
    return {"items": service.member_coupons(db.session(), current_member().customer_id, status)}


@blp.route("/me/coupons/<int:coupon_id>")
@self_only
@blp.response(200, CouponSchema, example=COUPON_EXAMPLE)
def my_coupon(coupon_id: int) -> Coupon:
    return service.member_coupon(db.session(), current_member().customer_id, coupon_id)


@blp.route("/me/coupons/<int:coupon_id>/qr")
@self_only
@blp.response(200, CouponQrSchema)
def coupon_qr(coupon_id: int) -> dict[str, Any]:
    """A signed QR token for the store to scan, valid about 60 seconds: the app fetches a new one
    before it runs out. The 12-digit code is the fallback staff can type."""
    return service.qr_token(db.session(), current_member().customer_id, coupon_id)
