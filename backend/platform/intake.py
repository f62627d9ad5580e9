"""Fast intake: callbacks that must be answered at once store one row and answer.

A callback sender (WeCom) waits a few seconds, retries on anything but `success`, and bursts.
The acknowledgement therefore does the least that keeps the event safe: one autocommitted
INSERT of the raw row, durable before the answer — no job rows, no Redis. The jobs the event
needs are created afterwards by the feature's `admit(session, ids, accepted_before)`, which
creates them in one transaction with the row's change of status, taking the rows with
`FOR UPDATE SKIP LOCKED`, so each row is admitted once however many admitters run:

- a **pump** thread in every worker process (`flask worker`) admits every waiting row, and
  polls again after POLL_SECONDS when there was none;
- the outbox relayer loop **sweeps** rows waiting longer than SWEEP_AFTER seconds (a worker
  without pumps: inline jobs);
- without Redis (inline jobs: `make run`, most tests) the request admits its row itself right
  after the insert, and the jobs run inline as every other job does.

Redis being away therefore changes nothing for the acknowledgement: the rows wait in the
database, and their jobs wait in the outbox until the relayer can hand them over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from backend.platform.db import db, unit_of_work, utcnow

log = logging.getLogger("dealerloop.intake")

POLL_SECONDS = 0.05  # a pump's pause when nothing waited: one indexed SELECT per pause
SWEEP_AFTER = 5.0  # seconds: a row waiting this long has no pump looking at it
# A batch holds its jobs' rows until it commits: the relayer's fallback copy, an RQ worker and
# the relayer itself wait on them meanwhile, so a big admission's urgent jobs go in batches.
URGENT_BATCH = 50
URGENT_FALLBACK = timedelta(seconds=2)  # an admission's job nobody ran or handed over by then goes to RQ
HAND_OVER_CHUNK = 500  # `relay` takes at most this many rows per call


@dataclass(frozen=True)
class Admission:
    events: int  # rows admitted
    # Outbox rows to run at once, here (a welcome code lives 20 s), then the rows to hand to
    # RQ once they are done (the events' processing, which must not take the CPU from them).
    # All are created with a delay, so the relayer hands them over if nobody did meanwhile.
    urgent_job_ids: list[int] = field(default_factory=list)
    deferred_job_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class IntakeSpec:
    name: str
    # admit(session, ids, accepted_before): create the jobs of the given rows (or, with ids None,
    # of the rows accepted before the cutoff, or of all when it is None too) that are still
    # waiting.
    admit: Callable[[Session, list[int] | None, datetime | None], Admission]


_REGISTRY: dict[str, IntakeSpec] = {}


def register_intake(name: str, admit: Callable[[Session, list[int] | None, datetime | None], Admission]) -> IntakeSpec:
    spec = _REGISTRY[name] = IntakeSpec(name, admit)
    return spec


def registered_intakes() -> dict[str, IntakeSpec]:
    return dict(_REGISTRY)


def admit_now(app: Any, name: str, ids: list[int] | None, accepted_before: datetime | None = None) -> Admission:
    """Admit rows in a unit of work of its own (its jobs are handed over after its commit)."""
    spec = _REGISTRY[name]
    with app.app_context():
        session = db.session_factory()
        try:
            with unit_of_work(session):
                admission = spec.admit(session, ids, accepted_before)
            return admission
        finally:
            session.close()


def run_admitted(app: Any, admission: Admission) -> None:
    """Run an admission's urgent jobs (`run_urgent`), then hand its deferred jobs over."""
    run_urgent(app, admission)
    hand_over(app, admission.deferred_job_ids)


def run_urgent(app: Any, admission: Admission) -> None:
    """Run an admission's urgent jobs now, together (`execute_batch`: a burst's welcomes in one
    transaction, their WeCom calls side by side). A failure is recorded on the job's row and the
    outbox retries it like any job."""
    from backend.platform.jobs import execute_batch

    urgent = admission.urgent_job_ids
    for start in range(0, len(urgent), URGENT_BATCH):
        execute_batch(urgent[start : start + URGENT_BATCH], app=app)


def hand_over(app: Any, job_ids: list[int]) -> None:
    """Hand these outbox rows to RQ (those still pending), in chunks `relay` takes whole."""
    from backend.platform.jobs import relay

    for start in range(0, len(job_ids), HAND_OVER_CHUNK):
        relay(job_ids[start : start + HAND_OVER_CHUNK], app=app)


def announce(app: Any, name: str, row_id: int) -> None:
    """After the row's insert: with inline jobs, admit it (and run its jobs) right here; with
    workers, nothing — a pump admits it within POLL_SECONDS. Never raises: the row is stored,
    and a pump or the sweep admits it if this fails."""
    if app.extensions["dealerloop.jobs"].redis is not None:
        return
    try:
        run_admitted(app, admit_now(app, name, [row_id]))
    except Exception:  # noqa: BLE001 - the sweep retries it
        log.exception("intake %s row %s not admitted inline; the sweep will admit it", name, row_id)


def sweep(app: Any, older_than: float = SWEEP_AFTER) -> int:
    """Admit every row of every intake that has waited longer than `older_than` seconds (their
    jobs are left to the relayer, which hands them over when their delay is up)."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    return sum(admit_now(app, name, None, cutoff).events for name in _REGISTRY)


HELD_MAX = 500  # processing jobs a pump holds back at most (see pump_loop)


def pump_once(app: Any, name: str, held: list[int] | None = None) -> int:
    """Admit every row waiting now (a batch of at most the feature's limit) and run their urgent
    jobs; returns how many rows were admitted. The other jobs are handed over at once, or,
    given `held` (the pump loop's), held back with it until an iteration admits nothing."""
    admission = admit_now(app, name, None)
    if held is None:
        run_admitted(app, admission)
        return admission.events
    run_urgent(app, admission)
    held.extend(admission.deferred_job_ids)
    # Under traffic that never pauses, an iteration with nothing waiting may not come: past
    # HELD_MAX the held jobs go anyway (the relayer would hand them over when due in any case).
    if held and (admission.events == 0 or len(held) >= HELD_MAX):
        hand_over(app, held)
        held.clear()
    return admission.events


def pump_loop(app: Any, stop: threading.Event, name: str) -> None:
    """Admit waiting rows until `stop` is set; poll again after POLL_SECONDS when none waited.
    While one admission's urgent jobs run, the next rows gather: under a burst the batches grow
    instead of the queue.

    The admissions' other jobs (a WeCom event's processing, about 50 statements) are held back
    until an iteration finds nothing waiting: handed to RQ at once, they ran beside the burst's
    later welcomes and took the CPU those needed within their codes' 20 s (bench
    `wecomcallback`: welcome p99 1.6-2.2 s with them alongside, 0.8-1.3 s held back). They wait
    no longer than URGENT_FALLBACK and the relayer's next pass: their rows come due then, and
    the relayer hands them over itself if the burst lasts."""
    held: list[int] = []
    while not stop.is_set():
        try:
            if pump_once(app, name, held) == 0:
                stop.wait(POLL_SECONDS)
        except Exception:  # a database hiccup: try again shortly
            log.exception("intake pump %s iteration failed", name)
            stop.wait(1.0)


def start_pumps(app: Any, stop: threading.Event) -> list[threading.Thread]:
    """One pump thread per registered intake (a worker with Redis)."""
    threads = [
        threading.Thread(target=pump_loop, args=(app, stop, name), daemon=True, name=f"intake-pump-{name}")
        for name in _REGISTRY
    ]
    for thread in threads:
        thread.start()
    return threads
