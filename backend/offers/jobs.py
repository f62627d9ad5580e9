"""Jobs of coupons: unused coupons past their validity expire, every ten minutes."""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.offers import service
from backend.platform.jobs import job, periodic


@job("offers.expire_due", queue="low")
def expire_due_job(session: Session, slot: int | None = None) -> int:
    return service.expire_due(session)


periodic("offers.expire_due", 600)
