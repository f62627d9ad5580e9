"""Command line: `flask --app wsgi <command>` or the `dealerloop` script (same commands)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from backend.platform import migrate
from backend.platform.db import db, unit_of_work

log = logging.getLogger("dealerloop.worker")
REDIS_WAIT_MAX = 30.0  # seconds between tries to reach Redis when it is down


def register_commands(app: Flask) -> None:
    app.cli.add_command(db_group)
    app.cli.add_command(worker)
    app.cli.add_command(jobs_group)
    app.cli.add_command(profiles_group)
    app.cli.add_command(seed_demo)
    app.cli.add_command(org_group)


@click.group("db", help="Schema migrations (Alembic).")
def db_group() -> None:
    pass


@db_group.command("upgrade")
@click.argument("revision", default="head")
@with_appcontext
def db_upgrade(revision: str) -> None:
    migrate.upgrade(db.engine, revision)  # type: ignore[arg-type]
    click.echo(f"database at {migrate.current_revision(db.engine)}")  # type: ignore[arg-type]


@db_group.command("downgrade")
@click.argument("revision")
@with_appcontext
def db_downgrade(revision: str) -> None:
    migrate.downgrade(db.engine, revision)  # type: ignore[arg-type]


@db_group.command("current")
@with_appcontext
def db_current() -> None:
    click.echo(f"current {migrate.current_revision(db.engine)}, head {migrate.head_revision()}")  # type: ignore[arg-type]


@db_group.command("revision")
@click.option("-m", "--message", required=True)
@with_appcontext
def db_revision(message: str) -> None:
    from alembic import command

    with db.engine.begin() as conn:  # type: ignore[union-attr]
        command.revision(migrate.alembic_config(conn), message=message, autogenerate=True)


@click.command(
    "worker",
    help="RQ worker on high, default, low, with the scheduler, the outbox relayer and the "
    "callback intake pumps (without REDIS_URL: the relayer alone, executing jobs inline).",
)
@click.option("--burst", is_flag=True, help="exit when the queues are empty")
@with_appcontext
def worker(burst: bool) -> None:
    # RQ's default Worker forks a work horse per job, while this process's relayer thread keeps
    # using the database pool and locks; a fork taken mid-use leaves the child with half-held
    # locks and shared MySQL sockets (seen in the benchmarks: lost connections, a horse that never
    # finished). Jobs here are short database transactions, so they run in the worker process
    # itself (RQ's SimpleWorker); run more worker processes for more throughput.
    from rq.serializers import JSONSerializer

    from backend.platform.jobs import QUEUES, relayer_loop, set_worker_app, start_worker_threads
    from backend.platform.rq_worker import Worker

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    redis_client = app.extensions["dealerloop.redis"]
    set_worker_app(app)
    stop = threading.Event()
    # SIGTERM (a deploy) and SIGINT stop the relayer and the pumps after their current
    # iteration; RQ takes the signals over while it runs, and sets `stop` too.
    _stop_on_signals(stop)
    if redis_client is None:
        # Without Redis, requests run their jobs inline; this loop still fires periodic jobs,
        # runs delayed jobs when due and retries failed ones.
        click.echo("no REDIS_URL: running the outbox relayer only (jobs execute inline)")
        relayer_loop(app, stop)
        return
    threads = start_worker_threads(app, stop)

    try:
        _work_while_redis_comes_and_goes(
            lambda: Worker(list(QUEUES), connection=redis_client, serializer=JSONSerializer, stop=stop).work(
                with_scheduler=True, burst=burst
            ),
            stop,
        )
    finally:
        stop.set()
        for thread in threads:  # let an iteration in progress finish and release its connection
            thread.join(timeout=30)


def _stop_on_signals(stop: threading.Event) -> None:
    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def _work_while_redis_comes_and_goes(work: Callable[[], object], stop: threading.Event) -> None:
    """Run RQ (`work`), and again whenever it stops because Redis cannot be reached, until a
    stop is asked for.

    RQ needs Redis to start at all (it registers the worker there first), but the relayer and
    the intake pumps beside it do not: they admit WeCom callbacks, send their welcomes (a code
    lives 20 s) and keep jobs pending in the outbox. A worker started during an outage (a
    deploy, a restart after a crash) therefore keeps them running and waits for Redis instead
    of exiting and taking them down with it. A SIGTERM meanwhile ends the wait: RQ's handlers
    are only installed once it has registered, so the process's own (`_stop_on_signals`) are
    put back after each failed start (before, the default action killed the process and its
    pumps mid-work)."""
    import redis

    wait = 1.0
    while not stop.is_set():
        try:
            work()
            return
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            _stop_on_signals(stop)
            log.warning(
                "Redis unreachable (%s); the relayer and intake pumps keep running, RQ tries again in %.0f s",
                type(exc).__name__,
                wait,
            )
        if stop.wait(wait):
            return
        wait = min(wait * 2, REDIS_WAIT_MAX)


@click.group("jobs", help="The job outbox.")
def jobs_group() -> None:
    pass


@jobs_group.command("relay")
@with_appcontext
def jobs_relay() -> None:
    """Hand every pending outbox row over now (after a Redis outage, or inline re-runs)."""
    from backend.platform.jobs import relay

    click.echo(f"handed over {relay()} job(s)")


@click.group("profiles", help="The customer profile projection.")
def profiles_group() -> None:
    pass


@profiles_group.command("rebuild")
@with_appcontext
def profiles_rebuild() -> None:
    """Recompute every profile from the touchpoints (same result as the incremental updates)."""
    from backend.touchpoints.service import rebuild_profiles

    with unit_of_work() as session:
        n = rebuild_profiles(session)
    click.echo(f"rebuilt {n} profile(s)")


@click.command("seed-demo", help="Demo data (idempotent): org tree, staff, customers, cars, touchpoints.")
@click.option("--if-empty", is_flag=True, help="do nothing when the database already has customers")
@click.option("--customers", default=500, show_default=True)
@with_appcontext
def seed_demo(if_empty: bool, customers: int) -> None:
    from backend.seed import seed_demo as run_seed

    click.echo(run_seed(if_empty=if_empty, customers=customers))


@click.group("org", help="Org tree and staff.")
def org_group() -> None:
    pass


@org_group.command("import")
@click.option("--units", "units_csv", type=click.Path(exists=True, dir_okay=False), help="org units CSV")
@click.option("--staff", "staff_csv", type=click.Path(exists=True, dir_okay=False), help="staff CSV")
@with_appcontext
def org_import(units_csv: str | None, staff_csv: str | None) -> None:
    """Import org units and staff; a file with any bad row changes nothing."""
    from backend.org.importer import import_files

    ok = import_files(units_csv, staff_csv, echo=click.echo)
    if not ok:
        sys.exit(1)


def main() -> None:
    from backend import create_app

    FlaskGroup(create_app=lambda: create_app())(prog_name="dealerloop")
