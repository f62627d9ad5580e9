"""Fast intake: callbacks that must be answered at once store one row, then a note in Redis.

A callback sender (WeCom) waits a few seconds and retries on anything but `success`, and bursts.
The acknowledgement therefore does the least that keeps the event safe: one autocommitted
INSERT of the raw row (durable before the answer), then the row's id pushed onto a Redis list.
The jobs the event needs are created afterwards, off the request, by `admit`:

- a **pump** thread in every worker process (`flask worker`) pops the ids (BLPOP wakes it at
  once) and admits them: the feature's `admit(session, ids)` creates the outbox jobs in one
  transaction with the row's change of status, so a row is admitted once however many pumps
  see it;
- a **sweep** in the outbox relayer loop admits rows still waiting after `SWEEP_AFTER` seconds:
  the note was never pushed (Redis down while the callback came) or was popped by a pump that
  died before its commit. Nothing acknowledged is lost; Redis only makes it fast.

Without Redis (inline jobs: `make run`, most tests) the request admits its row itself right
after the insert, and the jobs run inline as every other job does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from backend.platform.db import db, unit_of_work, utcnow
from backend.platform.jobs import app_context

log = logging.getLogger("dealerloop.intake")

SWEEP_AFTER = 5.0  # seconds: a note older than this is presumed lost (a pump admits in ms)
PUMP_BATCH = 100
ANNOUNCE_PAUSE = 5.0  # seconds without trying Redis after an announcement failed


@dataclass(frozen=True)
class IntakeSpec:
    name: str
    # admit(session, ids, accepted_before): create the jobs of the given rows (or, with ids None,
    # of every row accepted before the cutoff) that are still waiting; returns how many.
    admit: Callable[[Session, list[int] | None, datetime | None], int]

    @property
    def redis_key(self) -> str:
        return f"dealerloop:intake:{self.name}"


_REGISTRY: dict[str, IntakeSpec] = {}


def register_intake(name: str, admit: Callable[[Session, list[int] | None, datetime | None], int]) -> IntakeSpec:
    spec = _REGISTRY[name] = IntakeSpec(name, admit)
    return spec


def registered_intakes() -> dict[str, IntakeSpec]:
    return dict(_REGISTRY)


def admit_now(app: Any, name: str, ids: list[int] | None, accepted_before: datetime | None = None) -> int:
    """Admit rows in a unit of work of its own (its jobs are handed over after its commit)."""
    spec = _REGISTRY[name]
    with app_context(app):
        session = db.session_factory()
        try:
            with unit_of_work(session):
                admitted = spec.admit(session, ids, accepted_before)
            return admitted
        finally:
            session.close()


_announce_paused_until = 0.0  # monotonic; per process


def announce(app: Any, name: str, row_id: int) -> None:
    """After the row's commit: wake a pump (Redis), or admit right here (inline jobs). Never
    raises: the row is stored, and the sweep admits it if this fails. After a Redis failure the
    process stops trying for ANNOUNCE_PAUSE seconds, so that an outage costs one slow
    acknowledgement (the client's connect retries), not every one; the sweep admits meanwhile."""
    global _announce_paused_until
    redis_client = app.extensions["dealerloop.jobs"].redis
    if redis_client is None:
        try:
            admit_now(app, name, [row_id])
        except Exception:  # noqa: BLE001 - the sweep retries it
            log.exception("intake %s row %s not admitted inline; the sweep will admit it", name, row_id)
        return
    if time.monotonic() < _announce_paused_until:
        return
    try:
        redis_client.rpush(_REGISTRY[name].redis_key, row_id)
    except Exception as exc:  # noqa: BLE001 - the sweep is the fallback for any failure
        _announce_paused_until = time.monotonic() + ANNOUNCE_PAUSE
        log.warning(
            "intake %s row %s not announced (%s); announcements paused for %ss, the sweep admits meanwhile",
            name,
            row_id,
            type(exc).__name__,
            ANNOUNCE_PAUSE,
        )


def sweep(app: Any, older_than: float = SWEEP_AFTER) -> int:
    """Admit every row of every intake that has waited longer than `older_than` seconds."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    return sum(admit_now(app, name, None, cutoff) for name in _REGISTRY)


def pump_once(app: Any, name: str, block_seconds: int = 1) -> int:
    """Wait up to `block_seconds` for announced ids, admit a batch of them; returns how many ids
    were popped (their rows may have been admitted already by a sweep)."""
    spec = _REGISTRY[name]
    redis_client = app.extensions["dealerloop.jobs"].redis
    first = redis_client.blpop([spec.redis_key], timeout=block_seconds)
    if first is None:
        return 0
    more = redis_client.lpop(spec.redis_key, PUMP_BATCH - 1) or []
    ids = sorted({int(first[1]), *(int(x) for x in more)})
    admit_now(app, name, ids)
    return len(ids)


def pump_loop(app: Any, stop: threading.Event, name: str) -> None:
    """Pop announced ids and admit them, a batch at a time, until `stop` is set."""
    while not stop.is_set():
        try:
            pump_once(app, name)
        except Exception:  # Redis away, a database hiccup: the sweep covers what this missed
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
