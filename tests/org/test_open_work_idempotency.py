"""Review probes (both passing): the departure job `org.open_work.departed` has no dedup key; it
must do nothing for someone back at work, and two runs at once (a resign → reactivate → resign
leaves two jobs; RQ may deliver a job twice) must move each item once.

Written as review probes; both held.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from backend.consult.models import Conversation
from backend.leads.models import Lead
from backend.org.models import Staff
from backend.org.open_work import move_departed_work
from backend.platform.db import db
from backend.touchpoints.models import Touchpoint
from backend.wecom.directory import sync_directory
from tests.consult import conftest as consult_fixtures
from tests.consult.conftest import WB, World, open_conv
from tests.consult.test_advisor_departure_cases import directory, submit_lead
from tests.threads import run_threads
from tests.wecom.helpers import run_due_jobs

cworld = consult_fixtures.world  # the consultation tests' world, as a fixture here


def test_an_advisor_back_at_work_before_the_job_ran_keeps_their_work(
    client: Any, db_session: Any, app: Any, cworld: World, tree: Any, sandbox_reset: Any
) -> None:
    """WeCom disabled 王销售 by mistake and enabled him again; two syncs ran before the workers
    got to the departure job (a backlog). He is active when it runs: his lead and conversation
    stay his, nothing is written."""
    world = cworld
    lead_id = submit_lead(client, world.owner, {"type": "new_car", "series": "ID.4"})
    conv = open_conv(client, world.owner, "new_car", text="ID.4 有现车吗")
    directory(sandbox_reset, db_session, tree, "adv.sales")
    with app.app_context():
        assert sync_directory(db_session, app.config["WECOM_CORP_ID"])["deactivated"] == 1
        db_session.commit()  # a savepoint here: the job is not run yet
        sandbox_reset.state.set_member_status("adv.sales", "active")
        assert sync_directory(db_session, app.config["WECOM_CORP_ID"])["reactivated"] == 1
        db_session.commit()
    run_due_jobs(app)

    db_session.expire_all()
    assert db_session.get(Lead, lead_id).advisor_id == world.sales.id
    assert db_session.get(Conversation, conv["id"]).advisor_id == world.sales.id
    kinds = db_session.scalars(select(Touchpoint.kind).where(Touchpoint.customer_id == world.owner.id)).all()
    assert "consult_transferred" not in kinds and kinds.count("lead_assigned") == 1


@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_two_departure_jobs_at_once_move_each_item_once(
    app: Any, db_session: Any, cworld: World, tree: Any, sandbox_reset: Any
) -> None:
    """Two runs of the job for 王销售 at the same moment (two workers): the lead is routed once
    (one version step, one lead_assigned), the conversation released once (transfer 1 only)."""
    world = cworld
    client = app.test_client()
    lead_id = submit_lead(client, world.owner, {"type": "new_car", "series": "ID.4"})
    walk_in_conv = open_conv(client, world.walk_in, "new_car", text="想试驾")
    assert (
        client.post(f"{WB}/conversations/{walk_in_conv['id']}/claim", json={}, headers=world.sales.headers).status_code
        == 200
    )
    with app.app_context():
        session = db.session()
        version = session.get(Lead, lead_id).version
        session.execute(update(Staff).where(Staff.id == world.sales.id).values(status="resigned"))
        session.commit()
        db.session.remove()

    def job(_: int) -> Any:
        with app.app_context():
            session = db.session()
            moved = move_departed_work(session, world.sales.id)
            session.commit()
            return moved

    results = run_threads(2, job)
    assert all(isinstance(r, dict) for r in results), results
    run_due_jobs(app)

    with app.app_context():
        session = db.session()
        lead = session.get(Lead, lead_id)
        conv = session.get(Conversation, walk_in_conv["id"])
        assigned = session.scalars(
            select(Touchpoint).where(Touchpoint.kind == "lead_assigned", Touchpoint.customer_id == world.owner.id)
        ).all()
        released = session.scalars(
            select(Touchpoint).where(
                Touchpoint.kind == "consult_transferred", Touchpoint.customer_id == world.walk_in.id
            )
        ).all()
        got = (lead.advisor_id, lead.version, conv.advisor_id, conv.transfer_count, len(assigned), len(released))
        db.session.remove()
    assert got == (world.sales2.id, version + 1, None, 1, 2, 1), (results, got)
    assert sorted(r["leads"] + r["consultations"] for r in results) == [0, 2], results
