"""Probe: a staff merge racing points earns for both customers (real threads, MariaDB)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import Customer
from backend.platform.db import db
from tests.threads import run_threads

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


@pytest.mark.parametrize("round_", range(3))
def test_merge_racing_earns_for_both_loses_nothing(app: Any, round_: int) -> None:
    from backend.customers.service import merge_customers
    from backend.platform.actors import SystemActor
    from backend.points import service as points
    from backend.points.models import PointsAccount, PointsLedger

    with app.app_context():
        s = db.session()
        a, b = Customer(name="甲"), Customer(name="乙")
        s.add_all([a, b])
        s.flush()
        points.earn(s, a.id, 10, key=f"p{round_}-a0", reason_code="manual", operator="system:test")
        points.earn(s, b.id, 20, key=f"p{round_}-b0", reason_code="manual", operator="system:test")
        s.commit()
        sid, tid = a.id, b.id
        db.session.remove()

    def go(i: int) -> Any:
        with app.app_context():
            s = db.session()
            if i == 0:
                merge_customers(s, SystemActor("test"), sid, tid, "probe")
            else:
                who = sid if i % 2 else tid
                points.earn(s, who, i, key=f"p{round_}-{i}", reason_code="manual", operator="system:test")
            s.commit()
            return "ok"

    results = run_threads(7, go)
    assert results == ["ok"] * 7, results
    with app.app_context():
        s = db.session()
        assert points.check_drift(s) == []
        assert set(s.scalars(select(PointsLedger.customer_id))) == {tid}
        assert s.scalar(select(PointsAccount.available).where(PointsAccount.customer_id == tid)) == 30 + sum(
            range(1, 7)
        )
        db.session.remove()
