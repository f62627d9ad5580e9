"""Real threads for concurrency tests: start together at a barrier, each with its own session."""

from __future__ import annotations

import threading
from collections.abc import Callable
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
