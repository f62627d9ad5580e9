"""Review probes: work *routed* to an advisor while the directory sync resigns them, on MariaDB
with real connections. `lock_active` guards reassign, transfer, claim and (since 4940e93) the
booking's advisor: "work given to someone a sync is resigning is refused, or given first and
then moved, never stranded". The routing of an owner's lead (`leads.service.route`) and of an
owner's new conversation (`consult.service._assigned_advisor`) still read the advisor's status
without a lock.

The interleaving is made deterministic: the owner's request is stopped right after it chose the
advisor (status read: active); on another thread the sync commits the resignation and the
departure job runs (inline after the commit, as a worker would at once) — it cannot see the
owner's uncommitted row; then the owner's request goes on and commits. Should the sync wait on
a lock the request holds (a fixed routing), the request goes on at once and the sync after it.

Written as review probes, each of which failed: the routing of a lead and of a new conversation
now confirm the advisor with `lock_active`, and fall back to the next in turn (or the queue).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from backend.consult import service as consult_service
from backend.consult.models import Conversation
from backend.leads import service as leads_service
from backend.leads.models import Lead
from backend.org.models import Staff, StaffStatus
from backend.platform.db import db
from backend.wecom.models import AppMessage
from tests.consult import conftest as consult_fixtures
from tests.consult.conftest import World, open_conv, staff_says
from tests.consult.test_advisor_departure_cases import directory
from tests.consult.test_advisor_departure_races import run_sync
from tests.threads import lock_wait_seen
from tests.wecom.helpers import run_due_jobs

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


cworld = consult_fixtures.world  # the consultation tests' world, as a fixture here


def read(app: Any, fn: Callable[[Any], Any]) -> Any:
    with app.app_context():
        try:
            return fn(db.session())
        finally:
            db.session.remove()


def settled(app: Any, db_session: Any, tree: Any, sandbox: Any) -> None:
    """An earlier sync mapped the departments and found everyone; since, 王销售 left WeCom."""
    directory(sandbox, db_session, tree)
    db_session.commit()
    assert run_sync(app)["deactivated"] == 0
    sandbox.state.set_member_status("adv.sales", "resigned")


def sync_after_first_call(app: Any, monkeypatch: Any, module: Any, name: str) -> dict[str, Any]:
    """`module.name`'s first call returns its result only once the sync (on another thread, its
    own connection) has finished — or waits on a lock this request holds."""
    original = getattr(module, name)
    state: dict[str, Any] = {"thread": None, "stats": None, "error": None}

    def hooked(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if state["thread"] is None:
            done = threading.Event()

            def run() -> None:
                try:
                    state["stats"] = run_sync(app)
                except Exception as exc:  # surfaced in the assertions
                    state["error"] = exc
                finally:
                    db.session.remove()
                    done.set()

            state["thread"] = threading.Thread(target=run)
            state["thread"].start()
            state["sync_waited"] = lock_wait_seen(20, until=done)
        return result

    monkeypatch.setattr(module, name, hooked)
    return state


def finished(state: dict[str, Any]) -> None:
    assert state["thread"] is not None, "the hook was never called"
    state["thread"].join(30)
    assert state["error"] is None and state["stats"] and state["stats"]["deactivated"] == 1, state


def test_a_lead_routed_to_the_advisor_while_the_sync_resigns_him_is_not_stranded(
    app: Any, db_session: Any, cworld: World, tree: Any, sandbox_reset: Any, monkeypatch: Any
) -> None:
    """陈先生 submits a new-car lead; the router picks his assigned sales advisor 王销售 (active
    as it reads him). At that moment the directory sync resigns 王销售 and the departure job runs
    — the new lead is not committed yet, so the job cannot see it. When the submit commits, the
    lead must not end with 王销售, who no longer logs in: the only new_lead card went to him (and
    is failed, "recipient left"), nobody else is told, and no later job moves it. The routing
    should confirm its choice with `lock_active` (as `reassign` and the booking's `_advisor` do)
    and take the next in turn when he is gone."""
    world = cworld
    client = app.test_client()
    settled(app, db_session, tree, sandbox_reset)
    state = sync_after_first_call(app, monkeypatch, leads_service, "route")

    resp = client.post("/api/app/v1/leads", json={"type": "new_car", "series": "ID.4"}, headers=world.owner.headers)
    assert resp.status_code == 201, resp.get_json()
    lead_id = resp.get_json()["id"]
    finished(state)
    run_due_jobs(app)

    assert read(app, lambda s: s.get(Staff, world.sales.id).status) == StaffStatus.RESIGNED
    holder, routed_by = read(app, lambda s: (s.get(Lead, lead_id).advisor_id, s.get(Lead, lead_id).routed_by))
    cards = read(
        app,
        lambda s: [
            (m.touser, m.status) for m in s.scalars(select(AppMessage).where(AppMessage.kind == "new_lead")).all()
        ],
    )
    assert holder != world.sales.id, (
        f"the open lead is stranded with resigned 王销售 (routed_by {routed_by}); new_lead cards: {cards}"
    )


def test_a_conversation_opened_to_the_advisor_while_the_sync_resigns_him_is_not_stranded(
    app: Any, db_session: Any, cworld: World, tree: Any, sandbox_reset: Any, monkeypatch: Any
) -> None:
    """陈先生 opens a new-car consultation; it goes to his sales advisor 王销售 (active as read).
    The sync resigns 王销售 and the departure job runs before the conversation is committed. The
    conversation must end in the store's queue (or with someone who stays): left with 王销售,
    李销售 — told of every owner message by the fallback in `_answerers` — cannot open, answer
    or claim it (an advisor sees their own and the unclaimed), and no later job moves it."""
    world = cworld
    client = app.test_client()
    settled(app, db_session, tree, sandbox_reset)
    state = sync_after_first_call(app, monkeypatch, consult_service, "_assigned_advisor")

    conv = open_conv(client, world.owner, "new_car", text="ID.4 有现车吗")
    finished(state)
    run_due_jobs(app)

    holder = read(app, lambda s: s.get(Conversation, conv["id"]).advisor_id)
    answer = staff_says(client, world.sales2, conv["id"], "您好，我来为您服务")
    assert holder != world.sales.id and answer.status_code == 201, (
        f"the conversation is stranded with resigned 王销售 (advisor_id {holder}); "
        f"李销售 answering: {answer.status_code}"
    )
