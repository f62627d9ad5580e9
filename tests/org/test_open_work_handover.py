"""The WeCom resigned handover (离职继承) and the departure job, in the order they
must happen. `start_handover` refuses a resigned handover until dealerloop has the advisor as
resigned (409 wecom.handover_not_resigned) — and the active → resigned change enqueues the
departure job, which runs at once and sends every open item to the store's routing. So by the
time `_take_over` calls `move_open_work(handing, takeover, roles=None)` ("a resigned advisor's
all, to the takeover where they may take them") the leaver holds nothing any more: the open
work never follows the customer to the advisor who inherits them.

Written as a review probe that failed: `_take_over` now also gives the takeover the customer's
work that nobody holds (the queue, unassigned) where they may take it; what someone took since
stays theirs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.consult.models import Conversation
from backend.customers.models import CustomerAdvisor
from backend.leads.models import Lead
from tests.consult import conftest as consult_fixtures
from tests.consult.conftest import World, open_conv
from tests.consult.test_advisor_departure_cases import directory, make_friend, submit_lead, sync
from tests.wecom.helpers import run_due_jobs

cworld = consult_fixtures.world  # the consultation tests' world, as a fixture here


def test_a_resigned_handover_gives_the_customer_s_queued_conversation_to_the_advisor_who_inherits_him(
    client: Any,
    db_session: Any,
    app: Any,
    cworld: World,
    tree: Any,
    sandbox_reset: Any,
    make_staff: Any,
) -> None:
    """王销售 leaves. WeCom removes him; the directory sync resigns him and his departure job
    puts 陈先生's open new-car consultation back in the store's queue. The store manager then
    hands 王销售's customers to 张销售 (离职继承), as the handover feature is for: 张销售 is now
    陈先生's sales advisor. 陈先生's open new-car consultation — still unclaimed in the queue —
    must go to 张销售 with him (the handover's own rule: the customer's open work of the moved
    role goes with the customer), not wait in the queue for whoever claims it first."""
    world = cworld
    zhang = make_staff(tree.stores[0], "sales_advisor", userid="adv.sales3", name="张销售")
    make_friend(app, db_session, sandbox_reset, world)
    conv = open_conv(client, world.owner, "new_car", text="ID.4 有现车吗")
    lead_id = submit_lead(client, world.owner, {"type": "new_car", "series": "ID.4"})
    assert db_session.get(Conversation, conv["id"]).advisor_id == world.sales.id

    directory(sandbox_reset, db_session, tree, "adv.sales")
    assert sync(app, db_session)["deactivated"] == 1
    db_session.expire_all()
    assert db_session.get(Conversation, conv["id"]).advisor_id is None  # the departure job ran

    resp = client.post(
        "/api/workbench/v1/wecom/handovers",
        headers=world.manager.headers,
        json={
            "kind": "resigned",
            "handover_staff_id": world.sales.id,
            "takeover_staff_id": zhang.id,
            "external_userids": ["wmOwnerChen"],
        },
    )
    assert resp.status_code == 202, resp.get_json()
    run_due_jobs(app)

    db_session.expire_all()
    advisors = db_session.scalars(
        select(CustomerAdvisor.staff_id).where(
            CustomerAdvisor.customer_id == world.owner.id, CustomerAdvisor.role == "sales_advisor"
        )
    ).all()
    assert advisors == [zhang.id]  # the handover itself went through: 张销售 is his sales advisor
    moved = db_session.get(Conversation, conv["id"])
    lead = db_session.get(Lead, lead_id)
    assert moved.advisor_id == zhang.id, (
        f"陈先生's open consultation stays with advisor {moved.advisor_id} (the queue) after 张销售 ({zhang.id}) "
        f"inherited him; his open lead is with {lead.advisor_id} ({lead.routed_by})"
    )
