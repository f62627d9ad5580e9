"""Probe: a daily sign-in of a customer whom staff are merging into one who signed in today."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import Customer
from backend.platform.db import db
from backend.platform.errors import AppError
from tests.threads import attempt, held_merge

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def test_signin_racing_a_merge_lands_on_the_survivor_once_a_day(app: Any) -> None:
    from backend.points import service as points
    from backend.points.models import PointsLedger, PointsSignin
    from backend.points.signin import sign_in

    with app.app_context():
        s = db.session()
        a, b = Customer(name="甲"), Customer(name="乙")
        s.add_all([a, b])
        s.flush()
        sign_in(s, b.id)
        s.commit()
        sid, tid = a.id, b.id
        db.session.remove()
    with held_merge(app, sid, tid):
        outcome = attempt(app, lambda s: sign_in(s, sid))  # the member resolved before the merge committed
    assert outcome == "signin.already_signed"
    with app.app_context():
        s = db.session()
        assert set(s.scalars(select(PointsSignin.customer_id))) == {tid}
        assert len(s.scalars(select(PointsLedger.id)).all()) == 1
        assert points.check_drift(s) == []
        db.session.remove()


def test_concurrent_signins_of_one_member_sign_once_without_deadlock(app: Any) -> None:
    from backend.points.signin import sign_in
    from tests.threads import run_threads

    with app.app_context():
        s = db.session()
        c = Customer(name="连点")
        s.add(c)
        s.commit()
        cid = c.id
        db.session.remove()

    def go(i: int) -> str:
        with app.app_context():
            s = db.session()
            try:
                sign_in(s, cid)
                s.commit()
                return "signed"
            except AppError as exc:
                s.rollback()
                return exc.code

    assert sorted(run_threads(4, go)) == ["signed"] + ["signin.already_signed"] * 3
