"""Probe: a member opening a consultation while staff merge them into another customer."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import Customer
from backend.platform.actors import MemberActor
from backend.platform.db import db
from tests.threads import attempt, held_merge

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def test_consultation_opened_racing_a_merge_belongs_to_the_survivor(app: Any, db_session: Any, tree: Any) -> None:
    from backend.consult.models import Conversation
    from backend.consult.service import open_conversation

    a, b = Customer(name="甲"), Customer(name="乙")
    db_session.add_all([a, b])
    db_session.commit()
    sid, tid, store_id = a.id, b.id, tree.stores[0].id

    def open_as_the_request_does(s: Any) -> Any:
        member = MemberActor(customer_id=s.get(Customer, sid).id)  # the actor, loaded before the merge committed
        return open_conversation(
            s, member, topic="other", store_id=store_id, message={"kind": "text", "text": "保养多少钱"}
        )

    with held_merge(app, sid, tid):
        outcome = attempt(app, open_as_the_request_does)
    with app.app_context():
        s = db.session()
        askers = s.scalars(select(Conversation.customer_id)).all()
        db.session.remove()
    assert (outcome, askers) == ("done", [tid])
