"""Background jobs through a transactional outbox.

`enqueue(session, name, args)` writes an `outbox_job` row in the same transaction as the change
that wants the job. After commit the row is handed to RQ (or, without Redis, run inline). If
Redis is down at that moment the row stays `pending` and the relayer (in every worker) hands it
over when Redis is back. The row id is the RQ job id and execution locks the row and checks it
is not `done`, so a job relayed twice still runs its effect once.

Jobs are registered functions `fn(session, **args)` taking ids and primitives (JSON), never
ORM objects; they flush and never commit — `execute` commits once, like a request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, Text, case, literal, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from backend.platform.db import (
    Base,
    BigId,
    DuplicateKey,
    ExactString,
    after_commit,
    after_commit_pending,
    commit,
    db,
    rollback,
    unique_savepoint,
    utcnow,
)
from backend.platform.logs import job_id_var

log = logging.getLogger("dealerloop.jobs")

QUEUES = ("high", "default", "low")
# How long RQ lets one job run before it kills the work horse (its default is 180 s). The low
# queue's nightly and bulk jobs (a first reconciliation of an advisor with thousands of
# customers, a handover poll that settles thousands of takeovers on the default queue) can need
# more; a kill rolls the job's transaction back and the job is retried, so a limit too short
# would fail it every time.
QUEUE_TIMEOUTS = {"high": 120, "default": 900, "low": 1800}
RETRY_INTERVALS = [10, 30, 120, 600]


class OutboxJob(Base):
    __tablename__ = "outbox_job"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    args: Mapped[dict] = mapped_column(default=dict)
    queue: Mapped[str] = mapped_column(String(16), default="default")
    # Optional business key: the same key enqueues once (periodic slots, per-member pushes).
    dedup_key: Mapped[str | None] = mapped_column(ExactString(191), unique=True, default=None)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # pending|enqueued|done|failed
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    run_after: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


# batch(session, [args, ...]) -> [None | the exception of that item, ...], in the same order
BatchFn = Callable[[Session, list[dict[str, Any]]], list[Exception | None]]
# on_give_up(session, last_error, **the job's args)
GiveUpFn = Callable[..., None]


@dataclass(frozen=True)
class JobSpec:
    name: str
    fn: Callable[..., Any]
    queue: str
    # Several rows of this job in one transaction (`execute_batch`), for jobs that come in
    # bursts and must all be done at once (a burst's welcome messages).
    batch: BatchFn | None = None
    # Called when the job's last try has failed (in the transaction that marks its row
    # `failed`): for a job whose failure must show elsewhere than on the outbox row, e.g. an
    # event that has to reach the dead-letter list an admin replays from.
    on_give_up: GiveUpFn | None = None


_REGISTRY: dict[str, JobSpec] = {}


def job(
    name: str, queue: str = "default", batch: BatchFn | None = None, on_give_up: GiveUpFn | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    assert queue in QUEUES, queue

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[name] = JobSpec(name, fn, queue, batch, on_give_up)
        return fn

    return register


def registered_jobs() -> dict[str, JobSpec]:
    return dict(_REGISTRY)


# ---------------------------------------------------------------------------------------------
# The dispatcher decides what "hand over" means: RQ when Redis is configured, inline otherwise.


class Dispatcher:
    def __init__(self, redis_client: Any | None, max_attempts: int = 5) -> None:
        self.redis = redis_client
        self.max_attempts = max_attempts
        self._queues: dict[str, Any] = {}

    @property
    def inline(self) -> bool:
        return self.redis is None

    def queue(self, name: str) -> Any:
        if name not in self._queues:
            from rq import Queue
            from rq.serializers import JSONSerializer

            self._queues[name] = Queue(name, connection=self.redis, serializer=JSONSerializer)
        return self._queues[name]

    def job_status(self, row_id: int) -> str | None:
        """RQ's status of the row's job ("queued", "started", "failed"...), None when Redis has
        no such job."""
        from rq.exceptions import NoSuchJobError
        from rq.job import Job
        from rq.serializers import JSONSerializer

        try:
            job = Job.fetch(f"outbox-{row_id}", connection=self.redis, serializer=JSONSerializer)
        except NoSuchJobError:
            return None
        status = job.get_status(refresh=False)
        return str(status.value if hasattr(status, "value") else status) if status else None

    def waiting_job_ids(self, queue: str) -> set[str]:
        """The ids of the jobs in an RQ queue and in its intermediate list, read together (one
        MULTI: a job a worker moves from one to the other meanwhile is seen in one of them).

        A worker of a single queue pops with LMOVE into `<queue key>:intermediate` (RQ 3), and a
        job left there (the worker stopped before starting it) is RQ's own to clean up: its
        maintenance fails it after a minute, then retries it or gives it up."""
        q = self.queue(queue)
        pipe = self.redis.pipeline(transaction=True)
        pipe.lrange(q.key, 0, -1)
        pipe.lrange(q.intermediate_queue_key, 0, -1)
        waiting, popped = pipe.execute()
        return {job_id.decode() if isinstance(job_id, bytes) else job_id for job_id in waiting + popped}

    def in_queue(self, row_id: int, queue: str) -> bool:
        """Whether the row's job is in its RQ queue or that queue's intermediate list now (LPOS,
        a scan of each: for the few jobs a snapshot of `waiting_job_ids` missed)."""
        q, job_id = self.queue(queue), f"outbox-{row_id}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.lpos(q.key, job_id)
        pipe.lpos(q.intermediate_queue_key, job_id)
        return any(position is not None for position in pipe.execute())

    def hand_over(self, row_id: int, queue: str) -> None:
        """Push one outbox row to RQ. Raises if Redis is unreachable."""
        from rq import Retry

        retries = max(self.max_attempts - 1, 0)
        self.queue(queue).enqueue_call(
            "backend.platform.jobs.execute",
            args=(row_id,),
            job_id=f"outbox-{row_id}",
            timeout=QUEUE_TIMEOUTS[queue],
            retry=Retry(max=retries, interval=RETRY_INTERVALS[:retries] or 0) if retries else None,
            result_ttl=3600,
            failure_ttl=7 * 86400,
        )


def _dispatcher() -> Dispatcher:
    from flask import current_app

    return current_app.extensions["dealerloop.jobs"]


def enqueue(
    session: Session,
    name: str,
    args: dict[str, Any] | None = None,
    *,
    dedup_key: str | None = None,
    delay: timedelta | None = None,
    key_is_new: bool = False,
) -> OutboxJob | None:
    """Record a job in the caller's transaction; it is handed over after commit.

    With a `dedup_key` that was already used, nothing is recorded and None is returned.
    `key_is_new`: the caller has just created what the key is made of (a row inserted in this
    transaction), so no earlier job can hold it; the SAVEPOINT that guards a duplicate is
    skipped (a collision would be a bug, and raises).
    """
    row = _outbox_row(name, args or {}, dedup_key, utcnow() + delay if delay else None)
    if dedup_key is None or key_is_new:
        session.add(row)
        session.flush()
    else:
        try:
            with unique_savepoint(session):
                session.add(row)
        except DuplicateKey:
            return None
    if delay is None:
        _relay_after_commit(session, row)
    return row


def enqueue_new(session: Session, wanted: list[tuple[str, dict[str, Any], str]], delay: timedelta) -> list[int]:
    """Record several delayed jobs — (name, args, dedup key) — whose keys no job can hold yet
    (the caller has just created what they are made of), with one INSERT for all; returns
    their ids in order. For an intake's admission of a burst: no SAVEPOINT per job and no
    round trip per row. The relayer hands them over when their delay is up, unless someone
    runs them before."""
    run_after = utcnow() + delay
    rows = [_outbox_row(name, args, key, run_after) for name, args, key in wanted]
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows]


def _outbox_row(name: str, args: dict[str, Any], dedup_key: str | None, run_after: datetime | None) -> OutboxJob:
    spec = _REGISTRY.get(name)
    if spec is None:
        raise KeyError(f"unknown job {name!r}")
    return OutboxJob(name=name, args=args, queue=spec.queue, dedup_key=dedup_key, run_after=run_after)


_RELAY_IDS_KEY = "dealerloop.relay_ids"


def _relay_after_commit(session: Session, row: OutboxJob) -> None:
    """Every job of the unit of work is handed over together right after its commit, with one
    status update and no read: the rows were written by this commit, so they are pending (a
    relayer loop handing one over at the same moment is harmless — execution claims the row)."""
    entry = session.info.get(_RELAY_IDS_KEY)
    if entry is None or not after_commit_pending(session, entry[0]):  # first job, or rolled back since
        dispatcher = _dispatcher()
        from flask import current_app

        app = current_app._get_current_object()  # type: ignore[attr-defined]
        rows: list[tuple[int, str]] = []

        def hand_over_all() -> None:
            session.info.pop(_RELAY_IDS_KEY, None)
            _hand_over(app, dispatcher, rows)

        entry = session.info[_RELAY_IDS_KEY] = (hand_over_all, rows)
        after_commit(session, hand_over_all)
    entry[1].append((row.id, row.queue))


def relay(ids: list[int] | None = None, *, app: Any = None, dispatcher: Dispatcher | None = None) -> int:
    """Hand pending outbox rows over (the given ids, or every due pending row). Returns how many."""
    from flask import current_app

    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    dispatcher = dispatcher or app.extensions["dealerloop.jobs"]
    with app.app_context():
        session = db.session_factory()
        try:
            stmt = select(OutboxJob.id, OutboxJob.queue).where(OutboxJob.status == "pending")
            if ids is not None:
                stmt = stmt.where(OutboxJob.id.in_(ids))
            else:
                now = utcnow()
                stmt = stmt.where((OutboxJob.run_after.is_(None)) | (OutboxJob.run_after <= now))
            rows = [(r.id, r.queue) for r in session.execute(stmt.order_by(OutboxJob.id).limit(500))]
            session.rollback()
        finally:
            session.close()
        return _hand_over(app, dispatcher, rows)


def _hand_over(app: Any, dispatcher: Dispatcher, rows: list[tuple[int, str]]) -> int:
    """Run (inline) or push to RQ pending rows given as (id, queue); marks the pushed ones."""
    with app.app_context():
        if dispatcher.inline:
            for row_id, _queue in rows:
                try:
                    execute(row_id, app=app)
                except Exception:  # recorded on the row by execute; the next row still runs
                    log.exception("inline job %s failed", row_id)
            return len(rows)
        handed: list[int] = []
        # The most urgent queue first (a welcome message has 20 seconds).
        for row_id, queue in sorted(rows, key=lambda r: (QUEUES.index(r[1]) if r[1] in QUEUES else len(QUEUES), r[0])):
            try:
                dispatcher.hand_over(row_id, queue)
            except Exception as exc:  # Redis down: the row stays pending for the relayer
                log.warning("outbox %s not handed to Redis (%s); it stays pending", row_id, type(exc).__name__)
                break
            handed.append(row_id)
        if handed:
            _mark(app, handed, status="enqueued", enqueued_at=utcnow(), only_if="pending")
        return len(handed)


def recover_lost(app: Any, dispatcher: Dispatcher | None = None, lease_seconds: int = 600) -> int:
    """Hand over again the rows Redis lost after taking them (a restart without persistence, a
    failover, a flush) or a stopping worker dropped: `enqueued` for longer than the lease and no
    RQ job by that id, or one still `queued` that is in no queue. Safe to repeat — execution
    skips a row that is already done.

    A row still `enqueued` whose RQ job has failed was never finished nor failed by us: the
    worker running it died every time (killed: out of memory, a deploy), RQ retried the
    abandoned job and gave up. It is given up here too, so that its give-up hook shows it (a
    WeCom event becomes a dead letter an admin can see and replay) instead of staying taken."""
    dispatcher = dispatcher or app.extensions["dealerloop.jobs"]
    if dispatcher.inline:
        return 0
    with app.app_context():
        session = db.session_factory()
        try:
            cutoff = utcnow() - timedelta(seconds=lease_seconds)
            rows = session.execute(
                select(OutboxJob.id, OutboxJob.queue)
                .where(OutboxJob.status == "enqueued", OutboxJob.enqueued_at < cutoff)
                .order_by(OutboxJob.id)
                .limit(500)
            ).all()
            session.rollback()
        finally:
            session.close()
        recovered = 0
        # Each queue's ids read once per run, when a `queued` row first asks: under a backlog
        # hundreds of rows are past their lease and still waiting, and a scan of the queue for
        # each would be as many passes over a long list.
        waiting: dict[str, set[str]] = {}
        for row_id, queue in rows:
            status = dispatcher.job_status(row_id)
            if status == "failed":
                _give_up_lost(app, row_id)
                continue
            # `queued` but in no queue: a worker popped it and stopped before starting it (RQ's
            # warm shutdown raises out of the dequeue when the worker is not yet marked busy;
            # seen once in ten SIGTERMs with jobs flowing). Nobody will run it: it is lost too.
            if status == "queued":
                if queue not in waiting:
                    waiting[queue] = dispatcher.waiting_job_ids(queue)
                if f"outbox-{row_id}" in waiting[queue]:
                    continue
                # Missing from the snapshot: it may have entered since (an RQ retry falling
                # due) or just been taken by a worker of several queues; look again, exactly.
                if dispatcher.in_queue(row_id, queue) or dispatcher.job_status(row_id) != "queued":
                    continue
            elif status is not None:
                continue
            log.warning("outbox %s was lost by Redis; handing it over again", row_id)
            dispatcher.hand_over(row_id, queue)
            _mark(app, row_id, status="enqueued", enqueued_at=utcnow(), only_if="enqueued")
            recovered += 1
        return recovered


def _mark(app: Any, row_id: int | list[int], only_if: str | None = None, **values: Any) -> None:
    """Set `values` on the rows (those still in status `only_if`, when given).

    The rows are found by primary key alone and the status is checked in the assignments: with
    the status in the WHERE clause, MariaDB may go through the status index, and an RQ worker
    already running one of the jobs (it was handed over just before this) then deadlocks with
    this update."""
    session = db.session_factory()
    try:
        ids = row_id if isinstance(row_id, list) else [row_id]
        assignments = list(values.items())
        if only_if:
            keep = OutboxJob.status == only_if
            # MariaDB assigns left to right and later assignments see earlier ones: the status,
            # which the guard reads, goes last.
            assignments.sort(key=lambda item: item[0] == "status")
            columns = {name: getattr(OutboxJob, name) for name, _value in assignments}
            assignments = [
                # typed as the column, so that its bind processing (UTCDateTime) still applies
                (name, case((keep, literal(value, type_=columns[name].type)), else_=columns[name]))
                for name, value in assignments
            ]
        stmt = (
            update(OutboxJob)
            .where(OutboxJob.id.in_(ids))
            .ordered_values(*((getattr(OutboxJob, name), value) for name, value in assignments))
        )
        session.execute(stmt)
        session.commit()
    finally:
        session.close()


_worker_app: Any = None


def set_worker_app(app: Any) -> None:
    global _worker_app
    _worker_app = app


def execute(row_id: int, app: Any = None) -> str:
    """Run one outbox job exactly once (entry point for RQ and for inline mode)."""
    from flask import current_app, has_app_context

    if app is None:
        app = current_app._get_current_object() if has_app_context() else _worker_app  # type: ignore[attr-defined]
    if app is None:
        raise RuntimeError("no Flask app for the job; start workers with `flask worker`")
    with app.app_context():
        token = job_id_var.set(f"outbox-{row_id}")
        session = db.session_factory()
        try:
            row = session.scalars(select(OutboxJob).where(OutboxJob.id == row_id).with_for_update()).one_or_none()
            if row is None or row.status == "done":
                session.rollback()
                return "skipped"
            spec = _REGISTRY[row.name]
            spec.fn(session, **row.args)
            row.status = "done"
            row.attempts += 1
            row.finished_at = utcnow()
            row.last_error = None
            commit(session)
            return "done"
        except Exception as exc:
            rollback(session)
            _record_failure(app, row_id, exc)
            raise
        finally:
            session.close()
            job_id_var.reset(token)


def execute_batch(row_ids: list[int], app: Any) -> int:
    """Run outbox rows of batchable jobs together: each job's rows in one transaction and one
    call of its `batch` function, which does the items' shared reads and writes once. Returns
    how many rows were done.

    The rows are locked with SKIP LOCKED (one that someone runs now is theirs) and held until
    the commit, so the RQ copy of a row — handed over by the relayer if this took longer than
    the row's delay — waits and then finds it done. An item that failed is recorded on its row
    (attempts, error), which stays pending: the relayer hands it to RQ, which retries it alone.
    When the batch fails as a whole, nothing of it is kept and every row is left to RQ in the
    same way. Rows of jobs without a batch function run one by one."""
    done = 0
    with app.app_context():
        dispatcher: Dispatcher = app.extensions["dealerloop.jobs"]
        session = db.session_factory()
        try:
            # By primary key alone, the status checked here: a condition on the status lets
            # MariaDB take the rows through the status index, locking other jobs' entries in it
            # (deadlocks with jobs finishing meanwhile).
            locked = session.scalars(
                select(OutboxJob)
                .where(OutboxJob.id.in_(row_ids))
                .order_by(OutboxJob.id)
                .with_for_update(skip_locked=True)
            ).all()
            rows = [row for row in locked if row.status == "pending"]
            single = [row.id for row in rows if _REGISTRY[row.name].batch is None]
            groups: dict[str, list[OutboxJob]] = {}
            for row in rows:
                if _REGISTRY[row.name].batch is not None:
                    groups.setdefault(row.name, []).append(row)
            now = utcnow()
            for name, group in groups.items():
                batch = _REGISTRY[name].batch
                assert batch is not None
                outcomes = batch(session, [dict(row.args) for row in group])
                for row, error in zip(group, outcomes, strict=True):
                    row.attempts += 1
                    if error is None:
                        row.status, row.finished_at, row.last_error = "done", now, None
                        done += 1
                        continue
                    row.last_error = f"{type(error).__name__}: {error}"[:4000]
                    if row.attempts >= dispatcher.max_attempts:
                        _give_up(session, row)
                    log.warning("job %s (%s) failed in its batch: %s", row.id, name, row.last_error)
            commit(session)
        except Exception:
            rollback(session)
            log.exception("batch of jobs %s failed; its rows are left to the outbox", row_ids)
            return 0
        finally:
            session.close()
    for row_id in single:
        try:
            execute(row_id, app=app)
            done += 1
        except Exception:  # recorded on the row by execute
            log.exception("job %s failed", row_id)
    return done


def _record_failure(app: Any, row_id: int, exc: Exception) -> None:
    dispatcher: Dispatcher = app.extensions["dealerloop.jobs"]
    session = db.session_factory()
    try:
        row = session.get(OutboxJob, row_id)
        if row is None:
            return
        row.attempts += 1
        row.last_error = f"{type(exc).__name__}: {exc}"[:4000]
        if row.attempts >= dispatcher.max_attempts:
            _give_up(session, row)
        session.commit()
        log.warning("job %s (%s) failed, attempt %s: %s", row_id, row.name, row.attempts, row.last_error)
    finally:
        session.close()


def _give_up_lost(app: Any, row_id: int) -> None:
    session = db.session_factory()
    try:
        row = session.scalars(select(OutboxJob).where(OutboxJob.id == row_id).with_for_update()).one_or_none()
        if row is None or row.status != "enqueued":
            session.rollback()
            return
        row.attempts = max(row.attempts, app.extensions["dealerloop.jobs"].max_attempts)
        row.last_error = "the worker running it died on every try (killed before it could finish or fail)"
        _give_up(session, row)
        session.commit()
        log.error("job %s (%s): %s; given up", row_id, row.name, row.last_error)
    finally:
        session.close()


def _give_up(session: Session, row: OutboxJob) -> None:
    """The row's last try failed: mark it `failed` and let its job record that where it shows.
    A failing hook is logged and costs only itself (its savepoint): the row is failed anyway."""
    row.status = "failed"
    spec = _REGISTRY.get(row.name)
    if spec is None or spec.on_give_up is None:
        return
    try:
        with session.begin_nested():
            spec.on_give_up(session, row.last_error or "", **row.args)
    except Exception:  # noqa: BLE001 - the outbox row keeps the failure either way
        log.exception("job %s (%s): its give-up hook failed", row.id, row.name)


# ---------------------------------------------------------------------------------------------
# Periodic jobs: every worker ticks, the database decides who fires.


@dataclass(frozen=True)
class Periodic:
    name: str  # a registered job
    every_seconds: int


_PERIODIC: list[Periodic] = []


def periodic(job_name: str, every_seconds: int) -> None:
    _PERIODIC.append(Periodic(job_name, every_seconds))


def tick_periodic(app: Any, now: datetime | None = None) -> list[str]:
    """Enqueue each periodic job whose slot has begun. The dedup key (job, slot start) makes
    the database the arbiter: however many workers tick, one row per slot is written."""
    now = now or utcnow()
    fired = []
    with app.app_context():
        for p in _PERIODIC:
            slot = int(now.timestamp()) // p.every_seconds * p.every_seconds
            session = db.session_factory()
            try:
                row = enqueue(session, p.name, {"slot": slot}, dedup_key=f"periodic:{p.name}:{slot}")
                commit(session)
                if row is not None:
                    fired.append(p.name)
            except Exception:
                rollback(session)
                log.exception("periodic tick for %s failed", p.name)
            finally:
                session.close()
    return fired


def relayer_loop(app: Any, stop: threading.Event, interval: float = 2.0) -> None:
    """Runs in each worker: fire due periodic jobs, admit intake rows whose note was lost, relay
    rows left pending (a Redis outage, a delay that has come due, an inline job to retry) and
    recover rows Redis lost."""
    from backend.platform import intake

    while not stop.is_set():
        try:
            tick_periodic(app)
            intake.sweep(app)
            relay(app=app)
            recover_lost(app)
        except Exception:
            log.exception("relayer iteration failed")
        stop.wait(interval)


def start_worker_threads(app: Any, stop: threading.Event) -> list[threading.Thread]:
    """The threads beside an RQ worker: the outbox relayer and the fast-intake pumps."""
    from backend.platform import intake

    relayer = threading.Thread(target=relayer_loop, args=(app, stop), daemon=True, name="outbox-relayer")
    relayer.start()
    return [relayer, *intake.start_pumps(app, stop)]
