"""Points past their expiry cannot be spent, even before the hourly expiry job has swept them
(loyalty-booking-payments.md §1.2.2, §1.2.4); a spend racing the sweep expires them once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.customers.models import Customer
from backend.platform.db import db
from backend.platform.errors import AppError
from backend.points import service
from backend.points.models import LedgerKind, PointsLedger
from tests.threads import run_threads

NOW = datetime(2027, 1, 1, 0, 30, tzinfo=UTC)


def _earn(s: Any, cid: int, n: int, key: str, expiry: str, now: datetime) -> PointsLedger:
    return service.earn(s, cid, n, key=key, reason_code="test", operator="system:test", expiry=expiry, now=now)


def test_a_spend_after_expiry_but_before_the_sweep_cannot_use_the_expired_points(
    db_session: Any, make_customer: Any
) -> None:
    c = make_customer()
    _earn(db_session, c.id, 100, "old", "days:1", NOW - timedelta(days=2))  # expired a day ago, not swept
    _earn(db_session, c.id, 50, "new", "never", NOW - timedelta(days=2))
    with pytest.raises(AppError) as err:
        service.spend(db_session, c.id, 120, key="s1", reason_code="t", operator="member:1", now=NOW)
    assert err.value.code == "points.insufficient"
    row = service.spend(db_session, c.id, 50, key="s2", reason_code="t", operator="member:1", now=NOW)
    assert row.delta == -50
    acc = service.account(db_session, c.id)
    assert acc.available == 0
    kinds = db_session.scalars(select(PointsLedger.kind).where(PointsLedger.customer_id == c.id)).all()
    assert kinds.count(LedgerKind.EXPIRE) == 1
    assert service.check_drift(db_session, [c.id]) == []


@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_spends_racing_the_expiry_sweep_expire_each_bucket_once(app: Any) -> None:
    with app.app_context():
        s = db.session()
        c = Customer(name="过期竞争")
        s.add(c)
        s.flush()
        cid = c.id
        _earn(s, cid, 100, "old", "days:1", NOW - timedelta(days=2))
        _earn(s, cid, 60, "new", "never", NOW - timedelta(days=2))
        s.commit()
        db.session.remove()

    def act(i: int) -> Any:
        with app.app_context():
            s = db.session()
            if i % 2:
                result = service.expire_due(s, now=NOW)
            else:
                result = service.spend(s, cid, 20, key=f"race:{i}", reason_code="t", operator="member:1", now=NOW).id
            s.commit()
            return result

    results = run_threads(6, act)
    assert not [r for r in results if isinstance(r, Exception)], results
    with app.app_context():
        s = db.session()
        expired = s.scalar(
            select(func.coalesce(func.sum(PointsLedger.delta), 0)).where(PointsLedger.kind == LedgerKind.EXPIRE)
        )
        acc = service.account(s, cid)
        drift = service.check_drift(s, [cid])
        db.session.remove()
    assert expired == -100  # the old bucket expired once, whole: no spend took from it
    assert acc.available == 60 - 3 * 20 == 0
    assert drift == []
