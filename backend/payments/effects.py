"""Business effects of payments, registered by the features that own them.

A payment order names a `business_type` (e.g. "mall_order", "event_fee", "service_package",
"booking_deposit") and a `business_id`. When the order becomes paid (exactly once) or is
refunded, the payments feature runs — in a job after commit, through the outbox — the effect
registered for that business type, plus every listener (e.g. points earned on spend).
Effects take the session and ids and must be idempotent (they may be re-run).

`quote` (optional) lets the owner API create an order for a business object without trusting a
price from the client: it returns the amount, description, store and expiry for a customer and a
business id, or raises the feature's own AppError (not found, not payable). Features that create
orders inside their own service call `payments.service.create_order` directly instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

# on_paid(session, order_id) ; on_refunded(session, order_id, refund_id) ; on_closed(session, order_id)
PaidHook = Callable[[Session, int], Any]
RefundHook = Callable[[Session, int, int], Any]
ClosedHook = Callable[[Session, int], Any]


@dataclass(frozen=True)
class Quote:
    amount_fen: int
    description: str
    store_id: int | None = None
    expires_in: timedelta = timedelta(minutes=30)


# quote(session, customer_id, business_id) -> Quote
QuoteHook = Callable[[Session, int, str], Quote]
# refundable_total(session, order_id) -> the most all refunds of the order may add up to
# (e.g. the price less the services already used), or None for no limit beyond the amount paid.
RefundableHook = Callable[[Session, int], int | None]
# before_refund(session, order_id, amount_fen, refusable=) -> None, or raises the feature's AppError
# to refuse the refund before WeChat Pay is asked (e.g. points earned on the order already spent).
# `refusable` is False when the business owes the money whatever the guard thinks (the store
# called the service off, or already accepted the owner's cancellation): the guard must then let
# it through and its refunded listener records what cannot be undone (a points debt).
RefundGuard = Callable[..., None]
# refund_accepted(session, order_id, amount_fen) -> None, or raises the feature's AppError: an
# owner's cancellation is accepted now and refunds the order later (a job that may no longer
# refuse): the feature settles now, under its own locks and in the cancellation's transaction,
# what its guard would have to refuse later (e.g. takes back the points earned on the order).
# A staff refund passes `refund_id=` (it is requested in the same transaction): what is taken
# back is then that refund's own, given back by `refund_failed` if WeChat Pay closes the refund.
RefundAcceptedHook = Callable[..., None]
# refund_failed(session, order_id, refund_id): WeChat Pay closed the refund (no money moved): the
# feature gives back what `refund_accepted` settled for it. Runs once, under the order's lock.
RefundFailedHook = Callable[[Session, int, int], None]


@dataclass(frozen=True)
class BusinessEffect:
    on_paid: PaidHook | None = None
    on_refunded: RefundHook | None = None
    on_closed: ClosedHook | None = None
    quote: QuoteHook | None = None
    refundable_total: RefundableHook | None = None
    before_refund: RefundGuard | None = None
    refund_accepted: RefundAcceptedHook | None = None
    refund_failed: RefundFailedHook | None = None


@dataclass(frozen=True)
class OrderDiscount:
    """The order-level coupons an owner picks at checkout (the offers feature registers it).

    `price(session, customer_id, coupon_ids, business_type, business_id, quote)` answers (coupon id, fen off)
    for each, or raises the feature's AppError (not usable here, not combinable, threshold not
    met...); `attach(session, discounts, order_id)` locks them to the order in the same
    transaction, or raises when another order holds one. Used, released and given back are the
    feature's own paid / closed / refunded listeners."""

    price: Callable[[Session, int, list[int], str, str, Quote], list[tuple[int, int]]]
    attach: Callable[[Session, list[tuple[int, int]], int], None]


_EFFECTS: dict[str, BusinessEffect] = {}
_DISCOUNTS: list[OrderDiscount] = []


def register_order_discount(discount: OrderDiscount) -> None:
    if _DISCOUNTS:
        raise ValueError("order discount registered twice")
    _DISCOUNTS.append(discount)


def order_discount() -> OrderDiscount | None:
    return _DISCOUNTS[0] if _DISCOUNTS else None


_LISTENERS: list[BusinessEffect] = []


def register_effect(business_type: str, effect: BusinessEffect) -> None:
    if business_type in _EFFECTS:
        raise ValueError(f"effect for {business_type!r} registered twice")
    _EFFECTS[business_type] = effect


def register_listener(effect: BusinessEffect) -> None:
    """Runs for every business type (e.g. points per yuan spent)."""
    _LISTENERS.append(effect)


def effects_for(business_type: str) -> list[BusinessEffect]:
    own = _EFFECTS.get(business_type)
    return ([own] if own else []) + list(_LISTENERS)


def quote_hook(business_type: str) -> QuoteHook | None:
    own = _EFFECTS.get(business_type)
    return own.quote if own else None


def refundable_hook(business_type: str) -> RefundableHook | None:
    own = _EFFECTS.get(business_type)
    return own.refundable_total if own else None


def refund_guards(business_type: str) -> list[RefundGuard]:
    """The business effect's and every listener's guards (once the money is back with the payer
    nothing can be refused, so a feature that may refuse says so before the request)."""
    return [e.before_refund for e in effects_for(business_type) if e.before_refund]


def refund_accepted_hooks(business_type: str) -> list[RefundAcceptedHook]:
    return [e.refund_accepted for e in effects_for(business_type) if e.refund_accepted]


def refund_failed_hooks(business_type: str) -> list[RefundFailedHook]:
    return [e.refund_failed for e in effects_for(business_type) if e.refund_failed]


def unregister_effect(business_type: str) -> None:
    """For tests that register a throw-away business type."""
    _EFFECTS.pop(business_type, None)


def known_business_types() -> list[str]:
    return sorted(_EFFECTS)
