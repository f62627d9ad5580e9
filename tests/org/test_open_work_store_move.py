"""Review probe: an advisor who moves to another store (WeCom moves them to another department;
the directory sync changes their org node) rather than resigns. Only the active → resigned
change calls `staff_departed`; a change of store moves nothing, so the old store's open work
stays with someone who now works elsewhere, and the old store's routing keeps using them.

Written as review probes, each of which failed: the directory sync now calls `staff_moved` on a
change of store (the movers keep only what `may_take` allows), and a new conversation goes to
the customer's advisor only if they work at its store in the topic's role.
"""

from __future__ import annotations

from typing import Any

from backend.consult.models import Conversation
from backend.leads.models import Lead
from backend.org.models import Staff
from integrations.sandbox import wecom_ops
from tests.consult import conftest as consult_fixtures
from tests.consult.conftest import World, open_conv
from tests.consult.test_advisor_departure_cases import OTHER_DEPARTMENT, directory, submit_lead, sync

cworld = consult_fixtures.world  # the consultation tests' world, as a fixture here


def move_sales_to_other_store(app: Any, db_session: Any, tree: Any, sandbox: Any) -> None:
    """WeCom: 王销售 (adv.sales) now belongs to the other store's department; the sync follows."""
    directory(sandbox, db_session, tree)
    wecom_ops.place_member(sandbox.state, "adv.sales", [OTHER_DEPARTMENT])
    stats = sync(app, db_session)
    assert stats["deactivated"] == 0
    db_session.expire_all()


def test_an_advisor_moved_to_another_store_leaves_the_old_store_s_open_lead_to_its_routing(
    client: Any, db_session: Any, app: Any, cworld: World, tree: Any, sandbox_reset: Any
) -> None:
    """陈先生's new-car lead at store 0 is 王销售's. 王销售 is transferred to store 3. The lead is
    store 0's (its showroom, its cars, its manager's numbers), and `may_take` itself says an item
    belongs with an advisor "of the item's store": it must go to store 0's routing (李销售), as
    when he resigns. Otherwise store 0's lead is worked — or not — by a colleague of another
    store, and store 0's manager cannot reassign it to him any more (reassign requires the
    lead's store)."""
    world = cworld
    lead_id = submit_lead(client, world.owner, {"type": "new_car", "series": "ID.4"})
    assert db_session.get(Lead, lead_id).advisor_id == world.sales.id

    move_sales_to_other_store(app, db_session, tree, sandbox_reset)
    assert db_session.get(Staff, world.sales.id).org_unit_id == world.other_store.id

    lead = db_session.get(Lead, lead_id)
    assert lead.store_id == world.store.id
    assert lead.advisor_id == world.sales2.id, (
        f"store {world.store.id}'s open lead stays with advisor {lead.advisor_id}, now of store "
        f"{db_session.get(Staff, lead.advisor_id).org_unit_id}"
    )


def test_an_advisor_moved_to_another_store_leaves_the_old_store_s_open_conversation_to_its_queue(
    client: Any, db_session: Any, app: Any, cworld: World, tree: Any, sandbox_reset: Any
) -> None:
    """陈先生's open new-car consultation at store 0 is 王销售's (his assigned advisor). After 王销售
    moves to store 3, the conversation (store 0's SLA, store 0's queue) must go back to store 0's
    queue — or to store 0's sales advisor — not stay with someone of another store."""
    world = cworld
    conv = open_conv(client, world.owner, "new_car", text="ID.4 有现车吗")
    assert db_session.get(Conversation, conv["id"]).advisor_id == world.sales.id

    move_sales_to_other_store(app, db_session, tree, sandbox_reset)

    moved = db_session.get(Conversation, conv["id"])
    assert moved.store_id == world.store.id
    assert moved.advisor_id in (None, world.sales2.id), (
        f"store {world.store.id}'s open conversation stays with advisor {moved.advisor_id} of store "
        f"{db_session.get(Staff, world.sales.id).org_unit_id}"
    )


def test_a_new_conversation_at_the_home_store_does_not_go_to_an_assigned_advisor_now_of_another_store(
    client: Any, db_session: Any, app: Any, cworld: World, tree: Any, sandbox_reset: Any
) -> None:
    """After 王销售 moved to store 3, 陈先生 (home store 0, 王销售 still his assigned sales advisor
    on record) opens a new-car consultation at store 0. The lead router only routes to an
    assigned advisor of the lead's store (`route`: Staff.org_unit_id == store_id); the
    conversation must likewise go to store 0's queue (or store 0's sales advisor), not to an
    advisor of another store. Actual: `_assigned_advisor` checks neither store nor role."""
    world = cworld
    move_sales_to_other_store(app, db_session, tree, sandbox_reset)

    conv = open_conv(client, world.owner, "new_car", text="ID.4 有现车吗")
    row = db_session.get(Conversation, conv["id"])
    assert row.advisor_id in (None, world.sales2.id), (
        f"a store {row.store_id} conversation was given to advisor {row.advisor_id} of store "
        f"{db_session.get(Staff, row.advisor_id).org_unit_id}"
    )
