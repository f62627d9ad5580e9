"""Owner API of the points feature (/api/app/v1/...): balance, ledger, expiring points, tiers,
daily sign-in and the points mall."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import select

from backend.customers.models import Customer
from backend.platform.api import Blueprint, current_member, self_only
from backend.platform.db import db, utcnow
from backend.platform.errors import AppError
from backend.platform.idempotency import idempotent
from backend.points import mall, service, signin, tiers
from backend.points.models import MallOrder, MallOrderState, PointsAccount
from backend.points.schemas import (
    AccountSchema,
    CancelInSchema,
    ExpiringQuerySchema,
    ExpiringSchema,
    LedgerPageSchema,
    LedgerQuerySchema,
    MallItemListSchema,
    MallItemSchema,
    MallOrderListSchema,
    MallOrderQuerySchema,
    MallOrderSchema,
    RedeemInSchema,
    SigninInSchema,
    SigninResultSchema,
    SigninStatusSchema,
    TiersSchema,
)

blp = Blueprint("owner_points", __name__, url_prefix="/api/app/v1", audience="owner", description="积分 — points")


def _customer(customer_id: int) -> Customer:
    customer = db.session().get(Customer, customer_id)
    if customer is None:
        raise AppError("member.not_found", 404)
    return customer


def account_view(session: Any, customer: Customer) -> dict[str, Any]:
    now = utcnow()
    acc: PointsAccount = service.account(session, customer.id)
    growth = tiers.growth_value(session, customer.id, now)
    current = tiers.tier(customer.tier)
    nxt = tiers.next_tier(current.code)
    soon = service.expiring(session, customer.id, now, 30)
    return {
        "available": acc.available,
        "pending": acc.pending,
        "frozen": acc.frozen,
        "lifetime_earned": acc.lifetime_earned,
        "debt": max(0, -acc.available),
        "tier": current.code,
        "tier_name": current.name,
        "growth": growth,
        "next_tier": nxt.code if nxt else None,
        "next_tier_growth": nxt.min_growth if nxt else None,
        "expiring_points": sum(b.remaining for b in soon),
        "next_expiry_at": soon[0].expires_at if soon else None,
    }


@blp.route("/points/account")
@self_only
@blp.response(200, AccountSchema)
def get_account() -> dict[str, Any]:
    """My points: available (negative = a debt), pending, frozen, tier and what expires soon."""
    return account_view(db.session(), _customer(current_member().customer_id))


@blp.route("/points/ledger")
@self_only
@blp.arguments(LedgerQuerySchema, location="query")
@blp.response(200, LedgerPageSchema)
def get_ledger(args: dict[str, Any]) -> dict[str, Any]:
    """My ledger, newest first, with a reason for every row (keyset: pass `next_cursor`)."""
    items, nxt = service.ledger_page(
        db.session(), current_member().customer_id, limit=args["limit"], before_id=args.get("cursor")
    )
    return {"items": items, "next_cursor": nxt}


@blp.route("/points/expiring")
@self_only
@blp.arguments(ExpiringQuerySchema, location="query")
@blp.response(200, ExpiringSchema)
def get_expiring(args: dict[str, Any]) -> dict[str, Any]:
    """Points that expire within `days` days, soonest first."""
    buckets = service.expiring(db.session(), current_member().customer_id, utcnow(), args["days"])
    return {"total": sum(b.remaining for b in buckets), "items": buckets}


@blp.route("/points/tiers")
@self_only
@blp.response(200, TiersSchema)
def get_tiers() -> dict[str, Any]:
    session = db.session()
    customer = _customer(current_member().customer_id)
    return {
        "current": tiers.tier(customer.tier).code,
        "growth": tiers.growth_value(session, customer.id),
        "tiers": list(tiers.TIERS),
    }


@blp.route("/points/sign-in")
class SignIn(MethodView):
    @self_only
    @blp.response(200, SigninStatusSchema)
    def get(self) -> dict[str, Any]:
        """Today's sign-in status, streak and tomorrow's reward."""
        return signin.status(db.session(), current_member().customer_id)

    @self_only
    @blp.arguments(SigninInSchema)
    @blp.response(201, SigninResultSchema)
    def post(self, _body: dict[str, Any]) -> Any:
        """Sign in for today (Asia/Shanghai day); a second sign-in the same day answers 409."""
        return signin.sign_in(db.session(), current_member().customer_id)


# ---------------------------------------------------------------------------------------------
# Mall


@blp.route("/mall/items")
@self_only
@blp.response(200, MallItemListSchema)
def list_items() -> dict[str, Any]:
    """Items I can see (group-wide and my store's)."""
    return {"items": mall.member_items(db.session(), _customer(current_member().customer_id))}


@blp.route("/mall/items/<int:item_id>")
@self_only
@blp.response(200, MallItemSchema)
def get_item(item_id: int) -> Any:
    return mall.member_item(db.session(), _customer(current_member().customer_id), item_id)


def order_view(session: Any, order: MallOrder, with_codes: bool = True) -> dict[str, Any]:
    data = {c: getattr(order, c) for c in MallOrderSchema().fields if hasattr(order, c)}
    shown = order.state in (MallOrderState.COMPLETED, MallOrderState.PLACED, MallOrderState.SHIPPED)
    data["codes"] = mall.codes_of(session, order.id) if with_codes and shown else []
    data["address"] = mall.shown_address(order)
    data["customer_id"] = order.customer_id
    data["cancel_reason"] = order.cancel_reason
    data["payment"] = (
        {"business_type": mall.BUSINESS_TYPE, "business_id": str(order.id), "amount_fen": order.cash_fen_total}
        if order.state == MallOrderState.AWAITING_PAYMENT
        else None
    )
    return data


@blp.route("/mall/redemptions", methods=["POST"])
@idempotent
@self_only
@blp.arguments(RedeemInSchema)
@blp.response(201, MallOrderSchema)
def redeem(data: dict[str, Any]) -> dict[str, Any]:
    """Redeem an item with points (and, for a points+cash item, pay the cash part through
    /payments/orders with the returned business_type/business_id; the points stay frozen until
    then). Send an Idempotency-Key header: a retried submit redeems once."""
    session = db.session()
    order = mall.redeem(
        session,
        current_member().customer_id,
        data["item_id"],
        quantity=data["quantity"],
        address=data.get("address"),
    )
    return order_view(session, order)


@blp.route("/mall/redemptions")
@self_only
@blp.arguments(MallOrderQuerySchema, location="query")
@blp.response(200, MallOrderListSchema)
def list_redemptions(args: dict[str, Any]) -> dict[str, Any]:
    session = db.session()
    stmt = select(MallOrder).where(MallOrder.customer_id == current_member().customer_id)
    if args.get("state"):
        stmt = stmt.where(MallOrder.state == args["state"])
    if args.get("cursor"):
        stmt = stmt.where(MallOrder.id < args["cursor"])
    rows = list(session.scalars(stmt.order_by(MallOrder.id.desc()).limit(args["limit"] + 1)))
    nxt = rows[args["limit"] - 1].id if len(rows) > args["limit"] else None
    return {"items": [order_view(session, o, with_codes=False) for o in rows[: args["limit"]]], "next_cursor": nxt}


@blp.route("/mall/redemptions/<int:redemption_id>")
@self_only
@blp.response(200, MallOrderSchema)
def get_redemption(redemption_id: int) -> dict[str, Any]:
    session = db.session()
    return order_view(session, mall.member_order(session, current_member().customer_id, redemption_id))


@blp.route("/mall/redemptions/<int:redemption_id>/cancel", methods=["POST"])
@self_only
@blp.arguments(CancelInSchema)
@blp.response(200, MallOrderSchema)
def cancel_redemption(data: dict[str, Any], redemption_id: int) -> dict[str, Any]:
    """Cancel before shipment: stock, limits and the very same points buckets are restored."""
    session = db.session()
    member = current_member()
    order = mall.member_order(session, member.customer_id, redemption_id)
    order = mall.cancel(
        session, order.id, operator=f"member:{member.customer_id}", reason=data["reason"], by_member=True
    )
    return order_view(session, order)
