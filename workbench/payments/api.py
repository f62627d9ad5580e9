"""Payments in the workbench: orders of my stores, refunds, reconciliation results.

Refunds are for managers (store and above) and group admins; reconciliation is per merchant,
so only group admins (finance) see and run it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from backend.org.scope import get_scoped_or_404, scope_query
from backend.payments import service
from backend.payments.models import PaymentIssue, PaymentOrder, PaymentReconciliation, PaymentRefund
from backend.payments.schemas import (
    IssueHandleInSchema,
    IssueListSchema,
    IssueQuerySchema,
    IssueSchema,
    ReconcileInSchema,
    ReconciliationQuerySchema,
    ReconciliationSchema,
    RefundInSchema,
    RefundSchema,
    StaffOrderDetailSchema,
    StaffOrderPageSchema,
    StaffOrderQuerySchema,
)
from backend.platform.api import Blueprint, current_staff, role_required, scoped
from backend.platform.db import db
from backend.platform.errors import AppError
from backend.platform.idempotency import idempotent
from workbench.scoping import scope_first

blp = Blueprint(
    "wb_payments", __name__, url_prefix="/api/workbench/v1", audience="staff", description="支付 — payments"
)

REFUND_ROLES = ("store_manager", "region_manager", "division_manager", "group_admin")


def _detail(order: PaymentOrder) -> dict[str, Any]:
    refunds = db.session().scalars(
        select(PaymentRefund).where(PaymentRefund.order_id == order.id).order_by(PaymentRefund.id)
    )
    return {**{c.key: getattr(order, c.key) for c in PaymentOrder.__table__.columns}, "refunds": list(refunds)}


@blp.route("/payments/orders")
@scoped("payment_order")
@blp.arguments(StaffOrderQuerySchema, location="query")
@blp.response(200, StaffOrderPageSchema)
def list_orders(args: dict[str, Any]) -> dict[str, Any]:
    """Payment orders in my scope, newest first."""
    session = db.session()
    stmt = scope_query(select(PaymentOrder), current_staff(), "payment_order")
    for key in ("state", "store_id", "customer_id", "flagged"):
        if key in args:
            stmt = stmt.where(getattr(PaymentOrder, key) == args[key])
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    page, size = args["page"], args["page_size"]
    items = session.scalars(stmt.order_by(PaymentOrder.id.desc()).limit(size).offset((page - 1) * size)).all()
    return {"items": items, "total": total, "page": page, "page_size": size}


@blp.route("/payments/orders/<int:order_id>")
@scoped("payment_order")
@blp.response(200, StaffOrderDetailSchema)
def get_order(order_id: int) -> dict[str, Any]:
    """One order with its refunds."""
    return _detail(get_scoped_or_404(db.session(), current_staff(), "payment_order", order_id))


@blp.route("/payments/orders/<int:order_id>/refunds", methods=["POST"])
@scoped("payment_order")
@scope_first("payment_order", "order_id")
@role_required(*REFUND_ROLES)
@idempotent
@blp.arguments(RefundInSchema)
@blp.response(201, RefundSchema)
def create_refund(data: dict[str, Any], order_id: int) -> PaymentRefund:
    """Refund all (no `amount_fen`) or part of a paid order, with a reason.

    Idempotent by `out_refund_no` (send one; the same number again returns the same refund,
    re-sent to WeChat Pay if it never got there). The result arrives by the refund notification:
    the refund is `processing` until then. Errors: payment.refund_not_paid (409),
    payment.refund_exceeds_paid (422), payment.refund_limit (422, the 51st refund),
    payment.refund_rejected (422, WeChat Pay said no), upstream.* (503/504: retry with the same
    out_refund_no), points.reversal_blocked (409, block policy: the owner's points from this
    order are spent; not raised with `store_at_fault`, recorded in the audit). With the block
    policy the owner's points are taken back at once (a closed refund gives them back)."""
    refund, _created = service.request_refund(
        db.session(),
        service.gateway(),
        current_staff(),
        order_id,
        reason=data["reason"],
        amount_fen=data.get("amount_fen"),
        out_refund_no=data.get("out_refund_no"),
        refusable=not data["store_at_fault"],
    )
    return refund


def _reconciliation_out(recon: PaymentReconciliation) -> dict[str, Any]:
    issues = db.session().scalars(
        select(PaymentIssue).where(PaymentIssue.reconciliation_id == recon.id).order_by(PaymentIssue.id)
    )
    return {
        **{c.key: getattr(recon, c.key) for c in PaymentReconciliation.__table__.columns},
        "issue_list": list(issues),
    }


def _require_finance() -> None:
    if current_staff().scope.store_ids is not None:
        raise AppError("auth.forbidden", 403)


@blp.route("/payments/reconciliations")
@scoped("payment_reconciliation")
@blp.arguments(ReconciliationQuerySchema, location="query")
@blp.response(200, ReconciliationSchema(many=True))
def list_reconciliations(args: dict[str, Any]) -> list[dict[str, Any]]:
    """Daily reconciliation results with their issues (group admins)."""
    _require_finance()
    stmt = scope_query(select(PaymentReconciliation), current_staff(), "payment_reconciliation")
    if args.get("bill_date"):
        stmt = stmt.where(PaymentReconciliation.bill_date == args["bill_date"])
    rows = db.session().scalars(stmt.order_by(PaymentReconciliation.bill_date.desc()).limit(args["limit"]))
    return [_reconciliation_out(r) for r in rows]


@blp.route("/payments/reconciliations", methods=["POST"])
@scoped("payment_reconciliation")
@role_required("group_admin")
@blp.arguments(ReconcileInSchema)
@blp.response(200, ReconciliationSchema)
def run_reconciliation(data: dict[str, Any]) -> dict[str, Any]:
    """Reconcile one day now (the daily job does yesterday after 10:00); re-running is safe."""
    _require_finance()
    recon = service.reconcile(db.session(), service.gateway(), data["bill_date"])
    return _reconciliation_out(recon)


def _issue_out(issue: PaymentIssue) -> dict[str, Any]:
    return {
        **{c.key: getattr(issue, c.key) for c in PaymentIssue.__table__.columns},
        "label": service.ISSUE_LABELS.get(issue.kind, issue.kind),
    }


@blp.route("/payments/issues")
@scoped("payment_issue")
@blp.arguments(IssueQuerySchema, location="query")
@blp.response(200, IssueListSchema)
def list_issues(args: dict[str, Any]) -> dict[str, Any]:
    """Payment issues, newest first: amount mismatches from notifications, bill mismatches from
    reconciliation, abnormal refunds (finance sees all; store managers those of their stores)."""
    stmt = scope_query(select(PaymentIssue), current_staff(), "payment_issue")
    if args.get("resolution"):
        stmt = stmt.where(PaymentIssue.resolution == args["resolution"])
    if args.get("kind"):
        stmt = stmt.where(PaymentIssue.kind == args["kind"])
    rows = db.session().scalars(stmt.order_by(PaymentIssue.id.desc()).limit(args["limit"]))
    return {"items": [_issue_out(r) for r in rows]}


@blp.route("/payments/issues/<int:issue_id>/handle", methods=["POST"])
@scoped("payment_issue")
@scope_first("payment_issue", "issue_id")
@blp.arguments(IssueHandleInSchema)
@blp.response(200, IssueSchema)
def handle_issue(data: dict[str, Any], issue_id: int) -> dict[str, Any]:
    """Record how finance handled a flagged issue (group admins); audited, once."""
    _require_finance()
    return _issue_out(service.handle_issue(db.session(), current_staff(), issue_id, data["note"]))
