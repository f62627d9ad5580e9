"""Review probe: a consultation a departed advisor had closed is reopened by the owner after the
departure job ran. The job moves only open conversations, so the reopened one still names the
advisor who left: the store's advisors are told of the owner's message (`_answerers`), but an
advisor's scope (`_conversation_rule`: theirs, or unclaimed of their store) hides it from them.

Written as a review probe that failed: `_reopen` now sends a conversation whose advisor may no
longer hold it back to the store's queue, and the topic's advisors are told.
"""

from __future__ import annotations

from typing import Any

from backend.consult.models import Conversation
from tests.consult import conftest as consult_fixtures
from tests.consult.conftest import APP, WB, World, open_conv, owner_says, staff_says
from tests.consult.test_advisor_departure_cases import directory, sync, told_to

cworld = consult_fixtures.world  # the consultation tests' world, as a fixture here


def test_a_conversation_reopened_after_its_advisor_left_can_be_answered_by_the_store(
    client: Any, db_session: Any, app: Any, cworld: World, tree: Any, sandbox_reset: Any
) -> None:
    """刘女士's question was answered and closed by 王销售, who then leaves (the sync resigns him,
    the departure job runs: a closed conversation is history and stays his). A week later she
    reopens it and writes again. The store's sales advisors are told to answer (李销售 gets the
    card), so 李销售 must be able to open and answer it — or claim it from the queue. Otherwise
    the owner waits on a conversation only a manager could rescue by a manual transfer, and the
    advisor who was told to answer gets 404."""
    world = cworld
    conv = open_conv(client, world.walk_in, "new_car", text="想试驾")
    assert staff_says(client, world.sales, conv["id"], "可以，周六来").status_code == 201  # claims
    assert (
        client.post(f"{WB}/conversations/{conv['id']}/close", json={}, headers=world.sales.headers).status_code == 200
    )

    directory(sandbox_reset, db_session, tree, "adv.sales")
    assert sync(app, db_session)["deactivated"] == 1

    assert client.post(
        f"{APP}/conversations/{conv['id']}/reopen", json={}, headers=world.walk_in.headers
    ).status_code in (
        200,
        201,
    )
    assert owner_says(client, world.walk_in, conv["id"], "周六改周日可以吗").status_code == 201
    assert "adv.sales2" in told_to(db_session, "new_consultation", f"consult:{conv['id']}:")

    db_session.expire_all()
    reopened = db_session.get(Conversation, conv["id"])
    answer = staff_says(client, world.sales2, conv["id"], "可以的")
    assert answer.status_code == 201, (
        f"李销售 was told to answer but gets {answer.status_code} {answer.get_json()}; "
        f"the reopened conversation still names advisor {reopened.advisor_id} (王销售 left: {world.sales.id})"
    )


def test_a_conversation_the_store_manager_held_is_still_theirs_when_reopened(
    client: Any, db_session: Any, cworld: World
) -> None:
    """The store manager claimed a walk-in's service question, answered and closed it; the owner
    reopens it. The manager still manages the store (and may claim any of its conversations):
    it stays theirs, not sent back to the queue as if they had left."""
    world = cworld
    conv = open_conv(client, world.walk_in, "service", text="保养多少钱？")
    assert (
        client.post(f"{WB}/conversations/{conv['id']}/claim", json={}, headers=world.manager.headers).status_code == 200
    )
    assert staff_says(client, world.manager, conv["id"], "五百左右").status_code == 201
    closed = client.post(f"{WB}/conversations/{conv['id']}/close", json={}, headers=world.manager.headers)
    assert closed.status_code == 200
    reopened = client.post(f"{APP}/conversations/{conv['id']}/reopen", json={}, headers=world.walk_in.headers)
    assert reopened.status_code in (200, 201), reopened.get_json()

    db_session.expire_all()
    row = db_session.get(Conversation, conv["id"])
    assert (row.advisor_id, row.transfer_count) == (world.manager.id, 0)
