"""INSERT … ON CONFLICT/DUPLICATE KEY UPDATE for MariaDB and SQLite, so counters and projections
are updated atomically without check-then-insert."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session


def upsert(
    session: Session | Connection,
    model: type,
    values: dict[str, Any],
    conflict_columns: list[str],
    updates: Callable[[Any], list[tuple[str, Any]]],
) -> None:
    """`updates(new)` returns (column, expression) pairs in order; `new` gives the proposed row's
    values (MariaDB VALUES(), SQLite excluded). On MariaDB assignments see earlier ones, so put a
    column before any assignment that changes a column it reads. Runs on a session (its unit of
    work) or a connection (`db.autocommit()`: committed at once)."""
    dialect = (session.get_bind() if isinstance(session, Session) else session).dialect.name
    table = model.__table__
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        stmt = mysql_insert(table).values(**values)
        stmt = stmt.on_duplicate_key_update(updates(stmt.inserted))
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table).values(**values)
        stmt = stmt.on_conflict_do_update(index_elements=conflict_columns, set_=dict(updates(stmt.excluded)))
    else:  # pragma: no cover - PostgreSQL would use the sqlite form
        raise NotImplementedError(dialect)
    session.execute(stmt)
