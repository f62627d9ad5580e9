"""Points earned on spend: a payments listener. A paid order earns points per yuan (times the
member's tier multiplier), pending during the return window; a refund cancels the pending part,
or takes back active points (a debt if they are already spent, or blocked — see the policy).

The payments feature calls these hooks in a job after commit; they fetch what they need lazily
and are idempotent (keys `pay:<order>` and `refund:<refund>:…`)."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.customers.models import Customer
from backend.platform.db import utcnow
from backend.platform.errors import AppError
from backend.points import service, tiers
from backend.points.models import LedgerKind, PointsLedger

log = logging.getLogger("dealerloop.points.earning")

# Cash paid for these business types earns nothing (the mall's cash part is itself a redemption).
NO_EARN_TYPES = frozenset({"mall_order"})
REF_TYPE = "payment_order"


def points_for_amount(session: Session, customer_id: int, amount_fen: int) -> int:
    code = session.scalar(select(Customer.tier).where(Customer.id == customer_id))
    base = amount_fen // 100 * service.policy().points_per_yuan
    return base * tiers.tier(code).multiplier_pct // 100


def on_paid(session: Session, order_id: int) -> None:
    from backend.payments.models import PaymentOrder

    order = session.get(PaymentOrder, order_id)
    if order is None or order.business_type in NO_EARN_TYPES:
        return
    points = points_for_amount(session, order.customer_id, order.amount_fen)
    if points <= 0:
        return
    now = utcnow()
    service.earn_pending(
        session,
        order.customer_id,
        points,
        key=f"pay:{order_id}",
        reason_code="order_paid",
        operator="system:payments",
        activates_at=now + timedelta(days=service.policy().return_window_days),
        ref_type=REF_TYPE,
        ref_id=str(order_id),
        now=now,
    )


def _refunded_up_to(session: Session, order_id: int, refund_id: int) -> int:
    from backend.payments.models import PaymentRefund, RefundState

    rows = session.execute(
        select(PaymentRefund.id, PaymentRefund.amount_fen, PaymentRefund.state).where(
            PaymentRefund.order_id == order_id, PaymentRefund.id <= refund_id
        )
    ).all()
    return sum(amount for rid, amount, state in rows if state == RefundState.SUCCEEDED or rid == refund_id)


def _taken_back(session: Session, order_id: int) -> int:
    L = PointsLedger
    return -int(
        session.scalar(
            select(func.coalesce(func.sum(L.delta + L.pending_delta), 0)).where(
                L.ref_type == REF_TYPE,
                L.ref_id == str(order_id),
                L.kind.in_((LedgerKind.PENDING_CANCEL, LedgerKind.REVERSE)),
            )
        )
        or 0
    )


def points_to_take_back(session: Session, order_id: int, refund_id: int) -> tuple[PointsLedger | None, int]:
    from backend.payments.models import PaymentOrder

    order = session.get(PaymentOrder, order_id)
    pending = service._existing(session, f"pay:{order_id}")
    if order is None or pending is None or order.amount_fen <= 0:
        return pending, 0
    earned = pending.pending_delta
    refunded = min(_refunded_up_to(session, order_id, refund_id), order.amount_fen)
    target = earned * refunded // order.amount_fen
    return pending, max(0, target - _taken_back(session, order_id))


def refund_guard(session: Session, order_id: int, refund_amount_fen: int) -> None:
    """For the payments feature to call before asking WeChat for a refund: with the "block"
    policy, a refund whose points the member has already spent is refused up front."""
    from backend.payments.models import PaymentOrder

    if service.policy().reversal != "block":
        return
    order = session.get(PaymentOrder, order_id)
    pending = service._existing(session, f"pay:{order_id}")
    if order is None or pending is None or order.amount_fen <= 0:
        return
    earned = pending.pending_delta
    share = earned * min(order.refunded_fen + refund_amount_fen, order.amount_fen) // order.amount_fen
    need = share - _taken_back(session, order_id) - pending.remaining
    if need > 0 and service.account(session, order.customer_id).available < need:
        raise AppError("points.reversal_blocked", 409)


def on_refunded(session: Session, order_id: int, refund_id: int) -> None:
    from backend.payments.models import PaymentOrder

    order = session.get(PaymentOrder, order_id)
    if order is None or order.business_type in NO_EARN_TYPES:
        return
    with session.begin_nested():
        service._lock_account(session, order.customer_id)  # the sums below are read under the lock
        pending, amount = points_to_take_back(session, order_id, refund_id)
        if pending is None or amount <= 0:
            return
        cancelled = service.cancel_pending(
            session,
            pending,
            amount,
            key=f"refund:{refund_id}:pending",
            reason_code="order_refunded",
            operator="system:payments",
        )
        rest = amount - (-cancelled.pending_delta if cancelled is not None else 0)
        if rest <= 0:
            return
        buckets = list(
            session.scalars(
                select(PointsLedger.id).where(
                    PointsLedger.related_id == pending.id, PointsLedger.kind == LedgerKind.ACTIVATE
                )
            )
        )
        # The money is already back with the customer: never block here, never clamp. With the
        # block policy, `refund_guard` refuses such refunds before they are requested.
        if service.policy().reversal == "block":
            log.warning("refund %s reverses %s points beyond the member's balance: debt recorded", refund_id, rest)
        service.reverse(
            session,
            order.customer_id,
            rest,
            key=f"refund:{refund_id}:reverse",
            reason_code="order_refunded",
            operator="system:payments",
            ref_type=REF_TYPE,
            ref_id=str(order_id),
            prefer_buckets=buckets,
            allow_debt=True,
        )
