"""Review probes: the staff import (backend/org/importer.py `apply_staff`) changing an advisor's
store or roles while they stay active. Only active → resigned calls `staff_departed`; a new
store or a lost role moves nothing, although `may_take` (an item is held by someone active, of
the item's store, holding its role) then no longer holds for their open work.

Written as review probes, each of which failed: the import now calls `staff_moved` on a change
of store or a lost role, and the movers keep only what `may_take` allows the advisor now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backend.leads.models import Lead, LeadStatus
from backend.org.models import Staff
from tests.org.test_importer import STAFF, _run, _write
from tests.org.test_importer_departure import imported_with_leads
from tests.wecom.helpers import run_due_jobs

pytestmark = [pytest.mark.usefixtures("app_ctx")]

SALES_ROW = "imp-sales,陈顾问,S91,sales_advisor,active"


def open_lead_of_imp_sales(app: Any, db_session: Any, tmp_path: Path) -> tuple[dict[str, Staff], int]:
    staff, (lead_id,) = imported_with_leads(db_session, tmp_path, LeadStatus.NEW)
    return staff, lead_id


def reimport(app: Any, db_session: Any, tmp_path: Path, row: str) -> None:
    assert _run(None, _write(tmp_path, "staff2.csv", STAFF.replace(SALES_ROW, row)))[0]
    run_due_jobs(app)
    db_session.expire_all()


def test_an_advisor_the_import_moves_to_another_store_leaves_the_old_store_s_open_lead(
    app: Any, db_session: Any, tmp_path: Path
) -> None:
    """陈顾问 is transferred from 天河 (S91) to 白云 (S92) in the staff file. 黄先生's new-car lead
    is 天河's and nobody at 天河 works it any more: it must go to 天河's routing (张店长, who also
    sells), as when the import resigns him (tests/org/test_importer_departure.py)."""
    staff, lead_id = open_lead_of_imp_sales(app, db_session, tmp_path)
    reimport(app, db_session, tmp_path, "imp-sales,陈顾问,S92,sales_advisor,active")

    assert db_session.get(Staff, staff["imp-sales"].id).org_unit_id != staff["imp-mgr"].org_unit_id
    lead = db_session.get(Lead, lead_id)
    assert lead.advisor_id == staff["imp-mgr"].id, (
        f"天河's open lead stays with 陈顾问 (now of 白云): advisor {lead.advisor_id}, routed_by {lead.routed_by}"
    )


def test_an_advisor_who_no_longer_sells_leaves_their_open_new_car_lead(
    app: Any, db_session: Any, tmp_path: Path
) -> None:
    """陈顾问 stays at 天河 but becomes a service advisor (the file now gives him service_advisor
    only). His open new-car lead needs a salesperson: it must go to 天河's sales routing
    (张店长), not stay with someone whose workbench no longer treats him as sales."""
    staff, lead_id = open_lead_of_imp_sales(app, db_session, tmp_path)
    reimport(app, db_session, tmp_path, "imp-sales,陈顾问,S91,service_advisor,active")

    assert {r.value for r in db_session.get(Staff, staff["imp-sales"].id).roles} == {"service_advisor"}
    lead = db_session.get(Lead, lead_id)
    assert lead.advisor_id == staff["imp-mgr"].id, (
        f"the new-car lead stays with 陈顾问, no longer a sales advisor: advisor {lead.advisor_id}"
    )
