"""Jobs and nightly schedules of the WeCom operations room (handover, reconciliation, behaviour
figures, directory). Periodic slots start at 00:00 UTC = 08:00 China time: after WeCom's
behaviour figures for the previous day are complete (they are zeros before about 06:00)."""

from __future__ import annotations

from datetime import date

from sqlalchemy.orm import Session

from backend.platform.jobs import enqueue, job, periodic
from backend.wecom import behaviour, directory, handover, reconcile
from backend.wecom.service import corp_ids

DAY = 86400


@job(handover.SUBMIT_JOB, queue="default")
def handover_submit(session: Session, handover_id: int) -> None:
    handover.submit_chunk(session, handover_id)


@job(handover.COLLECT_JOB, queue="default")
def handover_collect(session: Session, handover_id: int) -> None:
    handover.collect(session, handover_id)


@job(handover.POLL_JOB, queue="default")
def handover_poll(session: Session, handover_id: int) -> None:
    handover.poll(session, handover_id)


def for_each_corp(session: Session, job_name: str, slot: int | None, corp_id: str | None) -> str | None:
    """The corp a run is for. A periodic run names none: it becomes one run per configured
    corp (each with its own job: one corp's failure is retried without redoing the others')."""
    if corp_id:
        return corp_id
    for corp in corp_ids():
        enqueue(session, job_name, {"slot": slot, "corp_id": corp}, dedup_key=f"{job_name}:{corp}:{slot}")
    return None


@job(reconcile.ALL_JOB, queue="low")
def reconcile_all(session: Session, slot: int | None = None, corp_id: str | None = None) -> None:
    corp = for_each_corp(session, reconcile.ALL_JOB, slot, corp_id)
    if corp:
        reconcile.reconcile_all(session, corp, run=str(slot or "manual"))


@job(reconcile.ADVISOR_JOB, queue="low")
def reconcile_advisor(session: Session, corp_id: str, userid: str) -> None:
    reconcile.reconcile_advisor(session, corp_id, userid)


@job(behaviour.ALL_JOB, queue="low")
def behaviour_pull_all(session: Session, slot: int | None = None, corp_id: str | None = None) -> None:
    corp = for_each_corp(session, behaviour.ALL_JOB, slot, corp_id)
    if corp:
        behaviour.pull_all(session, corp, run=str(slot or "manual"))


@job(behaviour.PULL_JOB, queue="low")
def behaviour_pull(session: Session, corp_id: str, userid: str, start: str, end: str) -> None:
    behaviour.pull(session, corp_id, userid, date.fromisoformat(start), date.fromisoformat(end))


@job(directory.SYNC_JOB, queue="low")
def directory_sync(session: Session, slot: int | None = None, corp_id: str | None = None) -> None:
    corp = for_each_corp(session, directory.SYNC_JOB, slot, corp_id)
    if corp:
        directory.sync_directory(session, corp)


periodic(directory.SYNC_JOB, DAY)
periodic(reconcile.ALL_JOB, DAY)
periodic(behaviour.ALL_JOB, DAY)
