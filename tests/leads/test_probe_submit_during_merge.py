"""A lead submitted by an owner whose customer row is merged away while the request runs goes to
the surviving customer, not to the hidden source (MariaDB, two connections)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.leads.models import Lead
from backend.platform.db import db
from tests.threads import run_threads


@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_a_lead_submitted_while_its_owner_is_merged_away_goes_to_the_survivor(
    app: Any, tree: Any, make_staff: Any, sandbox_reset: Any
) -> None:
    from backend.customers.models import Customer
    from backend.customers.service import member_customer, merge_customers
    from backend.leads import service
    from backend.platform.actors import MemberActor, SystemActor

    make_staff(tree.stores[0], "sales_advisor", userid="merge.sales")
    with app.app_context():
        s = db.session()
        source = Customer(name="合并前车主", home_store_id=tree.stores[0].id)
        survivor = Customer(name="合并后车主", home_store_id=tree.stores[0].id)
        s.add_all([source, survivor])
        s.commit()
        source_id, survivor_id = source.id, survivor.id

    def merge(_i: int) -> None:
        with app.app_context():
            session = db.session()
            merge_customers(session, SystemActor("test"), source_id, survivor_id, "同一人")
            session.commit()

    with app.app_context():
        session = db.session()
        # The request resolved its owner (the source, still live) ...
        customer = member_customer(session, MemberActor(customer_id=source_id))
        # ... and a merge commits before the submit takes the owner's lock.
        assert run_threads(1, merge) == [None]
        lead = service.submit(session, customer, {"type": "new_car", "series": "ID.4"})
        session.commit()
        lead_id = lead.id

    with app.app_context():
        s = db.session()
        assert s.scalar(select(Lead.customer_id).where(Lead.id == lead_id)) == survivor_id
        assert [lead.id for lead in service.member_leads(s, survivor_id)] == [lead_id]
