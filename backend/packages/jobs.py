"""Jobs of service packages, and the payments hooks they register (business type
"service_package")."""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.packages import service
from backend.payments.effects import BusinessEffect, register_effect
from backend.platform.jobs import job, periodic


@job("packages.expire", queue="low")
def expire_job(session: Session, slot: int | None = None) -> int:
    return service.expire_due(session)


@job("packages.close_unpaid", queue="low")
def close_unpaid_job(session: Session, slot: int | None = None) -> int:
    return service.close_stale(session)


periodic("packages.expire", 3600)
periodic("packages.close_unpaid", 300)

register_effect(
    service.BUSINESS_TYPE,
    BusinessEffect(
        on_paid=service.on_paid,
        on_refunded=service.on_refunded,
        on_closed=service.on_closed,
        quote=service.quote,
        refundable_total=service.refundable_total_fen,
    ),
)
