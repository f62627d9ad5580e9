"""Workbench API of the points feature (/api/workbench/v1/...): a customer's points, staff
adjustments (a second approver above the threshold), bulk grants as a job, mall items, code
pools, shipment, store write-off of service vouchers and cancellations."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import func, select

from backend.customers.models import Customer
from backend.org.scope import get_scoped_or_404, scope_query
from backend.platform.api import Blueprint, current_staff, role_required, scoped
from backend.platform.audit import write_audit
from backend.platform.db import db
from backend.platform.errors import AppError
from backend.platform.idempotency import idempotent
from backend.points import mall, service
from backend.points.api import account_view, order_view
from backend.points.models import AdjustmentState, MallCode, MallItem, MallOrder, PointsAdjustment
from backend.points.schemas import (
    AdjustmentInSchema,
    AdjustmentListSchema,
    AdjustmentSchema,
    BulkGrantInSchema,
    BulkGrantResultSchema,
    CodesInSchema,
    CodesResultSchema,
    DecisionInSchema,
    LedgerQuerySchema,
    MallItemInSchema,
    MallItemListSchema,
    MallItemPatchSchema,
    MallItemSchema,
    MallOrderQuerySchema,
    ShipInSchema,
    ShippingAddressSchema,
    StaffCancelInSchema,
    StaffLedgerPageSchema,
    StaffMallOrderListSchema,
    StaffMallOrderSchema,
    VoucherInSchema,
)
from workbench.scoping import require_store_in_scope, scope_first

blp = Blueprint("wb_points", __name__, url_prefix="/api/workbench/v1", audience="staff", description="积分 — points")

MANAGERS = ("store_manager", "region_manager", "division_manager", "group_admin", "marketing")
APPROVERS = ("store_manager", "region_manager", "division_manager", "group_admin")


@blp.route("/customers/<int:customer_id>/points")
@scoped("customer")
@blp.arguments(LedgerQuerySchema, location="query")
@blp.response(200, StaffLedgerPageSchema)
def customer_points(args: dict[str, Any], customer_id: int) -> dict[str, Any]:
    """A customer's account and ledger (operator and key on every row)."""
    session = db.session()
    customer = get_scoped_or_404(session, current_staff(), "customer", customer_id)
    items, nxt = service.ledger_page(session, customer.id, limit=args["limit"], before_id=args.get("cursor"))
    return {"account": account_view(session, customer), "items": items, "next_cursor": nxt}


@blp.route("/customers/<int:customer_id>/points/adjustments", methods=["POST"])
@idempotent
@scoped("customer")
@scope_first("customer", "customer_id")
@role_required(*MANAGERS)
@blp.arguments(AdjustmentInSchema)
@blp.response(201, AdjustmentSchema)
def adjust(data: dict[str, Any], customer_id: int) -> PointsAdjustment:
    """Adjust a customer's points with a reason. Above the threshold the adjustment waits for a
    second approver (state `pending`); a debit never takes the balance below zero."""
    session = db.session()
    actor = current_staff()
    customer = get_scoped_or_404(session, actor, "customer", customer_id)
    return service.request_adjustment(session, actor, customer.id, data["delta"], data["reason"])


@blp.route("/points/adjustments")
@scoped("points_adjustment")
@blp.response(200, AdjustmentListSchema)
def list_adjustments() -> dict[str, Any]:
    """Adjustments waiting for approval in my scope."""
    stmt = scope_query(
        select(PointsAdjustment).where(PointsAdjustment.state == AdjustmentState.PENDING),
        current_staff(),
        "points_adjustment",
    )
    return {"items": db.session().scalars(stmt.order_by(PointsAdjustment.id).limit(200)).all()}


@blp.route("/points/adjustments/<int:adjustment_id>/decision", methods=["POST"])
@scoped("points_adjustment")
@scope_first("points_adjustment", "adjustment_id")
@role_required(*APPROVERS)
@blp.arguments(DecisionInSchema)
@blp.response(200, AdjustmentSchema)
def decide(data: dict[str, Any], adjustment_id: int) -> PointsAdjustment:
    """Approve (applied now) or reject; the approver must not be the requester."""
    session = db.session()
    actor = current_staff()
    adj = get_scoped_or_404(session, actor, "points_adjustment", adjustment_id)
    return service.decide_adjustment(session, actor, adj, data["approve"])


@blp.route("/points/bulk-grants", methods=["POST"])
@scoped("customer")
@role_required(*MANAGERS)
@blp.arguments(BulkGrantInSchema)
@blp.response(202, BulkGrantResultSchema)
def bulk_grant(data: dict[str, Any]) -> dict[str, Any]:
    """Grant points to many customers in a job; each member's grant has its own idempotency key
    (`grant:<batch>:<customer>`, the batch being the key under the caller's name), the same
    batch_key queues the job once, and one reused for another grant answers 422."""
    session = db.session()
    actor = current_staff()
    wanted = sorted(set(data["customer_ids"]))
    found = set(
        session.scalars(scope_query(select(Customer.id).where(Customer.id.in_(wanted)), actor, "customer")).all()
    )
    missing = [c for c in wanted if c not in found]
    if missing:
        raise AppError("request.invalid", 422, errors={"json": {"customer_ids": [f"not found: {missing[:20]}"]}})
    queued = service.queue_bulk_grant(session, actor, data["batch_key"], wanted, data["points"], data["reason"])
    write_audit(session, actor, "points.bulk_grant", "bulk_grant", data["batch_key"], {"members": len(wanted)})
    return {"batch_key": data["batch_key"], "members": len(wanted), "queued": queued}


# ---------------------------------------------------------------------------------------------
# Mall items


@blp.route("/points/mall/items")
class Items(MethodView):
    @scoped("mall_item")
    @blp.response(200, MallItemListSchema)
    def get(self) -> dict[str, Any]:
        stmt = scope_query(select(MallItem), current_staff(), "mall_item")
        return {"items": db.session().scalars(stmt.order_by(MallItem.id.desc()).limit(500)).all()}

    @idempotent
    @scoped("mall_item")
    @role_required(*MANAGERS)
    @blp.arguments(MallItemInSchema)
    @blp.response(201, MallItemSchema)
    def post(self, data: dict[str, Any]) -> MallItem:
        """Create an item. Store-level staff create items of their own stores only."""
        session = db.session()
        actor = current_staff()
        require_store_in_scope(actor, data.get("store_id"))
        item = MallItem(**data)
        session.add(item)
        session.flush()
        write_audit(session, actor, "mall.item_created", "mall_item", item.id)
        return item


@blp.route("/points/mall/items/<int:item_id>", methods=["PATCH"])
@scoped("mall_item")
@scope_first("mall_item", "item_id")
@role_required(*MANAGERS)
@blp.arguments(MallItemPatchSchema)
@blp.response(200, MallItemSchema)
def patch_item(data: dict[str, Any], item_id: int) -> MallItem:
    """Edit an item; stock changes by `stock_delta` (a conditional update, never a lost update)."""
    session = db.session()
    actor = current_staff()
    item = get_scoped_or_404(session, actor, "mall_item", item_id)
    delta = data.pop("stock_delta", None)
    for key, value in data.items():
        setattr(item, key, value)
    session.flush()
    if delta:
        mall.adjust_stock(session, item, delta)
    write_audit(
        session, actor, "mall.item_updated", "mall_item", item.id, {"fields": sorted(data), "stock_delta": delta}
    )
    return item


@blp.route("/points/mall/items/<int:item_id>/codes", methods=["POST"])
@scoped("mall_item")
@scope_first("mall_item", "item_id")
@role_required(*MANAGERS)
@blp.arguments(CodesInSchema)
@blp.response(201, CodesResultSchema)
def add_codes(data: dict[str, Any], item_id: int) -> dict[str, Any]:
    """Load virtual codes into an item's pool (codes are unique)."""
    session = db.session()
    item = get_scoped_or_404(session, current_staff(), "mall_item", item_id)
    added = mall.add_codes(session, item, data["codes"])
    available = session.scalar(
        select(func.count()).select_from(MallCode).where(MallCode.item_id == item.id, MallCode.order_id.is_(None))
    )
    return {"added": added, "available": available}


# ---------------------------------------------------------------------------------------------
# Redemptions


@blp.route("/points/mall/redemptions")
@scoped("mall_order")
@blp.arguments(MallOrderQuerySchema, location="query")
@blp.response(200, StaffMallOrderListSchema)
def list_redemptions(args: dict[str, Any]) -> dict[str, Any]:
    session = db.session()
    stmt = scope_query(select(MallOrder), current_staff(), "mall_order")
    if args.get("state"):
        stmt = stmt.where(MallOrder.state == args["state"])
    if args.get("cursor"):
        stmt = stmt.where(MallOrder.id < args["cursor"])
    rows = list(session.scalars(stmt.order_by(MallOrder.id.desc()).limit(args["limit"] + 1)))
    nxt = rows[args["limit"] - 1].id if len(rows) > args["limit"] else None
    return {"items": [order_view(session, o, with_codes=False) for o in rows[: args["limit"]]], "next_cursor": nxt}


@blp.route("/points/mall/redemptions/<int:redemption_id>/address")
@scoped("mall_order")
@blp.response(200, ShippingAddressSchema)
def reveal_address(redemption_id: int) -> dict[str, Any] | None:
    """The full shipping address, for the shipment (lists show the phone masked): for the staff
    who may call the customer (advisors, store managers, group admins); the access is audited."""
    session = db.session()
    actor = current_staff()
    order = get_scoped_or_404(session, actor, "mall_order", redemption_id)
    return mall.reveal_address(session, actor, order)


@blp.route("/points/mall/redemptions/<int:redemption_id>/ship", methods=["POST"])
@scoped("mall_order")
@scope_first("mall_order", "redemption_id")
@blp.arguments(ShipInSchema)
@blp.response(200, StaffMallOrderSchema)
def ship(data: dict[str, Any], redemption_id: int) -> dict[str, Any]:
    session = db.session()
    actor = current_staff()
    order = get_scoped_or_404(session, actor, "mall_order", redemption_id)
    return order_view(session, mall.ship(session, actor, order, data["carrier"], data["tracking_no"]))


@blp.route("/points/mall/redemptions/<int:redemption_id>/cancel", methods=["POST"])
@scoped("mall_order")
@scope_first("mall_order", "redemption_id")
@role_required(*MANAGERS)
@blp.arguments(StaffCancelInSchema)
@blp.response(200, StaffMallOrderSchema)
def cancel(data: dict[str, Any], redemption_id: int) -> dict[str, Any]:
    """Cancel before shipment; orders with a cash part are cancelled by refunding them."""
    session = db.session()
    actor = current_staff()
    order = get_scoped_or_404(session, actor, "mall_order", redemption_id)
    if order.cash_fen_total > 0:
        raise AppError("mall.cash_order_needs_refund", 409)
    order = mall.cancel(session, order.id, operator=f"staff:{actor.staff_id}", reason=data["reason"], by_member=False)
    write_audit(session, actor, "mall.cancelled", "mall_order", order.id, {"reason": order.cancel_reason})
    return order_view(session, order)


@blp.route("/points/mall/vouchers/redeem", methods=["POST"])
@scoped("mall_order")
@blp.arguments(VoucherInSchema)
@blp.response(200, StaffMallOrderSchema)
def redeem_voucher(data: dict[str, Any]) -> dict[str, Any]:
    """Store write-off (核销) of a service voucher shown by the owner."""
    session = db.session()
    return order_view(session, mall.redeem_voucher(session, current_staff(), data["voucher_code"]))
