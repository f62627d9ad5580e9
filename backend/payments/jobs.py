"""Background jobs of the payments feature.

- `payments.run_effects` — a paid / refunded / closed order's business effects, enqueued in the
  transaction that changed the order (dedup key per order and event: once).
- `payments.close_expired` (every minute) — close open orders past their expiry (close API).
- `payments.sync_pending` (every 5 minutes) — query open prepaid orders and refunds in flight
  whose notification has not come.
- `payments.reconcile_daily` (hourly) — after 10:00 China time, reconcile yesterday's trade bill
  once (a failed day is retried on the next tick).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.payments import service
from backend.payments.models import PaymentReconciliation
from backend.platform.db import utcnow
from backend.platform.jobs import job, periodic


@job("payments.run_effects", queue="high")
def run_effects(session: Session, order_id: int, event: str, refund_id: int | None = None) -> None:
    service.run_effects(session, order_id, event, refund_id)


@job("payments.close_expired")
def close_expired(session: Session, slot: int | None = None) -> None:
    service.close_expired(session, service.gateway())


@job("payments.sync_pending")
def sync_pending(session: Session, slot: int | None = None) -> None:
    service.sync_pending(session, service.gateway())


@job("payments.reconcile_daily", queue="low")
def reconcile_daily(session: Session, slot: int | None = None, **_: Any) -> None:
    now = utcnow().astimezone(service.CHINA_TZ)
    if now.hour < 10:  # WeChat Pay generates yesterday's bill after 10:00
        return
    bill_date = now.date() - timedelta(days=1)
    done = session.scalar(
        select(PaymentReconciliation.id).where(
            PaymentReconciliation.bill_date == bill_date, PaymentReconciliation.status == "done"
        )
    )
    if done is None:
        service.reconcile(session, service.gateway(), bill_date)


periodic("payments.close_expired", 60)
periodic("payments.sync_pending", 300)
periodic("payments.reconcile_daily", 3600)
