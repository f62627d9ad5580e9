"""Background jobs of the points feature (registered with backend.platform.jobs.job), and the
payments hooks it registers (mall orders with a cash part; points earned on spend)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from backend.payments.effects import BusinessEffect, register_effect, register_listener
from backend.platform.jobs import job, periodic
from backend.points import earning, mall, service, tiers

log = logging.getLogger("dealerloop.points.jobs")


@job("points.expire", queue="low")
def expire_job(session: Session, slot: int | None = None) -> int:
    return service.expire_due(session)


@job("points.activate_pending", queue="low")
def activate_job(session: Session, slot: int | None = None) -> int:
    return service.activate_due(session)


@job("points.expiry_reminders", queue="low")
def reminders_job(session: Session, slot: int | None = None) -> int:
    return service.record_expiry_reminders(session)


@job("points.tier_review", queue="low")
def tier_review_job(session: Session, slot: int | None = None) -> dict[str, int]:
    return tiers.review_tiers(session)


@job("points.drift_check", queue="low")
def drift_job(session: Session, slot: int | None = None) -> int:
    drift = service.check_drift(session)
    for entry in drift[:100]:
        log.error("points ledger drift: %s", entry)
    return len(drift)


@job("points.bulk_grant", queue="default")
def bulk_grant_job(
    session: Session, batch_key: str, customer_ids: list[int], points: int, reason: str, staff_id: int
) -> int:
    return service.bulk_grant(session, batch_key, customer_ids, points, reason, staff_id)


@job("mall.close_unpaid", queue="low")
def close_unpaid_job(session: Session, slot: int | None = None) -> int:
    return mall.close_stale_unpaid(session)


periodic("points.expire", 3600)
periodic("points.activate_pending", 3600)
periodic("points.expiry_reminders", 86400)
periodic("points.tier_review", 86400)
periodic("points.drift_check", 86400)
periodic("mall.close_unpaid", 300)


def _register_payment_hooks() -> Any:
    register_effect(
        mall.BUSINESS_TYPE,
        BusinessEffect(on_paid=mall.on_paid, on_refunded=mall.on_refunded, on_closed=mall.on_closed, quote=mall.quote),
    )
    register_listener(
        BusinessEffect(
            on_paid=earning.on_paid,
            on_refunded=earning.on_refunded,
            before_refund=earning.refund_guard,
            refund_accepted=earning.take_back_for_accepted_refund,
            refund_failed=earning.give_back_for_failed_refund,
        )
    )


_register_payment_hooks()
