"""Points earned on spend: a payments listener. A paid order earns points per yuan (times the
member's tier multiplier), pending during the return window; a refund cancels the pending part,
or takes back active points (a debt if they are already spent, or blocked — see the policy).

The payments feature calls these hooks in a job after commit; they fetch what they need lazily
and are idempotent (keys `pay:<order>` and `refund:<refund>:…`).

Earning rules of marketing (backend/campaigns) add to this: a paid order is reported to
`campaigns.service.on_spend` (spend rules by business line, multipliers), whose grants are
pending like these points and are taken back by a refund in the same proportion."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.customers.models import Customer
from backend.platform.db import utcnow
from backend.platform.errors import AppError
from backend.points import service, tiers
from backend.points.models import LedgerKind, PointsLedger
from backend.touchpoints.service import live_customer_id

log = logging.getLogger("dealerloop.points.earning")

# Cash paid for these business types earns nothing (the mall's cash part is itself a redemption).
NO_EARN_TYPES = frozenset({"mall_order"})
REF_TYPE = "payment_order"
# What a failed (closed) refund gives back of what its request took: netted in `_taken_back`.
GIVEN_BACK = "order_refund_closed"


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
    from backend.campaigns.service import on_spend

    # Campaign rules first: their limits are locked before the points account (one lock order).
    on_spend(
        session,
        order.customer_id,
        f"pay:{order_id}",
        business_type=order.business_type,
        amount_fen=order.amount_fen,
        store_id=order.store_id,
        occurred_at=order.paid_at,
        base_points=max(points, 0),
    )
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


def _refunded_with(session: Session, order_id: int, refund_id: int | None) -> int:
    """Fen refunded on the order: every refund that succeeded, whatever its id, plus this one.

    Not only those numbered up to this one: WeChat Pay finishes partial refunds in any order,
    and the share of a later refund that finished first is already taken back (subtracted by
    the caller), so counting by id would leave an earlier refund's share in the member's hands."""
    from backend.payments.models import PaymentRefund, RefundState

    rows = session.execute(
        select(PaymentRefund.id, PaymentRefund.amount_fen, PaymentRefund.state).where(
            PaymentRefund.order_id == order_id
        )
    ).all()
    return sum(amount for rid, amount, state in rows if state == RefundState.SUCCEEDED or rid == refund_id)


def _taken_back(session: Session, order_id: int, ref_type: str = REF_TYPE, ref_id: str | None = None) -> int:
    L = PointsLedger
    return -int(
        session.scalar(
            select(func.coalesce(func.sum(L.delta + L.pending_delta), 0)).where(
                L.ref_type == ref_type,
                L.ref_id == (ref_id if ref_id is not None else str(order_id)),
                L.kind.in_((LedgerKind.PENDING_CANCEL, LedgerKind.REVERSE)) | (L.reason_code == GIVEN_BACK),
            )
        )
        or 0
    )


def points_to_take_back(
    session: Session,
    order_id: int,
    refund_id: int | None,
    key: str | None = None,
    ref: tuple[str, str] | None = None,
    refunded_fen: int | None = None,
) -> tuple[PointsLedger | None, int]:
    """The pending credit earned on the order (`key`, default the spend's own `pay:<order>`) and
    how much of it the refunds done so far and `refund_id` take back (in proportion, less what
    is back). `refunded_fen` instead of the refunds: the fen an accepted owner's refund will
    bring the order to (taken back before the refund is even requested)."""
    from backend.payments.models import PaymentOrder

    order = session.get(PaymentOrder, order_id)
    pending = service._existing(session, key or f"pay:{order_id}")
    if order is None or pending is None or order.amount_fen <= 0:
        return pending, 0
    earned = pending.pending_delta
    if refunded_fen is None:
        refunded_fen = _refunded_with(session, order_id, refund_id)
    refunded = min(refunded_fen, order.amount_fen)
    target = earned * refunded // order.amount_fen
    ref_type, ref_id = ref or (REF_TYPE, str(order_id))
    return pending, max(0, target - _taken_back(session, order_id, ref_type, ref_id))


def refund_guard(session: Session, order_id: int, refund_amount_fen: int, *, refusable: bool = True) -> None:
    """The payments feature calls this (a `before_refund` guard) before asking WeChat for a
    refund (under the order's lock), or before a feature accepts an owner's cancellation: with
    the "block" policy, a refund the owner asks for whose points they have already spent is
    refused up front. Refunds in flight count as refunded (their points will be taken back too).
    A refund that is not the owner's doing (`refusable` False: the store called the event off)
    goes through; `_take_back` records the shortfall as a debt."""
    from backend.payments.models import PaymentOrder

    if service.policy().reversal != "block" or not refusable:
        return
    order = session.get(PaymentOrder, order_id)
    pending = service._existing(session, f"pay:{order_id}")
    if order is None or pending is None or order.amount_fen <= 0:
        return
    earned = pending.pending_delta
    share = earned * min(order.refund_reserved_fen + refund_amount_fen, order.amount_fen) // order.amount_fen
    need = share - _taken_back(session, order_id) - pending.remaining
    if need > 0 and service.account(session, order.customer_id).available < need:
        raise AppError("points.reversal_blocked", 409)


def _earned_on(session: Session, order: Any) -> list[tuple[str, tuple[str, str], str]]:
    """What the order earned that a refund takes back: the points per yuan and the campaign spend
    grants (pending like them), as (credit key, ledger ref, key suffix)."""
    from backend.campaigns.models import CampaignGrant

    grants = session.execute(
        select(CampaignGrant.id, CampaignGrant.rule_id).where(
            CampaignGrant.ref == f"pay:{order.id}", CampaignGrant.customer_id == order.customer_id
        )
    ).all()
    return [(f"pay:{order.id}", (REF_TYPE, str(order.id)), "")] + [
        (f"campaign:{rule_id}:pay:{order.id}", ("campaign_grant", str(grant_id)), f":g{grant_id}")
        for grant_id, rule_id in sorted(grants)
    ]


def on_refunded(session: Session, order_id: int, refund_id: int) -> None:
    from backend.payments.models import PaymentOrder

    order = session.get(PaymentOrder, order_id)
    if order is None or order.business_type in NO_EARN_TYPES:
        return
    with session.begin_nested():
        service._lock_account(session, order.customer_id)  # the sums below are read under the lock
        for key, ref, suffix in _earned_on(session, order):
            _take_back(session, order, refund_id, key, ref, f"refund:{refund_id}{suffix}")


def take_back_for_accepted_refund(
    session: Session, order_id: int, refund_amount_fen: int, *, refund_id: int | None = None
) -> None:
    """The owner's cancellation is accepted now and its refund requested later, by a job that may
    no longer refuse it. With the block policy the points that refund will take back are taken
    back here, in the cancellation's transaction and under the account lock (the lock a spend
    takes), or the cancellation is refused (`points.reversal_blocked`): checked without the lock
    and taken back only by the job, a mall redemption in between spent them and the owner ended
    in debt. The refunded listener then finds them back already (its target less what is back)
    and takes nothing twice. With the debt policy nothing is done ahead: the refund takes them
    back when it succeeds, a debt if they are spent.

    A staff refund (`refund_id`, requested in this transaction under the order's lock) is settled
    the same way, keyed by the refund: if WeChat Pay closes it, `give_back_for_failed_refund`
    gives exactly these points back."""
    from backend.payments.models import PaymentOrder

    if service.policy().reversal != "block":
        return
    order = session.get(PaymentOrder, order_id)
    if order is None or order.business_type in NO_EARN_TYPES or order.amount_fen <= 0:
        return
    refunded = min(order.refund_reserved_fen + refund_amount_fen, order.amount_fen)
    with session.begin_nested():
        available = service._lock_account(session, live_customer_id(session, order.customer_id))
        earned = _earned_on(session, order)
        need = 0
        for key, ref, _suffix in earned:
            pending, amount = points_to_take_back(session, order.id, None, key, ref, refunded)
            if pending is not None and amount > 0:
                need += max(0, amount - pending.remaining)  # beyond what is still pending
        if need > available:
            raise AppError("points.reversal_blocked", 409)
        for key, ref, suffix in earned:
            # Keyed by the refunded level: the same acceptance again moves nothing twice (or by
            # the refund, whose failure gives back what its own keys took).
            level = f"r{refund_id}" if refund_id is not None else str(refunded)
            _take_back(session, order, None, key, ref, f"accepted:{order.id}:{level}{suffix}", refunded)


def give_back_for_failed_refund(session: Session, order_id: int, refund_id: int) -> None:
    """WeChat Pay closed a staff refund whose points `take_back_for_accepted_refund` took at the
    request: give them back (the pending part pending again, the reversed part into the buckets
    it came from). Keyed by the refund: a duplicate notification or poll gives nothing twice.
    Nothing was taken ahead under the debt policy, so nothing is found and nothing given."""
    from backend.payments.models import PaymentOrder

    order = session.get(PaymentOrder, order_id)
    if order is None or order.business_type in NO_EARN_TYPES:
        return
    with session.begin_nested():
        service._lock_account(session, live_customer_id(session, order.customer_id))
        for _key, _ref, suffix in _earned_on(session, order):
            taken = f"accepted:{order.id}:r{refund_id}{suffix}"
            back = f"refund-closed:{refund_id}{suffix}"
            cancelled = service._existing(session, f"{taken}:pending")
            if cancelled is not None:
                service.give_back_pending(
                    session, cancelled, key=f"{back}:pending", reason_code=GIVEN_BACK, operator="system:payments"
                )
            reversed_ = service._existing(session, f"{taken}:reverse")
            if reversed_ is not None:
                service.restore(
                    session, reversed_, key=f"{back}:reverse", reason_code=GIVEN_BACK, operator="system:payments"
                )


def _take_back(
    session: Session,
    order: Any,
    refund_id: int | None,
    key: str,
    ref: tuple[str, str],
    key_prefix: str,
    refunded_fen: int | None = None,
) -> None:
    order_id = order.id
    pending, amount = points_to_take_back(session, order_id, refund_id, key, ref, refunded_fen)
    if pending is None or amount <= 0:
        return
    cancelled = service.cancel_pending(
        session,
        pending,
        amount,
        key=f"{key_prefix}:pending",
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
    # block policy, `refund_guard` refuses the owner's own refunds before they are requested, and
    # an owner's cancellation refunded later by a job had its points taken back when it was
    # accepted (`take_back_for_accepted_refund`); what reaches here beyond the balance is a refund
    # the dealer owed (a debt, §1.2.5 a).
    if service.policy().reversal == "block":
        log.warning("refund %s reverses %s points beyond the member's balance: debt recorded", refund_id, rest)
    service.reverse(
        session,
        order.customer_id,
        rest,
        key=f"{key_prefix}:reverse",
        reason_code="order_refunded",
        operator="system:payments",
        ref_type=ref[0],
        ref_id=ref[1],
        prefer_buckets=buckets,
        allow_debt=True,
    )
