"""Touchpoint jobs: a nightly check that the profile projection still matches the touchpoints.

The check only reports drift; it never rebuilds on its own, because a rebuild racing with
live `record` calls could overwrite their increments. Repair is `flask profiles rebuild`
during a quiet window (or `rebuild_profiles` for the drifted customers).
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from backend.platform.jobs import job, periodic
from backend.touchpoints.service import profile_drift

log = logging.getLogger("dealerloop.touchpoints")


@job("touchpoints.check_profiles", queue="low")
def check_profiles_job(session: Session, slot: int | None = None) -> None:
    drifted = profile_drift(session)
    if drifted:
        log.error("profile projection drift for %s customer(s), e.g. %s", len(drifted), drifted[:20])


periodic("touchpoints.check_profiles", every_seconds=86400)
