"""The demo leads: listings in every status in every store, leads of every type and status,
shown through the workbench; a second seed run adds nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.leads.models import Lead, Listing
from backend.org.models import Staff
from backend.seed import DEMO_MANAGER, seed_demo
from backend.touchpoints.models import Touchpoint

pytestmark = [pytest.mark.usefixtures("app_ctx")]


def test_seed_makes_listings_and_leads_in_several_states_once(
    app: Any, db_session: Any, client: Any, staff_headers: Any
) -> None:
    report = seed_demo(customers=12)
    assert "leads: 30 listings, 10 leads" in report
    statuses = db_session.scalars(select(Listing.status)).all()
    assert {s.value for s in statuses} == {"on_sale", "reserved", "sold", "withdrawn"}
    leads = db_session.scalars(select(Lead)).all()
    assert {lead.type.value for lead in leads} == {"new_car", "used_car", "trade_in", "loan", "insurance", "accident"}
    assert {lead.status.value for lead in leads} == {"new", "contacted", "appointment", "won", "lost"}
    assert all(lead.advisor_id for lead in leads)
    assert sum(1 for lead in leads if lead.escalated_at) == 1
    assert any(lead.tow_requested and lead.repair_booking_requested for lead in leads)
    tp = db_session.scalar(select(func.count()).select_from(Touchpoint).where(Touchpoint.source == "leads"))
    assert tp >= 20
    again = seed_demo(customers=12)
    assert "leads: 0 listings, 0 leads" in again
    assert db_session.scalar(select(func.count()).select_from(Lead)) == 10
    manager = db_session.scalars(select(Staff).where(Staff.wecom_userid == DEMO_MANAGER)).one()
    page = client.get("/api/workbench/v1/leads", headers=staff_headers(manager)).get_json()
    mine = [lead for lead in leads if lead.store_id == manager.org_unit_id]
    assert page["total"] == len(mine) > 0
