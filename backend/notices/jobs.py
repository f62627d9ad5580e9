"""The sending job of subscribe notices (see backend/notices/service.py)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.notices import service
from backend.platform.jobs import job


@job(service.SEND_JOB, queue="default")
def send_job(session: Session, notice_id: int) -> str:
    return service.deliver(session, notice_id)
