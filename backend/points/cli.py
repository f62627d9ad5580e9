"""`flask points …`: the ledger drift check (and running the periodic work by hand)."""

from __future__ import annotations

import json
import sys

import click
from flask.cli import with_appcontext

from backend.platform.db import db, unit_of_work


@click.group("points", help="Points ledger maintenance.")
def points_group() -> None:
    pass


@points_group.command("check", help="Re-sum the ledger and report drift from the account rows (exit 1 on drift).")
@click.option("--customer", "customer_ids", type=int, multiple=True, help="only these customers")
@with_appcontext
def check(customer_ids: tuple[int, ...]) -> None:
    from backend.points.service import check_drift

    session = db.session()
    try:
        drift = check_drift(session, list(customer_ids) or None)
    finally:
        session.rollback()
    for entry in drift:
        click.echo(json.dumps(entry, ensure_ascii=False))
    click.echo(f"{len(drift)} account(s) with drift")
    if drift:
        sys.exit(1)


@points_group.command("expire", help="Expire due buckets and activate due pending points now.")
@with_appcontext
def expire() -> None:
    from backend.points.service import activate_due, expire_due

    with unit_of_work() as session:
        activated = activate_due(session)
        expired = expire_due(session)
    click.echo(f"activated {activated}, expired {expired}")
