"""Touchpoint jobs: nightly rebuild check of the profile projection."""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.platform.jobs import job, periodic
from backend.touchpoints.service import rebuild_profiles


@job("touchpoints.rebuild_profiles", queue="low")
def rebuild_profiles_job(session: Session, customer_ids: list[int] | None = None, slot: int | None = None) -> None:
    rebuild_profiles(session, customer_ids)


periodic("touchpoints.rebuild_profiles", every_seconds=86400)
