"""A deadlock that strikes inside a savepoint (`session.begin_nested()`, `unique_savepoint`)
answers the same retryable 503 as any lost lock race. InnoDB rolls the whole transaction back,
savepoint included, so SQLAlchemy's ROLLBACK TO SAVEPOINT fails in turn (MariaDB 1305) and that
error, not the deadlock, is what reaches the error handler: it answered 500 internal_error."""

from __future__ import annotations

import threading
from typing import Any

import pymysql
import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from backend.customers.models import Customer
from backend.platform.db import db
from tests.threads import lock_wait_seen

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def _errno(exc: BaseException) -> int | None:
    args = getattr(getattr(exc, "orig", None), "args", None)
    return args[0] if args and isinstance(args[0], int) else None


def test_a_deadlock_inside_a_savepoint_answers_503(app: Any, database_url: str) -> None:
    with app.app_context():
        s = db.session()
        people = [Customer(name=f"点{i}") for i in range(42)]
        s.add_all(people)
        s.commit()
        mine, theirs, others = people[0].id, people[1].id, [p.id for p in people[2:]]
        db.session.remove()

    name = database_url.rsplit("/", 1)[1].split("?")[0]
    other = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database=name)
    outcome: dict[str, BaseException] = {}

    def lighter() -> None:
        # Locks one row, then waits inside a savepoint for the row the heavier transaction holds.
        with app.app_context():
            s = db.session()
            try:
                s.execute(update(Customer).where(Customer.id == mine).values(name="我的"))
                with s.begin_nested():
                    s.execute(update(Customer).where(Customer.id == theirs).values(name="他的"))
            except OperationalError as exc:
                outcome["error"] = exc
            finally:
                db.session.remove()

    try:
        with other.cursor() as cur:
            cur.executemany("UPDATE customer SET name = CONCAT(name, '改') WHERE id = %s", [(i,) for i in others])
            cur.execute("UPDATE customer SET name = '重' WHERE id = %s", (theirs,))
        thread = threading.Thread(target=lighter)
        thread.start()
        assert lock_wait_seen(10), "the savepoint's statement never waited"
        with other.cursor() as cur:
            cur.execute("SELECT id FROM customer WHERE id = %s FOR UPDATE", (mine,))  # the cycle
        thread.join(30)
    finally:
        other.rollback()
        other.close()

    error = outcome["error"]
    # What the savepoint's rollback raised, with the deadlock as its context: the case at hand.
    assert _errno(error) == 1305, error
    assert _errno(error.__context__) == 1213, error.__context__

    with app.test_request_context():
        response = app.make_response(app.handle_user_exception(error))
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["code"] == "service.busy"
    assert response.headers["Retry-After"] == "1"
