"""Jobs of leads: the per-lead SLA check (delayed by the SLA at submission) and the periodic
sweep that backs it up. Both escalate through one conditional update: once per lead."""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.leads import service
from backend.platform.jobs import job, periodic


@job(service.SLA_JOB, queue="high")
def check_sla(session: Session, lead_id: int) -> bool:
    return service.escalate(session, lead_id)


@job("leads.escalate_overdue", queue="default")
def escalate_overdue(session: Session, slot: int | None = None) -> int:
    return service.escalate_due(session)


periodic("leads.escalate_overdue", 60)
