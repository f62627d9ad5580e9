"""Jobs of coupons: unused coupons past their validity expire, every ten minutes."""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.offers import service
from backend.payments.effects import BusinessEffect, OrderDiscount, register_listener, register_order_discount
from backend.platform.jobs import job, periodic


@job("offers.expire_due", queue="low")
def expire_due_job(session: Session, slot: int | None = None) -> int:
    return service.expire_due(session)


periodic("offers.expire_due", 600)

# Coupons on payment orders, whatever the business type: used when paid, released when closed
# or refunded in full.
register_listener(
    BusinessEffect(
        on_paid=service.on_order_paid, on_closed=service.on_order_closed, on_refunded=service.on_order_refunded
    )
)
register_order_discount(OrderDiscount(price=service.price_for_order, attach=service.lock_to_order))
