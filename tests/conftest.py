"""Test harness.

The schema comes from the Alembic migrations, built once per run. Each test runs inside a
transaction that is rolled back (SQLAlchemy's "join a session into an external transaction"
recipe: the app's sessions bind to one connection and use SAVEPOINTs). Tests marked
`dbcommit` commit for real (threads, several connections) and the tables are emptied after.

The suite runs on MariaDB and Redis when they are reachable and on SQLite otherwise. With
CI=true a missing MariaDB or Redis stops the run with a clear message instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

pytest_plugins = ["tests.sandbox_fixtures", "tests.factories"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
MARIADB_URL = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


def _mariadb_reachable() -> str | None:
    import pymysql

    try:
        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", connect_timeout=2)
        conn.close()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        return f"{type(exc).__name__}: {exc}"


def _redis_reachable() -> str | None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"


def pytest_configure(config: pytest.Config) -> None:
    mariadb_problem = _mariadb_reachable() if os.environ.get("TEST_DATABASE", "auto") != "sqlite" else "forced sqlite"
    redis_problem = _redis_reachable()
    if IN_CI and (mariadb_problem or redis_problem):
        pytest.exit(
            "CI=true but a required service is unreachable: "
            + "; ".join(
                f"{name} ({problem})"
                for name, problem in (
                    ("MariaDB 127.0.0.1:3306", mariadb_problem),
                    ("Redis 127.0.0.1:6379", redis_problem),
                )
                if problem
            ),
            returncode=3,
        )
    config.dealerloop_backend = "mariadb" if mariadb_problem is None else "sqlite"  # type: ignore[attr-defined]
    config.dealerloop_redis = redis_problem is None  # type: ignore[attr-defined]


def pytest_report_header(config: pytest.Config) -> str:
    return f"dealerloop: database={config.dealerloop_backend} redis={'yes' if config.dealerloop_redis else 'no'}"  # type: ignore[attr-defined]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "mariadb" in item.keywords and config.dealerloop_backend != "mariadb":  # type: ignore[attr-defined]
            item.add_marker(pytest.mark.skip(reason="needs MariaDB (runs in CI)"))
        if "redis" in item.keywords and not config.dealerloop_redis:  # type: ignore[attr-defined]
            item.add_marker(pytest.mark.skip(reason="needs Redis (runs in CI)"))


def _database_url(config: pytest.Config, worker_id: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    suffix = "" if worker_id == "master" else f"_{worker_id}"
    if config.dealerloop_backend == "mariadb":  # type: ignore[attr-defined]
        import pymysql

        # One database per run (pid), so that runs side by side on one machine do not collide.
        name = f"dealerloop_test_{os.getpid()}{suffix}"
        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        conn.close()
        return f"{MARIADB_URL}{name}?charset=utf8mb4"
    return f"sqlite:///{tmp_path_factory.mktemp('db') / f'test{suffix}.db'}"


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    return getattr(request.config, "workerinput", {}).get("workerid", "master")


@pytest.fixture(scope="session")
def database_url(
    request: pytest.FixtureRequest, worker_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    url = _database_url(request.config, worker_id, tmp_path_factory)
    yield url
    if url.startswith("mysql"):
        import pymysql

        from backend.platform.db import db

        if db.engine is not None:
            db.engine.dispose()
        name = url.rsplit("/", 1)[1].split("?")[0]
        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest, worker_id: str) -> str:
    """A Redis database per xdist worker, as each has its own MariaDB database: the tests flush
    it and run RQ workers on its queues, which must not take (or drop) another worker's jobs."""
    if not request.config.dealerloop_redis:  # type: ignore[attr-defined]
        pytest.skip("needs Redis")
    base, _, number = REDIS_URL.rpartition("/")
    offset = int(worker_id.removeprefix("gw")) if worker_id.startswith("gw") else 0
    if not number.isdigit() or int(number) - offset < 0:
        pytest.fail(f"no Redis database left for xdist worker {worker_id} below {REDIS_URL}")
    return f"{base}/{int(number) - offset}"


@pytest.fixture
def redis_dispatcher(app: Any, redis_url: str, monkeypatch: Any) -> Any:
    """The app hands jobs to RQ on this test's Redis database (emptied before and after), as
    with REDIS_URL set; the client is returned for the test's own RQ workers and queues."""
    import redis

    from backend.platform.jobs import Dispatcher

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    monkeypatch.setitem(app.extensions, "dealerloop.jobs", Dispatcher(client, max_attempts=3))
    yield client
    client.flushdb()


def make_test_config(database_url: str, sandbox_config: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {
        "DEALERLOOP_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": "",
        "SANDBOX_ENABLED": False,
        "UPSTREAM_TIMEOUT": 2.0,
        "LOG_LEVEL": "WARNING",
        **sandbox_config,
        **overrides,
    }


@pytest.fixture(scope="session")
def app(database_url: str, sandbox: Any) -> Any:
    from backend import create_app
    from backend.platform.db import db
    from backend.platform.migrate import upgrade

    application = create_app(make_test_config(database_url, sandbox.config()))
    upgrade(db.engine)  # the schema comes from the migrations, as in production
    return application


@pytest.fixture(autouse=True)
def _db_isolation(request: pytest.FixtureRequest) -> Iterator[None]:
    if "app" not in request.fixturenames and "db_session" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("app")  # builds the schema once
    from backend.platform.db import db

    engine = db.engine
    if request.node.get_closest_marker("dbcommit"):
        try:
            yield
        finally:
            db.session.remove()
            _empty_tables(engine)
        return
    connection = engine.connect()
    outer = connection.begin()
    db.session_factory.configure(bind=connection, join_transaction_mode="create_savepoint")
    # No app context is pushed around the test: each test-client request gets its own, so the
    # per-request teardown (session removal, fresh `g`) runs as in production. Tests calling
    # services that need the app use the `app_ctx` fixture.
    try:
        yield
    finally:
        db.session.remove()
        outer.rollback()
        connection.close()
        db.session_factory.configure(bind=engine, join_transaction_mode="conditional_savepoint")


def _empty_tables(engine: Any) -> None:
    from backend.models import metadata

    with engine.begin() as conn:
        if engine.dialect.name in ("mysql", "mariadb"):
            conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
            for table in metadata.sorted_tables:
                conn.execute(table.delete())
            conn.execute(text("SET FOREIGN_KEY_CHECKS=1"))
        else:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())


@pytest.fixture
def app_ctx(app: Any) -> Iterator[Any]:
    with app.app_context() as ctx:
        yield ctx


@pytest.fixture
def db_session(app: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    from backend.platform.db import db

    session = db.session()
    yield session
    if request.node.get_closest_marker("dbcommit"):
        # Closed here, not only by `db.session.remove()`: a test-client request's teardown
        # removes the thread's session from the registry, so a `db_session` used after a
        # request is no longer the one `remove` closes (with real commits, its open transaction
        # would hold its tables' metadata locks, and the run's DROP DATABASE would wait for
        # ever). In a rolled-back test the harness's outer transaction ends it all anyway.
        session.close()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


def _burst_worker_class() -> Any:
    from rq import SimpleWorker

    class BurstWorker(SimpleWorker):
        """An RQ worker without its command channel (stop/kill requests, useless to a burst run):
        with redis-py 8 its pubsub thread can wait out its 60 s read before the worker exits."""

        def subscribe(self) -> None:
            pass

        def unsubscribe(self) -> None:
            pass

    return BurstWorker


class RedisOutage:
    """Redis as the app sees it, taken down and brought back: the job dispatcher, the shared
    client (the notify rate limiter, the health check) and the gateways' token cache all point
    at a closed port while it is down; `up` points them at this test's Redis database again
    (emptied, as after a restart without persistence), and `drain` does what a worker does once
    it is back: relay the due pending outbox rows and run RQ until the queues are empty."""

    def __init__(self, app: Any, redis_url: str, monkeypatch: Any) -> None:
        self.app, self.redis_url, self.monkeypatch = app, redis_url, monkeypatch
        self.client: Any = None

    def _point_at(self, redis_client: Any) -> None:
        from backend.platform.jobs import Dispatcher
        from integrations import build_gateways
        from integrations.wecom.apps import add_wecom_apps

        gateways = build_gateways(self.app.config, redis_client)
        add_wecom_apps(gateways, self.app.config)
        self.monkeypatch.setitem(self.app.extensions, "dealerloop.redis", redis_client)
        self.monkeypatch.setitem(self.app.extensions, "dealerloop.jobs", Dispatcher(redis_client, max_attempts=3))
        self.monkeypatch.setitem(self.app.extensions, "dealerloop.gateways", gateways)

    def down(self) -> None:
        from backend import connect_redis

        self._point_at(connect_redis("redis://127.0.0.1:1/0"))  # the app's client: nothing listens

    def up(self) -> Any:
        from backend import connect_redis

        if self.client is None:
            self.client = connect_redis(self.redis_url)
            self.client.flushdb()
        self._point_at(self.client)
        return self.client

    def drain(self) -> int:
        """Relay the due pending rows and run RQ in burst mode; returns how many were relayed."""
        from rq.serializers import JSONSerializer

        from backend.platform import jobs

        handed = jobs.relay(app=self.app)
        jobs.set_worker_app(self.app)
        with self.app.app_context():
            _burst_worker_class()(list(jobs.QUEUES), connection=self.client, serializer=JSONSerializer).work(burst=True)
        return handed

    def close(self) -> None:
        if self.client is not None:
            self.client.flushdb()
            self.client.close()


@pytest.fixture
def redis_outage(app: Any, redis_url: str, monkeypatch: Any) -> Iterator[RedisOutage]:
    """Redis configured for the app, then down (`down()`), then back (`up()`, `drain()`)."""
    outage = RedisOutage(app, redis_url, monkeypatch)
    try:
        yield outage
    finally:
        outage.close()
