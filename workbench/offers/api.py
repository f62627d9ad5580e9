"""Workbench API of coupons: templates (marketing and managers), staff gifts, the write-off at the
store (scan → preview → confirm), its reversal by a manager, and the report.

An id outside the caller's scope answers 404; the write-off store is the caller's own store
(staff above stores name one of their scope)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import select

from backend.offers import service
from backend.offers.models import Coupon, CouponPush, CouponTemplate, CouponWriteOff
from backend.offers.schemas import (
    CouponGiveInSchema,
    CouponListSchema,
    CouponPreviewSchema,
    CouponPushInSchema,
    CouponPushListSchema,
    CouponPushSchema,
    CouponReportSchema,
    CouponReverseInSchema,
    CouponScanInSchema,
    CouponSchema,
    CouponTemplateInSchema,
    CouponTemplateListSchema,
    CouponTemplatePatchSchema,
    CouponTemplateSchema,
    CouponWriteOffResultSchema,
    CouponWriteOffSchema,
)
from backend.org.scope import get_scoped_or_404, scope_query
from backend.platform.api import Blueprint, current_staff, role_required, scoped
from backend.platform.audit import write_audit
from backend.platform.db import db
from backend.platform.idempotency import idempotent
from workbench.scoping import require_store_in_scope, scope_first

blp = Blueprint("wb_offers", __name__, url_prefix="/api/workbench/v1", audience="staff", description="优惠券 — coupons")

MANAGERS = ("store_manager", "region_manager", "division_manager", "group_admin", "marketing")

TEMPLATE_EXAMPLE = {
    "name": "保养工时立减100元",
    "kind": "threshold",
    "value_fen": 10000,
    "threshold_fen": 50000,
    "store_id": 3,
    "stock": 1000,
    "per_member_limit": 1,
    "claim_starts_at": "2026-12-01T00:00:00+08:00",
    "claim_ends_at": "2026-12-31T23:59:59+08:00",
    "use_days": 30,
    "eligible_tiers": ["gold", "platinum"],
}


@blp.route("/coupon-templates")
class Templates(MethodView):
    @scoped("coupon_template")
    @blp.response(200, CouponTemplateListSchema)
    def get(self) -> dict[str, Any]:
        """Templates of my stores (and the group's, for staff above stores), newest first."""
        stmt = scope_query(select(CouponTemplate), current_staff(), "coupon_template")
        return {"items": db.session().scalars(stmt.order_by(CouponTemplate.id.desc()).limit(500)).all()}

    @scoped("coupon_template")
    @role_required(*MANAGERS)
    @blp.arguments(CouponTemplateInSchema, example=TEMPLATE_EXAMPLE)
    @blp.response(201, CouponTemplateSchema)
    def post(self, data: dict[str, Any]) -> CouponTemplate:
        """Create a template. Store-level staff create their own stores' (funded by the store);
        group-wide templates (store_id null, funded by the group) need a group-wide scope.
        Kinds: fixed (value_fen), threshold (value_fen under threshold_fen), percent
        (percent_off, at most cap_fen), voucher (service_type), gift (gift_name)."""
        session = db.session()
        actor = current_staff()
        require_store_in_scope(actor, data.get("store_id"))
        service.check_template_segment(session, actor, data.get("segment_id"))
        template = CouponTemplate(**data)
        service.save_template(session, template)
        write_audit(session, actor, "coupon_template.created", "coupon_template", template.id)
        return template


@blp.route("/coupon-templates/<int:coupon_template_id>")
class TemplateById(MethodView):
    @scoped("coupon_template")
    @blp.response(200, CouponTemplateSchema)
    def get(self, coupon_template_id: int) -> CouponTemplate:
        return get_scoped_or_404(db.session(), current_staff(), "coupon_template", coupon_template_id)

    @scoped("coupon_template")
    @scope_first("coupon_template", "coupon_template_id")
    @role_required(*MANAGERS)
    @blp.arguments(CouponTemplatePatchSchema)
    @blp.response(200, CouponTemplateSchema)
    def patch(self, data: dict[str, Any], coupon_template_id: int) -> CouponTemplate:
        """Change windows, stock (never below what is issued: 409 coupon.stock_below_issued),
        limits, eligibility, or take it off (active false). What a coupon is worth is fixed."""
        session = db.session()
        template = get_scoped_or_404(session, current_staff(), "coupon_template", coupon_template_id)
        return service.update_template(session, current_staff(), template, data)


@blp.route("/coupon-templates/<int:coupon_template_id>/gifts", methods=["POST"])
@scoped("coupon_template")
@scope_first("coupon_template", "coupon_template_id")
@idempotent
@blp.arguments(CouponGiveInSchema)
@blp.response(201, CouponSchema)
def give(data: dict[str, Any], coupon_template_id: int) -> Coupon:
    """Give a customer of my scope a coupon, with a reason (audited). The same `ref` gives once.
    Stock and the per-member limit apply as to a claim."""
    session = db.session()
    actor = current_staff()
    template = get_scoped_or_404(session, actor, "coupon_template", coupon_template_id)
    customer = get_scoped_or_404(session, actor, "customer", data["customer_id"])
    return service.give(session, actor, template, customer, data["reason"], data["ref"])


@blp.route("/coupon-templates/<int:coupon_template_id>/pushes")
class Pushes(MethodView):
    @scoped("coupon_template")
    @blp.response(200, CouponPushListSchema)
    def get(self, coupon_template_id: int) -> dict[str, Any]:
        session = db.session()
        template = get_scoped_or_404(session, current_staff(), "coupon_template", coupon_template_id)
        stmt = select(CouponPush).where(CouponPush.template_id == template.id).order_by(CouponPush.id.desc())
        return {"items": session.scalars(stmt.limit(100)).all()}

    @scoped("coupon_template")
    @scope_first("coupon_template", "coupon_template_id")
    @role_required(*MANAGERS)
    @blp.arguments(CouponPushInSchema)
    @blp.response(202, CouponPushSchema)
    def post(self, data: dict[str, Any], coupon_template_id: int) -> CouponPush:
        """Push the template to a segment's members, by a job (202: queued; GET shows the counts).
        Each member gets at most one per template and campaign (or per push without one), within
        the stock, the per-member limit and the template's eligibility."""
        session = db.session()
        actor = current_staff()
        template = get_scoped_or_404(session, actor, "coupon_template", coupon_template_id)
        get_scoped_or_404(session, actor, "segment", data["segment_id"])
        if data["campaign_id"] is not None:
            get_scoped_or_404(session, actor, "campaign", data["campaign_id"])
        return service.start_push(session, actor, template, data["segment_id"], data["campaign_id"])


@blp.route("/customers/<int:customer_id>/coupons")
@scoped("customer")
@blp.response(200, CouponListSchema)
def customer_coupons(customer_id: int) -> dict[str, Any]:
    session = db.session()
    customer = get_scoped_or_404(session, current_staff(), "customer", customer_id)
    return {"items": service.member_coupons(session, customer.id)}


@blp.route("/coupons/preview", methods=["POST"])
@scoped("coupon_write_off")
@blp.arguments(CouponScanInSchema)
@blp.response(200, CouponPreviewSchema)
def preview(data: dict[str, Any]) -> dict[str, Any]:
    """What was scanned (or typed) and whether it can be used at my store now; nothing changes.
    An expired QR answers 410 qr.expired, a forged one 422 qr.invalid."""
    return service.preview(db.session(), current_staff(), data["token"], data["code"], data["store_id"])


@blp.route("/coupons/write-offs", methods=["POST"])
@scoped("coupon_write_off")
@blp.arguments(CouponScanInSchema)
@blp.response(200, CouponWriteOffResultSchema)
def write_off(data: dict[str, Any]) -> dict[str, Any]:
    """Confirm the use of a coupon at my store (核销). The same scan (the QR's nonce, or the
    `nonce` sent with a typed code) again answers the same write-off. Refusals (409):
    coupon.already_used, coupon.expired, coupon.not_yet_valid, coupon.wrong_store,
    coupon.nonce_reused (the nonce answered another coupon's write-off)."""
    coupon, row = service.write_off(
        db.session(),
        current_staff(),
        token=data["token"],
        code=data["code"],
        nonce=data["nonce"],
        store_id=data["store_id"],
    )
    return {"coupon": coupon, "write_off": row}


@blp.route("/coupons/write-offs/<int:write_off_id>/reversal", methods=["POST"])
@scoped("coupon_write_off")
@scope_first("coupon_write_off", "write_off_id")
@blp.arguments(CouponReverseInSchema)
@blp.response(200, CouponWriteOffSchema)
def reverse(data: dict[str, Any], write_off_id: int) -> CouponWriteOff:
    """Undo a write-off made by mistake: store managers and above only (403
    coupon.reverse_forbidden), once (409 coupon.not_reversible), audited; the coupon is usable again."""
    session = db.session()
    actor = current_staff()
    row = get_scoped_or_404(session, actor, "coupon_write_off", write_off_id)
    return service.reverse(session, actor, row, data["reason"])


@blp.route("/coupons/report")
@scoped("coupon_template")
@blp.response(200, CouponReportSchema)
def report() -> dict[str, Any]:
    """Per template of my scope: issued (claimed by owners and given by staff), used, expired, unused."""
    return {"items": service.report(db.session(), current_staff())}
