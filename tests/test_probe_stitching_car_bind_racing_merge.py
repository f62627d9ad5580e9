"""Probe: a member binding a car while staff merge them into another customer."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import Car, Customer
from backend.platform.actors import MemberActor
from backend.platform.db import db
from tests.threads import attempt, held_merge

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def test_car_bound_racing_a_merge_belongs_to_the_survivor(app: Any) -> None:
    from backend.customers.service import add_car

    with app.app_context():
        s = db.session()
        a, b = Customer(name="甲"), Customer(name="乙")
        s.add_all([a, b])
        s.commit()
        sid, tid = a.id, b.id
        db.session.remove()
    car = {"vin": "LFV2A21K7G3000001", "brand": "大众", "model": "帕萨特"}
    with held_merge(app, sid, tid):
        # the member's request resolved them before the merge committed
        outcome = attempt(app, lambda s: add_car(s, MemberActor(customer_id=sid), car))
    with app.app_context():
        s = db.session()
        owners = s.scalars(select(Car.customer_id)).all()
        db.session.remove()
    assert (outcome, owners) == ("done", [tid])
