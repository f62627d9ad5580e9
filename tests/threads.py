"""Real threads for concurrency tests: start together at a barrier, each with its own session."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, select

from backend.platform.db import db


def run_threads(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """`fn(i)` for i in 0..n-1 on n threads released at once; results (or the exception each
    raised, surfaced in the assertions) in order. Each thread's scoped session is removed."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def target(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:  # surfaced in the assertions
            results[i] = exc
        finally:
            db.session.remove()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def count_committed(app: Any, model: Any, *where: Any) -> int:
    """Rows committed so far (a fresh session, removed after)."""
    with app.app_context():
        try:
            return db.session().scalar(select(func.count()).select_from(model).where(*where))
        finally:
            db.session.remove()


def lock_wait_seen(timeout: float, until: threading.Event | None = None) -> bool:
    """Whether some MariaDB statement waits for a lock within `timeout` seconds (polled on a
    connection of its own); stops early, False, once `until` is set (the other side finished).

    A wait shows as a transaction in LOCK WAIT, or — for a transaction whose first statement is
    the one waiting, which MariaDB does not list in INNODB_TRX yet — as a statement of another
    connection running for over half a second (a test's statements take milliseconds)."""
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not (until is not None and until.is_set()):
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT (SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT')"
                    " + (SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND = 'Query'"
                    " AND TIME_MS > 500 AND ID != CONNECTION_ID())"
                )
                if cur.fetchone()[0]:
                    return True
            time.sleep(0.02)
        return False
    finally:
        conn.close()


@contextmanager
def held_merge(app: Any, source_id: int, target_id: int, release_after: float = 1.0) -> Iterator[threading.Event]:
    """A staff merge of `source_id` into `target_id` on a thread of its own, holding both
    customer rows FOR UPDATE when the block starts and committing `release_after` seconds later
    (or as soon as the yielded event is set): a write in the block that resolved its customer
    before the merge committed has to wait for it. The merge is joined when the block ends."""
    from backend.customers.service import merge_customers
    from backend.platform.actors import SystemActor

    with _held(
        app, lambda s: merge_customers(s, SystemActor("test"), source_id, target_id, "probe"), release_after
    ) as release:
        yield release


@contextmanager
def held_reversal(app: Any, merge_id: int, staff_id: int, release_after: float = 1.0) -> Iterator[threading.Event]:
    """Staff (`staff_id`) reversing merge `merge_id` on a thread of its own, as `held_merge`:
    both customer rows held FOR UPDATE (the identities moved back, the survivor's sessions since
    the merge revoked) until it commits `release_after` seconds later."""
    from backend.customers.models import CustomerMerge
    from backend.customers.service import reverse_merge
    from backend.platform.actors import DataScope, StaffActor

    staff = StaffActor(staff_id=staff_id, roles=frozenset({"group_admin"}), org_unit_id=0, scope=DataScope(None, False))
    with _held(app, lambda s: reverse_merge(s, staff, s.get(CustomerMerge, merge_id)), release_after) as release:
        yield release


@contextmanager
def _held(app: Any, write: Callable[[Any], Any], release_after: float) -> Iterator[threading.Event]:
    locked, release = threading.Event(), threading.Event()

    def run() -> None:
        with app.app_context():
            s = db.session()
            write(s)
            locked.set()
            release.wait(15)
            s.commit()
            db.session.remove()

    writer = threading.Thread(target=run)
    writer.start()
    assert locked.wait(10), "the write never took its locks"
    timer = threading.Timer(release_after, release.set)
    timer.start()
    try:
        yield release
    finally:
        release.set()
        timer.cancel()
        writer.join(15)


def attempt(app: Any, write: Callable[[Any], Any]) -> str:
    """`write(session)` in a unit of work of its own: "done" once committed, else the code of the
    AppError that refused it (rolled back)."""
    from backend.platform.errors import AppError

    with app.app_context():
        s = db.session()
        try:
            write(s)
            s.commit()
            return "done"
        except AppError as exc:
            s.rollback()
            return exc.code
        finally:
            db.session.remove()


@contextmanager
def held_write(app: Any, write: Callable[[Any], Any], release_after: float = 1.0) -> Iterator[threading.Event]:
    """Any `write(session)` on a thread of its own, as `held_merge`: the block starts once the
    write has taken its locks, and it commits `release_after` seconds later or as soon as the
    yielded event is set. The write is joined when the block ends."""
    with _held(app, write, release_after) as release:
        yield release
