"""Database plumbing: declarative base, column types, the engine and the unit of work.

Services receive a `Session` and only flush; the request (or job, or CLI command) boundary
commits once, then runs the after-commit hooks (the outbox relay, notifications).
"""

from __future__ import annotations

import enum
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Date,
    DateTime,
    Enum,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    select,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, scoped_session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The only clock of the application: aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, returns aware UTC, refuses naive datetimes.

    MariaDB DATETIME and SQLite keep no zone; a naive value would silently mean "server local
    time" somewhere, so it is an error to pass one.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        # MariaDB DATETIME without fsp truncates to seconds; keep microseconds so that ordering
        # by time is stable and round-trips are exact.
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"UTCDateTime expects a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime refused: pass an aware datetime (UTC)")
        try:
            return value.astimezone(UTC).replace(tzinfo=None)
        except OverflowError as exc:  # e.g. 0001-01-01T00:30+01:00 has no UTC equivalent
            raise ValueError("datetime out of range") from exc

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def exact_collation(dialect: Any) -> str:
    """The byte-for-byte collation of this server: MariaDB's NO PAD binary one (utf8mb4_bin still
    ignores trailing spaces), MySQL 8's 0900 binary one (also NO PAD), plain utf8mb4_bin before."""
    if getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    if (getattr(dialect, "server_version_info", None) or (0,)) >= (8, 0, 17):
        return "utf8mb4_0900_bin"
    return "utf8mb4_bin"


class ExactString(TypeDecorator):
    """A VARCHAR compared byte for byte: for opaque machine keys (client Idempotency-Keys, dedup
    and ledger keys, nonces, refund numbers, WeChat openids). The tables' utf8mb4_unicode_ci
    folds case, accents and widths and ignores trailing spaces, so "KeyA" and "keya" were one
    unique key and one lookup: a different request was answered with another's stored result.
    SQLite's default BINARY collation is exact already. Human-typed codes stay case-insensitive."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.VARCHAR(self.impl.length, collation=exact_collation(dialect)))
        return dialect.type_descriptor(String(self.impl.length))


def StrEnumType(enum_cls: type[enum.Enum], length: int = 32) -> Enum:  # noqa: N802 - reads like a type
    """Enums are stored as their string values in a VARCHAR (portable, no ALTER to add a value)."""
    return Enum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        date: Date(),
        dict[str, Any]: JSON(),
        dict: JSON(),
        list: JSON(),
        str: String(255),
    }


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# ---------------------------------------------------------------------------------------------
# Engine and session


def make_engine(
    url: str, echo: bool = False, pool_size: int = 10, max_overflow: int = 20, pool_timeout: float = 30
) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite's legacy transaction handling breaks SAVEPOINTs; take control of BEGIN.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")

        return engine
    if url.startswith("mysql") and "charset=" not in url:
        url += ("&" if "?" in url else "?") + "charset=utf8mb4"
    return create_engine(
        url,
        echo=echo,
        pool_pre_ping=True,
        pool_recycle=1800,  # below MariaDB's default wait_timeout and typical LB idle cuts
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        isolation_level="READ COMMITTED",
    )


KEEP_IDLE_SECONDS = 60.0  # a kept autocommit connection idle longer is replaced, not reused


def make_autocommit_engine(url: str, pool_size: int = 10) -> Engine | None:
    """For single-statement writes on the hottest paths (a callback's acknowledgement): every
    statement commits itself, and the pool neither pings on checkout nor rolls back on return,
    so the write is one round trip instead of four (ping, INSERT, COMMIT, ROLLBACK on return).
    A connection that died unnoticed fails its statement; `Database.autocommit` then drops
    every kept and pooled connection, and the caller's retry gets a new one. MariaDB only: SQLite
    (development) uses the ordinary sessions."""
    if not url.startswith("mysql"):
        return None
    if "charset=" not in url:
        url += ("&" if "?" in url else "?") + "charset=utf8mb4"
    return create_engine(
        url,
        pool_pre_ping=False,
        pool_reset_on_return=None,
        pool_recycle=1800,
        pool_size=pool_size,
        max_overflow=pool_size,
        isolation_level="AUTOCOMMIT",
        skip_autocommit_rollback=True,  # nothing to roll back: spare the ROLLBACK round trip
    )


class Database:
    """Holds the engine and a thread-local session registry for one app."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.autocommit_engine: Engine | None = None
        self.session_factory = sessionmaker(expire_on_commit=False)
        self.session = scoped_session(self.session_factory)
        # Autocommit connections kept open between `autocommit()` blocks, with when each was
        # last used (see there).
        self._idle_autocommit: list[tuple[Connection, float]] = []
        self._idle_lock = threading.Lock()
        self._idle_max = 10

    def init(self, url: str, echo: bool = False, **pool: Any) -> None:
        for engine in (self.engine, self.autocommit_engine):
            if engine is not None:
                engine.dispose()
        self.engine = make_engine(url, echo=echo, **pool)
        self.autocommit_engine = make_autocommit_engine(url, pool.get("pool_size", 10))
        self._idle_autocommit = []
        self._idle_max = pool.get("pool_size", 10)
        self.session_factory.configure(bind=self.engine)

    @contextmanager
    def autocommit(self) -> Iterator[Any]:
        """A connection whose statements commit themselves (see make_autocommit_engine). When
        sessions are bound to one connection (the test harness's rolled-back transaction), or
        on SQLite, it is a session's connection, committed at the end of the block.

        The connection is kept open for the next block instead of going back to the pool: a
        pool checkout and return cost as much as the acknowledgement's INSERT itself. One
        unused for KEEP_IDLE_SECONDS is not trusted any more (the server's wait_timeout, a load
        balancer's idle cut) and is replaced. A block that fails with anything but the server's
        refusal of the statement (a duplicate key) discards its connection, which may be broken
        or halfway through an answer; when the connection was lost, every kept one and the
        pool's are dropped too (they are as old: a restart or failover took them all), so the
        caller's retry gets a new one."""
        if self.autocommit_engine is not None and self.session_factory.kw.get("bind") is self.engine:
            conn = self._take_autocommit()
            try:
                yield conn
            except IntegrityError:
                self._keep_autocommit(conn)
                raise
            except BaseException:
                lost = conn.invalidated
                # Not back to the pool either (it does not reset connections on return).
                conn.invalidate()
                conn.close()
                if lost:
                    self._forget_autocommit()
                raise
            self._keep_autocommit(conn)
            return
        session = self.session_factory()
        try:
            yield session.connection()
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _take_autocommit(self) -> Connection:
        assert self.autocommit_engine is not None
        now = time.monotonic()
        stale: list[Connection] = []
        conn = None
        with self._idle_lock:
            while self._idle_autocommit and conn is None:
                candidate, last_used = self._idle_autocommit.pop()
                if now - last_used > KEEP_IDLE_SECONDS or candidate.closed or candidate.invalidated:
                    stale.append(candidate)
                else:
                    conn = candidate
        for old in stale:
            old.invalidate()
            old.close()
        return conn if conn is not None else self.autocommit_engine.connect()

    def _keep_autocommit(self, conn: Connection) -> None:
        with self._idle_lock:
            if len(self._idle_autocommit) < self._idle_max:
                self._idle_autocommit.append((conn, time.monotonic()))
                return
        conn.close()

    def _forget_autocommit(self) -> None:
        with self._idle_lock:
            kept, self._idle_autocommit = self._idle_autocommit, []
        for conn, _last_used in kept:
            conn.invalidate()
            conn.close()
        if self.autocommit_engine is not None:
            self.autocommit_engine.dispose()

    @property
    def dialect(self) -> str:
        assert self.engine is not None
        return self.engine.dialect.name

    def forget_inherited_connections(self) -> None:
        """In a forked child (an RQ work horse, a preloaded gunicorn worker): the pooled
        connections and any session holding one belong to the parent, which keeps using them;
        two processes on one MySQL socket corrupt each other's results and transactions. Drop
        them without closing (closing would send a rollback over the parent's socket) so the
        child opens its own."""
        self.session.registry.clear()
        # Kept referenced, never closed or collected here: they are the parent's.
        _INHERITED_CONNECTIONS.extend(conn for conn, _last_used in self._idle_autocommit)
        self._idle_autocommit = []
        self._idle_lock = threading.Lock()
        for engine in (self.engine, self.autocommit_engine):
            if engine is not None:
                engine.dispose(close=False)


_INHERITED_CONNECTIONS: list[Connection] = []
db = Database()
os.register_at_fork(after_in_child=db.forget_inherited_connections)


# ---------------------------------------------------------------------------------------------
# After-commit hooks: side effects run only once the change that wants them is durable.

_AFTER_COMMIT_KEY = "dealerloop.after_commit"


def after_commit(session: Session, fn: Callable[[], None]) -> None:
    session.info.setdefault(_AFTER_COMMIT_KEY, []).append(fn)


def after_commit_pending(session: Session, fn: Callable[[], None]) -> bool:
    """Whether `fn` is still registered to run after the next commit (a rollback drops it)."""
    return any(hook is fn for hook in session.info.get(_AFTER_COMMIT_KEY, []))


def _take_after_commit(session: Session) -> list[Callable[[], None]]:
    return session.info.pop(_AFTER_COMMIT_KEY, [])


def commit(session: Session) -> None:
    """Commit the unit of work, then run its after-commit hooks (errors there are logged)."""
    session.commit()
    hooks = _take_after_commit(session)
    for hook in hooks:
        try:
            hook()
        except Exception:  # a failed side effect must not turn a committed change into an error
            import logging

            logging.getLogger("dealerloop.after_commit").exception("after-commit hook failed")


def rollback(session: Session) -> None:
    session.rollback()
    _take_after_commit(session)


@contextmanager
def unit_of_work(session: Session | None = None) -> Iterator[Session]:
    """For jobs and CLI: one transaction, committed on success, rolled back on error."""
    s = session or db.session()
    try:
        yield s
        commit(s)
    except BaseException:
        rollback(s)
        raise


class DuplicateKey(Exception):
    """A unique key refused the row: the thing already exists (raised by `unique_savepoint`)."""


@contextmanager
def unique_savepoint(session: Session) -> Iterator[None]:
    """Run a write in a SAVEPOINT. If a unique key refuses it, only the block is rolled back and
    DuplicateKey is raised; any other integrity error propagates. This is how "insert, or find
    what is already there" is done without check-then-insert."""
    try:
        with session.begin_nested():
            yield
    except IntegrityError as exc:
        if not is_duplicate_key(exc):
            raise
        raise DuplicateKey(str(exc.orig)) from exc


_Row = TypeVar("_Row", bound="Base")


def insert_or_lock(session: Session, new: _Row, *key: ColumnElement[bool]) -> tuple[_Row, bool]:
    """The row `key` selects, held with its row lock until commit: `new` if its unique key was
    free, else the one already there (whoever inserted it). Two transactions after the same row
    then work one after the other, and neither reads it stale. Returns (row, created).

    An existing row is locked straight away, without trying the INSERT: a refused INSERT
    leaves MariaDB holding a shared lock on the row, and two waiters that each hold one and then
    ask for the exclusive lock deadlock. Only the first creation of a row can still meet that."""
    lock = select(type(new)).where(*key).with_for_update().execution_options(populate_existing=True)
    row = session.scalars(lock).one_or_none()
    if row is not None:
        return row, False
    created = False
    try:
        with unique_savepoint(session):
            session.add(new)
        created = True
    except DuplicateKey:
        pass
    return session.scalars(lock).one(), created


_PLAIN_INSERTS: dict[tuple[Any, str, tuple[str, ...]], tuple[str, list[tuple[str, Any]], bool]] = {}


def insert_row(conn: Connection, table: Table, values: dict[str, Any]) -> int:
    """INSERT one row straight on the connection's DBAPI cursor; returns its new id.

    For the one write that a callback's acknowledgement waits for: SQLAlchemy's execution
    machinery (context, result, compiled-cache lookup) costs more than the driver's own work
    for a single-row INSERT. The statement is compiled once per table, dialect and columns,
    and the columns' bind processors still apply (UTCDateTime refuses naive times here too).
    A driver error is raised as SQLAlchemy's (IntegrityError for a duplicate key); a lost
    connection is invalidated, so the next caller gets a new one."""
    dialect = conn.dialect
    cache_key = (table, dialect.name, tuple(values))
    plan = _PLAIN_INSERTS.get(cache_key)
    if plan is None:
        compiled = table.insert().compile(dialect=dialect, column_keys=list(values))
        order = list(compiled.positiontup or []) if dialect.positional else list(compiled.binds)
        missing = [key for key in order if key not in values]
        if missing:  # columns with Python-side defaults: SQLAlchemy's execution would fill them
            raise TypeError(f"insert_row into {table.name}: give {', '.join(missing)} (defaults do not run here)")
        processors = [(key, table.c[key].type.dialect_impl(dialect).bind_processor(dialect)) for key in order]
        plan = _PLAIN_INSERTS[cache_key] = (compiled.string, processors, dialect.positional)
    sql, processors, positional = plan
    converted = [(key, process(values[key]) if process else values[key]) for key, process in processors]
    params: Any = tuple(v for _k, v in converted) if positional else dict(converted)
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(sql, params)
        return int(cursor.lastrowid)
    except dialect.loaded_dbapi.Error as exc:
        if dialect.is_disconnect(exc, dbapi_conn, cursor):
            conn.invalidate(exc)
        raise DBAPIError.instance(sql, params, exc, dialect.loaded_dbapi.Error) from exc
    finally:
        cursor.close()


def is_duplicate_key(exc: Exception) -> bool:
    """True when an IntegrityError is a unique-key violation (MariaDB 1062, SQLite UNIQUE)."""
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    if args and args[0] == 1062:
        return True
    return "UNIQUE constraint failed" in str(orig)
