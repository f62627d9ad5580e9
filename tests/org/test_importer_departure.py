"""The staff import marking an advisor resigned sends their open leads back to the store's
routing, as the WeCom directory sync does (backend.org.open_work)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import Customer
from backend.leads.models import Lead, LeadStatus, LeadType
from backend.org.models import Staff
from backend.platform.db import utcnow
from backend.touchpoints.models import Touchpoint
from tests.org.test_importer import STAFF, UNITS, _run, _write
from tests.wecom.helpers import run_due_jobs

pytestmark = [pytest.mark.usefixtures("app_ctx")]


def imported_with_leads(db_session: Any, tmp_path: Path, *statuses: LeadStatus) -> tuple[dict[str, Staff], list[int]]:
    """The units and staff imported, then a customer of imp-sales's store with a new-car lead of
    imp-sales in each of `statuses`: the staff by userid, the leads' ids."""
    assert _run(_write(tmp_path, "units.csv", UNITS), _write(tmp_path, "staff.csv", STAFF))[0]
    staff = {s.wecom_userid: s for s in db_session.scalars(select(Staff))}
    store_id = staff["imp-sales"].org_unit_id
    customer = Customer(name="黄先生", home_store_id=store_id)
    db_session.add(customer)
    db_session.flush()
    leads = [
        Lead(
            customer_id=customer.id,
            store_id=store_id,
            type=LeadType.NEW_CAR,
            status=status,
            advisor_id=staff["imp-sales"].id,
            routed_role="sales_advisor",
            routed_by="round_robin",
            subject="series:A6L",
            contact_due_at=utcnow() + timedelta(hours=1),
        )
        for status in statuses
    ]
    db_session.add_all(leads)
    db_session.commit()
    return staff, [lead.id for lead in leads]


def test_an_advisor_the_import_resigns_leaves_their_open_leads_to_the_routing(
    app: Any, db_session: Any, tmp_path: Path
) -> None:
    staff, (open_lead_id, won_lead_id) = imported_with_leads(db_session, tmp_path, LeadStatus.CONTACTED, LeadStatus.WON)

    resigned = STAFF.replace("imp-sales,陈顾问,S91,sales_advisor,active", "imp-sales,陈顾问,S91,sales_advisor,resigned")
    assert _run(None, _write(tmp_path, "staff2.csv", resigned))[0]
    run_due_jobs(app)  # the departed advisor's work is moved by a job of its own

    db_session.expire_all()
    # The store's other sales advisor (the manager also sells) takes the open lead; the won one
    # stays in the books as it was.
    moved = db_session.get(Lead, open_lead_id)
    assert (moved.advisor_id, moved.routed_by, moved.status) == (staff["imp-mgr"].id, "round_robin", "contacted")
    assert db_session.get(Lead, won_lead_id).advisor_id == staff["imp-sales"].id
    tp = db_session.scalars(select(Touchpoint).where(Touchpoint.kind == "lead_assigned")).one()
    assert tp.advisor_id == staff["imp-mgr"].id
    assert (tp.payload["previous_advisor_id"], tp.payload["by"]) == (staff["imp-sales"].id, "departure")
