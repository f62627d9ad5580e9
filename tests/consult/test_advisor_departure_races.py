"""An advisor's open work goes on without them, under real concurrency (threads on MariaDB, each with its own
connection and transaction): the WeCom directory sync resigning 王销售 while owners, advisors and
managers act on his open work.

Interleavings are made deterministic with hooks: the sync pauses at a named point (events), the
other request runs into it, and a monitor releases the sync once InnoDB shows a lock wait (or
after a short timeout when nothing waits).

Written as review probes of 509e6ed: the first block's each showed a defect (since fixed), the
second's held.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, update

from backend.consult.models import Conversation, Message
from backend.leads import service as leads_service
from backend.leads.models import Lead
from backend.org.models import Staff
from backend.platform.db import db
from backend.touchpoints.models import Touchpoint
from backend.wecom import directory as directory_module
from backend.wecom.directory import sync_directory
from tests.consult import test_advisor_departure_cases as departure_cases
from tests.consult.conftest import WB, World, open_conv, owner_says, staff_says
from tests.consult.test_advisor_departure_cases import submit_lead
from tests.threads import lock_wait_seen, run_threads
from tests.wecom.helpers import run_due_jobs

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]

LEADS = "/api/workbench/v1/leads"


# ------------------------------------------------------------------------------------ helpers


def directory(sandbox: Any, db_session: Any, tree: Any, *gone: str) -> None:
    """WeCom's directory as the departure cases set it (every staff member in their store's
    department, `gone` left), then the reading transaction ended before other connections write."""
    departure_cases.directory(sandbox, db_session, tree, *gone)
    db_session.commit()


class Pause:
    """The sync stops at `reached` until `go`; the monitor lets it go on once another request
    waits on a lock (or after `timeout`)."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()
        self.lock_waited = False

    def stop_here(self) -> None:
        if not self.reached.is_set():
            self.reached.set()
            self.go.wait(15)

    def monitor(self, timeout: float = 4.0) -> None:
        try:
            assert self.reached.wait(15), "the sync never reached the pause"
            self.lock_waited = lock_wait_seen(timeout)
        finally:
            self.go.set()


def run_sync(app: Any) -> dict[str, int]:
    """The directory sync, committed, then the jobs it left in this same thread (the departed
    advisors' work is moved by one, after the resignation is committed)."""
    with app.app_context():
        session = db.session()
        try:
            stats = sync_directory(session, app.config["WECOM_CORP_ID"])
            session.commit()
        except Exception:
            session.rollback()
            raise
        finally:
            db.session.remove()
    run_due_jobs(app)
    return stats


def pause_departure(monkeypatch: Any, pause: Pause, *, after: bool) -> None:
    """The sync stops at a leaver's departure: once their staff row is updated, before their work
    is moved; or, `after`, once their open work is moved (before commit)."""
    original = directory_module.staff_departed

    def hooked(session: Any, staff: Any, now: Any) -> Any:
        if not after:
            pause.stop_here()
        moved = original(session, staff, now)
        if after:
            pause.stop_here()
        return moved

    monkeypatch.setattr(directory_module, "staff_departed", hooked)


def race(pause: Pause, sync: Callable[[], Any], request: Callable[[], Any]) -> tuple[Any, Any]:
    """`sync`, `request` once the sync reached `pause`, and the pause's monitor on three threads
    released at once: what the sync and the request returned (or raised)."""

    def act(i: int) -> Any:
        if i == 0:
            return sync()
        if i == 1:
            assert pause.reached.wait(15)
            return request()
        return pause.monitor()

    sync_result, answer, _ = run_threads(3, act)
    return sync_result, answer


def race_departure(app: Any, monkeypatch: Any, request: Callable[[], Any], *, after: bool) -> tuple[Any, Any]:
    """`race` of the directory sync, paused at the leaver's departure (`pause_departure`), and
    `request`: what each returned (or raised)."""
    pause = Pause()
    pause_departure(monkeypatch, pause, after=after)
    return race(pause, lambda: run_sync(app), request)


def read(app: Any, fn: Any) -> Any:
    with app.app_context():
        try:
            return fn(db.session())
        finally:
            db.session.remove()


def status(result: Any) -> Any:
    return getattr(result, "status_code", repr(result))


# ============================================================================================
# Defects found on review (fixed)
# ============================================================================================


def test_an_owner_submitting_a_lead_while_the_sync_moves_theirs_does_not_deadlock(
    app: Any, db_session: Any, world: World, tree: Any, sandbox_reset: Any, monkeypatch: Any
) -> None:
    """陈先生's open lead is being routed again (the mover holds the lead, then the store row in
    `route`, then wants the customer row in `record`) while 陈先生 submits another lead (`submit`
    holds the customer row FOR UPDATE, then wants the store row in `route`): opposite lock
    orders. Expected: both succeed, one after the other. Actual: InnoDB deadlock, one fails."""
    client = app.test_client()
    lead_id = submit_lead(client, world.owner, {"type": "new_car", "series": "ID.4"})
    directory(sandbox_reset, db_session, tree, "adv.sales")
    pause = Pause()
    in_sync = threading.local()
    original_route = leads_service.route

    def hooked_route(session: Any, *args: Any, **kwargs: Any) -> Any:
        chosen = original_route(session, *args, **kwargs)
        if getattr(in_sync, "yes", False):
            pause.stop_here()
        return chosen

    monkeypatch.setattr(leads_service, "route", hooked_route)

    def sync() -> Any:
        in_sync.yes = True
        return run_sync(app)

    sync_result, submitted = race(
        pause,
        sync,
        lambda: client.post(
            "/api/app/v1/leads", json={"type": "new_car", "series": "帕萨特"}, headers=world.owner.headers
        ),
    )
    assert isinstance(sync_result, dict), f"the directory sync failed: {sync_result!r}"
    assert status(submitted) == 201, getattr(submitted, "get_json", lambda: submitted)()
    assert read(app, lambda s: s.get(Lead, lead_id).advisor_id) == world.sales2.id


def test_an_owner_writing_while_the_sync_resigns_the_advisor_does_not_deadlock(
    app: Any, db_session: Any, world: World, tree: Any, sandbox_reset: Any, monkeypatch: Any
) -> None:
    """The sync has updated 王销售's staff row (X lock) and is about to move his conversation;
    陈先生 writes in it: the owner's request locks the conversation, then its touchpoint
    (advisor_id → staff) waits on the staff row, while the mover waits on the conversation.
    Expected: both succeed, the message stored and the conversation back in the queue.
    Actual: InnoDB deadlock, one of them fails."""
    client = app.test_client()
    conv = open_conv(client, world.owner, "new_car", text="ID.4 有现车吗")
    assert staff_says(client, world.sales, conv["id"], "有的").status_code == 201
    directory(sandbox_reset, db_session, tree, "adv.sales")
    sync_result, said = race_departure(
        app,
        monkeypatch,
        lambda: owner_says(client, world.owner, conv["id"], "什么时候能提车？", client_id="race-1"),
        after=False,
    )
    assert isinstance(sync_result, dict), f"the directory sync failed: {sync_result!r}"
    assert status(said) == 201, getattr(said, "get_json", lambda: said)()
    assert read(app, lambda s: s.get(Conversation, conv["id"]).advisor_id) is None
    assert read(app, lambda s: len(s.scalars(select(Message).where(Message.conversation_id == conv["id"])).all())) == 3


def test_a_manager_reassigning_a_lead_to_the_leaver_during_the_sync_does_not_strand_it(
    app: Any, db_session: Any, world: World, tree: Any, sandbox_reset: Any, monkeypatch: Any
) -> None:
    """孙店长 gives 刘女士's lead (李销售's) to 王销售 while the sync is resigning 王销售 (his own
    work already moved, not committed). `reassign` reads him as active (READ COMMITTED), then
    waits on his staff row and commits after the sync. Expected: refused (422) or the lead
    with someone active. Actual: the lead is held by a resigned advisor, whom no sync moves
    again (staff_departed only runs on the active → resigned transition)."""
    client = app.test_client()
    lead_id = submit_lead(client, world.walk_in, {"type": "new_car", "series": "ID.3"})
    with app.app_context():
        db.session().execute(update(Lead).where(Lead.id == lead_id).values(advisor_id=world.sales2.id))
        db.session().commit()
        db.session.remove()
    directory(sandbox_reset, db_session, tree, "adv.sales")
    sync_result, reassigned = race_departure(
        app,
        monkeypatch,
        lambda: client.post(
            f"{LEADS}/{lead_id}/reassign", json={"advisor_id": world.sales.id}, headers=world.manager.headers
        ),
        after=True,
    )
    assert isinstance(sync_result, dict), sync_result
    holder = read(app, lambda s: s.get(Staff, s.get(Lead, lead_id).advisor_id).status)
    assert holder == "active", f"reassign answered {status(reassigned)}; the lead's holder is {holder}"


def test_a_manager_transferring_a_conversation_to_the_leaver_during_the_sync_does_not_strand_it(
    app: Any, db_session: Any, world: World, tree: Any, sandbox_reset: Any, monkeypatch: Any
) -> None:
    """Same race for a consultation: 孙店长 transfers 刘女士's conversation (李销售's) to 王销售
    while the sync resigns him. Expected: 422 or held by someone active; actual: a resigned
    advisor holds an open conversation for good."""
    client = app.test_client()
    conv = open_conv(client, world.walk_in, "new_car", text="想试驾")
    assert (
        client.post(f"{WB}/conversations/{conv['id']}/claim", json={}, headers=world.sales2.headers).status_code == 200
    )
    directory(sandbox_reset, db_session, tree, "adv.sales")
    sync_result, transferred = race_departure(
        app,
        monkeypatch,
        lambda: client.post(
            f"{WB}/conversations/{conv['id']}/transfer",
            json={"advisor_id": world.sales.id},
            headers=world.manager.headers,
        ),
        after=True,
    )
    assert isinstance(sync_result, dict), sync_result
    holder = read(app, lambda s: s.get(Staff, s.get(Conversation, conv["id"]).advisor_id).status)
    assert holder == "active", f"transfer answered {status(transferred)}; the conversation's holder is {holder}"


def test_the_leaver_claiming_from_the_queue_during_the_sync_does_not_strand_the_conversation(
    app: Any, db_session: Any, world: World, tree: Any, sandbox_reset: Any, monkeypatch: Any
) -> None:
    """王销售 claims a queued consultation at the moment the sync resigns him. Expected: the
    claim refused, or the conversation not left with a resigned advisor. Actual: the claim
    waits on his staff row, then commits: the owner's conversation is held by someone gone."""
    client = app.test_client()
    conv = open_conv(client, world.walk_in, "new_car", text="想试驾")
    directory(sandbox_reset, db_session, tree, "adv.sales")
    sync_result, claimed = race_departure(
        app,
        monkeypatch,
        lambda: client.post(f"{WB}/conversations/{conv['id']}/claim", json={}, headers=world.sales.headers),
        after=True,
    )
    assert isinstance(sync_result, dict), sync_result
    advisor_id = read(app, lambda s: s.get(Conversation, conv["id"]).advisor_id)
    if advisor_id is not None:
        holder = read(app, lambda s: s.get(Staff, advisor_id).status)
        assert holder == "active", f"claim answered {status(claimed)}; the conversation's holder is {holder}"


# ============================================================================================
# Held on review
# ============================================================================================


def test_two_directory_syncs_at_once_move_the_work_once(
    app: Any, db_session: Any, world: World, tree: Any, sandbox_reset: Any
) -> None:
    client = app.test_client()
    lead_id = submit_lead(client, world.owner, {"type": "new_car", "series": "ID.4"})
    conv = open_conv(client, world.owner, "new_car", text="ID.4 有现车吗")
    directory(sandbox_reset, db_session, tree, "adv.sales")
    results = run_threads(2, lambda i: run_sync(app))
    assert all(isinstance(r, dict) for r in results), results
    assert sorted(r["deactivated"] for r in results) == [0, 1]

    def check(s: Any) -> None:
        assert s.get(Lead, lead_id).advisor_id == world.sales2.id
        assert s.get(Conversation, conv["id"]).transfer_count == 1
        kinds = s.scalars(
            select(Touchpoint.kind).where(
                Touchpoint.customer_id == world.owner.id, Touchpoint.kind.in_(["lead_assigned", "consult_transferred"])
            )
        ).all()
        assert sorted(kinds) == ["consult_transferred", "lead_assigned", "lead_assigned"]  # submit + move

    read(app, check)
