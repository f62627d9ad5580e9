"""Jobs of campaigns: the periodic state change (scheduled → running → ended)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.campaigns import service
from backend.platform.jobs import job, periodic


@job("campaigns.advance_states", queue="low")
def advance_states_job(session: Session, slot: int | None = None) -> int:
    return service.advance_states(session)


periodic("campaigns.advance_states", 60)
