"""Jobs of consultations: the overdue alert, every minute."""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.consult import service
from backend.platform.jobs import job, periodic


@job("consult.alert_overdue", queue="default")
def alert_overdue_job(session: Session, slot: int | None = None) -> int:
    return service.alert_overdue(session)


periodic("consult.alert_overdue", 60)
