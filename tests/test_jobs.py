"""The transactional outbox: jobs run after commit, survive a Redis outage, never run twice."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.platform import jobs
from backend.platform.db import commit, db, rollback
from backend.platform.jobs import Dispatcher, OutboxJob, enqueue, execute, job, relay
from backend.touchpoints.models import Touchpoint
from backend.touchpoints.service import record

pytestmark = [pytest.mark.usefixtures("app_ctx")]  # these call services that need the app

RUNS: list[dict] = []


@job("test.note_run")
def note_run(session: Any, customer_id: int, tag: str) -> None:
    # A fresh source_ref per execution: if the job ever ran twice, two rows would exist.
    record(
        session,
        customer_id=customer_id,
        kind="follow_up_done",
        channel="system",
        source="test_job",
        source_ref=f"run:{tag}:{uuid.uuid4().hex}",
    )


@job("test.flaky")
def flaky(session: Any, fail_times: int, key: str) -> None:
    RUNS.append({"key": key})
    if sum(1 for r in RUNS if r["key"] == key) <= fail_times:
        raise RuntimeError("transient failure")


def _runs(session: Any, tag: str) -> int:
    return session.scalar(
        select(func.count()).select_from(Touchpoint).where(Touchpoint.source_ref.like(f"run:{tag}:%"))
    )


def test_inline_job_runs_only_after_commit(app: Any, db_session: Any, make_customer: Any) -> None:
    c = make_customer()
    row = enqueue(db_session, "test.note_run", {"customer_id": c.id, "tag": "a"})
    assert _runs(db_session, "a") == 0  # not before commit
    commit(db_session)
    db_session.expire_all()
    assert _runs(db_session, "a") == 1
    assert db_session.get(OutboxJob, row.id).status == "done"


def test_rolled_back_change_never_runs_its_job(app: Any, db_session: Any, make_customer: Any) -> None:
    c = make_customer()
    enqueue(db_session, "test.note_run", {"customer_id": c.id, "tag": "b"})
    rollback(db_session)
    assert _runs(db_session, "b") == 0
    assert db_session.scalar(select(func.count()).select_from(OutboxJob)) == 0


def test_dedup_key_enqueues_once(app: Any, db_session: Any, make_customer: Any) -> None:
    c = make_customer()
    assert enqueue(db_session, "test.note_run", {"customer_id": c.id, "tag": "d"}, dedup_key="push:1:member:7")
    assert enqueue(db_session, "test.note_run", {"customer_id": c.id, "tag": "d"}, dedup_key="push:1:member:7") is None
    commit(db_session)
    assert _runs(db_session, "d") == 1


def test_failed_job_is_retried_and_left_failed_after_max_attempts(app: Any, db_session: Any) -> None:
    row = enqueue(db_session, "test.flaky", {"fail_times": 99, "key": "f1"})
    commit(db_session)  # inline attempt 1 fails (logged, recorded)
    for _ in range(10):
        relay()
    db_session.expire_all()
    final = db_session.get(OutboxJob, row.id)
    assert final.status == "failed"
    assert final.attempts == app.config["JOB_MAX_ATTEMPTS"]
    assert "transient failure" in final.last_error


def test_transient_failure_then_success_runs_effect_once(app: Any, db_session: Any) -> None:
    row = enqueue(db_session, "test.flaky", {"fail_times": 1, "key": "f2"})
    commit(db_session)
    assert relay() == 1
    db_session.expire_all()
    done = db_session.get(OutboxJob, row.id)
    assert (done.status, done.attempts) == ("done", 2)
    assert execute(row.id) == "skipped"


@pytest.fixture
def redis_client(redis_url: str) -> Any:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.mark.redis
def test_redis_outage_keeps_jobs_in_the_outbox_until_relayed(
    app: Any, db_session: Any, make_customer: Any, redis_client: Any, monkeypatch: Any
) -> None:
    import redis
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    c = make_customer()
    down = Dispatcher(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2), max_attempts=3)
    monkeypatch.setitem(app.extensions, "dealerloop.jobs", down)
    row = enqueue(db_session, "test.note_run", {"customer_id": c.id, "tag": "r"})
    commit(db_session)  # the hand-over fails: Redis is down
    db_session.expire_all()
    assert db_session.get(OutboxJob, row.id).status == "pending"
    assert _runs(db_session, "r") == 0

    up = Dispatcher(redis_client, max_attempts=3)
    monkeypatch.setitem(app.extensions, "dealerloop.jobs", up)
    assert relay() == 1
    assert relay() == 0  # nothing pending any more
    # A relayer that raced (handed the same row over twice) cannot make it run twice:
    up.hand_over(row.id, "default")
    SimpleWorker(list(jobs.QUEUES), connection=redis_client, serializer=JSONSerializer).work(burst=True)
    db_session.expire_all()
    assert db_session.get(OutboxJob, row.id).status == "done"
    assert _runs(db_session, "r") == 1


@job("test.urgent", queue="high")
def urgent_note(session: Any, customer_id: int, tag: str) -> None:
    note_run(session, customer_id, tag)


@pytest.mark.redis
def test_jobs_of_one_unit_of_work_are_handed_over_together_most_urgent_first(
    app: Any, db_session: Any, make_customer: Any, redis_client: Any, monkeypatch: Any
) -> None:
    from rq import Queue
    from sqlalchemy import event

    c = make_customer()
    monkeypatch.setitem(app.extensions, "dealerloop.jobs", Dispatcher(redis_client, max_attempts=3))
    dropped = enqueue(db_session, "test.note_run", {"customer_id": c.id, "tag": "gone"})
    rollback(db_session)  # its hand-over goes with it; the next unit of work starts afresh
    rows = [
        enqueue(db_session, "test.note_run", {"customer_id": c.id, "tag": "u1"}),
        enqueue(db_session, "test.urgent", {"customer_id": c.id, "tag": "u2"}),
        enqueue(db_session, "test.note_run", {"customer_id": c.id, "tag": "u3"}),
    ]
    statements: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "outbox_job" in statement:
            statements.append(statement.split()[0])

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        commit(db_session)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert statements == ["UPDATE"]  # one status update for the three, no read (they were just written)
    db_session.expire_all()
    assert [db_session.get(OutboxJob, r.id).status for r in rows] == ["enqueued"] * 3
    assert db_session.get(OutboxJob, dropped.id) is None
    high = Queue("high", connection=redis_client).job_ids
    default = Queue("default", connection=redis_client).job_ids
    assert high == [f"outbox-{rows[1].id}"] and default == [f"outbox-{rows[0].id}", f"outbox-{rows[2].id}"]


@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_periodic_job_fires_once_per_slot_across_workers(app: Any, monkeypatch: Any) -> None:
    from backend.customers.models import Customer

    with app.app_context():
        session = db.session_factory()
        customer = Customer(name="periodic")
        session.add(customer)
        session.commit()
        cid = customer.id
        session.close()

    @job("test.periodic_note")
    def periodic_note(session: Any, slot: int) -> None:
        record(
            session,
            customer_id=cid,
            kind="follow_up_done",
            channel="system",
            source="test_job",
            source_ref=f"run:periodic:{uuid.uuid4().hex}",
        )

    monkeypatch.setattr(jobs, "_PERIODIC", [jobs.Periodic("test.periodic_note", 3600)])
    now = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
    barrier = threading.Barrier(4)
    fired: list[list[str]] = []

    def worker() -> None:
        barrier.wait()
        fired.append(jobs.tick_periodic(app, now=now))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(f) for f in fired) == [0, 0, 0, 1]
    with app.app_context():
        session = db.session_factory()
        assert _runs(session, "periodic") == 1
        session.close()


@pytest.mark.redis
def test_rows_redis_lost_after_hand_over_are_recovered(
    app: Any, db_session: Any, make_customer: Any, redis_client: Any, monkeypatch: Any
) -> None:
    from datetime import timedelta

    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    from backend.platform.db import utcnow
    from backend.platform.jobs import recover_lost

    c = make_customer()
    up = Dispatcher(redis_client, max_attempts=3)
    monkeypatch.setitem(app.extensions, "dealerloop.jobs", up)
    row = enqueue(db_session, "test.note_run", {"customer_id": c.id, "tag": "lost"})
    commit(db_session)
    db_session.expire_all()
    assert db_session.get(OutboxJob, row.id).status == "enqueued"
    redis_client.flushdb()  # Redis restarted without persistence
    assert recover_lost(app, up) == 0  # still within the lease: it may just be queued
    db_session.get(OutboxJob, row.id).enqueued_at = utcnow() - timedelta(minutes=11)
    db_session.commit()
    assert recover_lost(app, up) == 1
    SimpleWorker(list(jobs.QUEUES), connection=redis_client, serializer=JSONSerializer).work(burst=True)
    db_session.expire_all()
    assert db_session.get(OutboxJob, row.id).status == "done"
    assert _runs(db_session, "lost") == 1
    assert recover_lost(app, up) == 0


@pytest.mark.redis
def test_a_job_a_stopping_worker_popped_and_never_started_is_recovered(
    app: Any, db_session: Any, make_customer: Any, redis_client: Any, monkeypatch: Any
) -> None:
    """RQ's warm shutdown raises out of the dequeue when the worker is not marked busy yet; a
    job popped in that moment is left `queued` in no queue (seen in the worker-stop
    measurements). Before: recover_lost took `queued` for alive and the row stayed `enqueued`
    for good (recovered 0, the job never ran)."""
    from datetime import timedelta

    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    from backend.platform.db import utcnow
    from backend.platform.jobs import recover_lost

    c = make_customer()
    up = Dispatcher(redis_client, max_attempts=3)
    monkeypatch.setitem(app.extensions, "dealerloop.jobs", up)
    row = enqueue(db_session, "test.note_run", {"customer_id": c.id, "tag": "dropped"})
    commit(db_session)
    # what the stopping worker's BLPOP did: the job left its queue, and nothing else happened
    assert redis_client.lpop("rq:queue:default") == f"outbox-{row.id}".encode()
    assert up.job_status(row.id) == "queued"
    db_session.get(OutboxJob, row.id).enqueued_at = utcnow() - timedelta(minutes=11)
    db_session.commit()

    assert recover_lost(app, up) == 1
    SimpleWorker(list(jobs.QUEUES), connection=redis_client, serializer=JSONSerializer).work(burst=True)
    db_session.expire_all()
    assert db_session.get(OutboxJob, row.id).status == "done"
    assert _runs(db_session, "dropped") == 1
    assert recover_lost(app, up) == 0


@pytest.mark.redis
def test_a_job_waiting_in_its_queue_is_not_recovered_twice(
    app: Any, db_session: Any, make_customer: Any, redis_client: Any, monkeypatch: Any
) -> None:
    from datetime import timedelta

    from backend.platform.db import utcnow
    from backend.platform.jobs import recover_lost

    c = make_customer()
    up = Dispatcher(redis_client, max_attempts=3)
    monkeypatch.setitem(app.extensions, "dealerloop.jobs", up)
    row = enqueue(db_session, "test.note_run", {"customer_id": c.id, "tag": "waiting"})
    commit(db_session)
    db_session.get(OutboxJob, row.id).enqueued_at = utcnow() - timedelta(minutes=11)
    db_session.commit()

    assert recover_lost(app, up) == 0  # a long queue, not a loss
    assert redis_client.lrange("rq:queue:default", 0, -1) == [f"outbox-{row.id}".encode()]


@pytest.mark.redis
def test_a_job_a_worker_moved_to_the_intermediate_list_is_left_to_rq(
    app: Any, db_session: Any, make_customer: Any, redis_client: Any, monkeypatch: Any
) -> None:
    """A worker of one queue pops with LMOVE into `rq:queue:X:intermediate` (RQ 3); a job left
    there is RQ's to clean up (its maintenance fails it, then retries or gives it up). Before:
    recover_lost looked only in the main queue, took it for lost (recovered 1) and pushed it
    into the queue a second time."""
    from datetime import timedelta

    from backend.platform.db import utcnow
    from backend.platform.jobs import recover_lost

    c = make_customer()
    up = Dispatcher(redis_client, max_attempts=3)
    monkeypatch.setitem(app.extensions, "dealerloop.jobs", up)
    row = enqueue(db_session, "test.note_run", {"customer_id": c.id, "tag": "intermediate"})
    commit(db_session)
    job_id = f"outbox-{row.id}".encode()
    # what a single-queue worker's dequeue does (rq.Queue.lmove), the worker then stopping
    assert redis_client.lmove("rq:queue:default", "rq:queue:default:intermediate") == job_id
    assert up.job_status(row.id) == "queued"
    db_session.get(OutboxJob, row.id).enqueued_at = utcnow() - timedelta(minutes=11)
    db_session.commit()

    assert recover_lost(app, up) == 0
    assert (
        redis_client.lrange("rq:queue:default", 0, -1),
        redis_client.lrange("rq:queue:default:intermediate", 0, -1),
    ) == (
        [],
        [job_id],
    )


@pytest.mark.redis
def test_a_backlog_waiting_in_its_queue_is_not_recovered_and_a_lost_job_among_it_is(
    app: Any, db_session: Any, make_customer: Any, redis_client: Any, monkeypatch: Any
) -> None:
    """Many rows past their lease still waiting (a backlog) are all seen in their queue; the one
    a stopping worker popped among them is handed over again, once."""
    from datetime import timedelta

    from sqlalchemy import update

    from backend.platform.db import utcnow
    from backend.platform.jobs import recover_lost

    c = make_customer()
    up = Dispatcher(redis_client, max_attempts=3)
    monkeypatch.setitem(app.extensions, "dealerloop.jobs", up)
    rows = [enqueue(db_session, "test.note_run", {"customer_id": c.id, "tag": f"backlog{i}"}) for i in range(30)]
    commit(db_session)
    assert redis_client.lpop("rq:queue:default") == f"outbox-{rows[0].id}".encode()  # popped, then nothing
    db_session.execute(
        update(OutboxJob)
        .where(OutboxJob.id.in_([r.id for r in rows]))
        .values(enqueued_at=utcnow() - timedelta(minutes=11))
    )
    db_session.commit()

    assert recover_lost(app, up) == 1
    queued = redis_client.lrange("rq:queue:default", 0, -1)
    assert sorted(queued) == sorted(f"outbox-{r.id}".encode() for r in rows)
    assert recover_lost(app, up) == 0


def test_delayed_job_runs_when_due_through_the_relayer(app: Any, db_session: Any, make_customer: Any) -> None:
    from datetime import timedelta

    from backend.platform.db import utcnow

    c = make_customer()
    row = enqueue(db_session, "test.note_run", {"customer_id": c.id, "tag": "later"}, delay=timedelta(hours=1))
    commit(db_session)
    assert relay() == 0 and _runs(db_session, "later") == 0  # not due yet
    db_session.get(OutboxJob, row.id).run_after = utcnow() - timedelta(seconds=1)
    db_session.commit()
    assert relay() == 1
    assert _runs(db_session, "later") == 1


BATCHES: list[list[str]] = []


def _batch_tags(session: Any, batch: list[dict[str, Any]]) -> list[Exception | None]:
    """Writes one touchpoint per item that is not meant to fail; 'boom' in any item fails all."""
    BATCHES.append([args["tag"] for args in batch])
    if any(args["tag"] == "boom" for args in batch):
        raise RuntimeError("the batch failed as a whole")
    out: list[Exception | None] = []
    for args in batch:
        if args["tag"].startswith("bad"):
            out.append(ValueError(f"item {args['tag']} failed"))
            continue
        note_run(session, args["customer_id"], args["tag"])
        out.append(None)
    return out


@job("test.batched", batch=_batch_tags)
def batched_one(session: Any, customer_id: int, tag: str) -> None:
    note_run(session, customer_id, tag)


def _delayed(session: Any, name: str, customer_id: int, tags: list[str]) -> list[int]:
    from datetime import timedelta

    rows = [enqueue(session, name, {"customer_id": customer_id, "tag": t}, delay=timedelta(minutes=5)) for t in tags]
    commit(session)
    return [row.id for row in rows if row is not None]


def test_a_batch_runs_its_rows_in_one_call_and_leaves_a_failed_item_to_the_outbox(
    app: Any, db_session: Any, make_customer: Any
) -> None:
    c = make_customer()
    ids = _delayed(db_session, "test.batched", c.id, ["b1", "bad1", "b2"])
    plain = _delayed(db_session, "test.note_run", c.id, ["single"])  # no batch function: run alone
    BATCHES.clear()
    assert jobs.execute_batch([*ids, *plain], app=app) == 3
    assert BATCHES == [["b1", "bad1", "b2"]]  # one call for the three
    db_session.expire_all()
    rows = {row.id: row for row in db_session.scalars(select(OutboxJob).where(OutboxJob.id.in_([*ids, *plain])))}
    assert [(rows[i].status, rows[i].attempts) for i in ids] == [("done", 1), ("pending", 1), ("done", 1)]
    assert "item bad1 failed" in rows[ids[1]].last_error
    assert rows[plain[0]].status == "done"
    assert [_runs(db_session, t) for t in ("b1", "bad1", "b2", "single")] == [1, 0, 1, 1]
    assert jobs.execute_batch(ids, app=app) == 0  # done rows are not run again; the failed one fails again
    assert BATCHES[-1] == ["bad1"]


def test_a_batch_that_fails_as_a_whole_keeps_nothing_and_leaves_every_row_pending(
    app: Any, db_session: Any, make_customer: Any
) -> None:
    c = make_customer()
    ids = _delayed(db_session, "test.batched", c.id, ["w1", "boom"])
    assert jobs.execute_batch(ids, app=app) == 0
    db_session.expire_all()
    rows = db_session.scalars(select(OutboxJob).where(OutboxJob.id.in_(ids)).order_by(OutboxJob.id)).all()
    assert [(r.status, r.attempts) for r in rows] == [("pending", 0), ("pending", 0)]
    assert _runs(db_session, "w1") == 0
    assert execute(ids[0]) == "done"  # the fallback: each row on its own
    assert _runs(db_session, "w1") == 1


def test_marking_handed_over_rows_leaves_rows_that_moved_on(app: Any, db_session: Any, make_customer: Any) -> None:
    """Relaying marks rows `enqueued` only while they are still `pending`: a row an RQ worker
    finished meanwhile stays `done`, with nothing else of it changed."""
    c = make_customer()
    waiting, finished = _delayed(db_session, "test.note_run", c.id, ["m1", "m2"])
    assert execute(finished) == "done"
    at = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    jobs._mark(app, [waiting, finished], status="enqueued", enqueued_at=at, only_if="pending")
    db_session.expire_all()
    a, b = db_session.get(OutboxJob, waiting), db_session.get(OutboxJob, finished)
    assert (a.status, a.enqueued_at) == ("enqueued", at)
    assert (b.status, b.enqueued_at) == ("done", None)
