"""Rule-group tags under real concurrency (MariaDB, real threads, real commits): the tag rows an
edit event makes outside the sync lock, and a rule-group tag deleted while an edit reads it.

Each interleaving is forced: one transaction holds its row (left uncommitted) while the other
runs on a thread; the holder commits once the other is seen waiting for that row (a bounded
wait), or once the other has finished without waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from backend.platform.db import db
from backend.wecom import service as svc
from backend.wecom.models import WeComFriend, WeComTag
from tests.threads import lock_wait_seen
from tests.wecom.helpers import carried, contact_xml, friend_of, ok, post_event, run_due_jobs

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]

ADVISOR = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"  # the sandbox's seeded contact (carries the corporate tag SUV)
RULE_GROUP = 7


@pytest.fixture
def world(app: Any, client: Any, sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    """Rule group 7 with a tag group this app made (listed to it), advisor Zhang befriended by
    the seeded customer (committed). The rule-group library has not been synced yet."""
    sb = sandbox_reset
    sb.state.add_strategy(RULE_GROUP)
    ours = sb.state.add_strategy_tag_group(
        RULE_GROUP, "试驾意向", ["本周试驾", "下周试驾"], created_by=sb.credentials["WECOM_AGENT_ID"]
    )
    make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR, name="张顾问")
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, int(time.time()))))
    run_due_jobs(app)
    with app.app_context():
        session = db.session_factory()
        try:
            friend_id = friend_of(session, ADVISOR, CUSTOMER).id
        finally:
            session.close()
    this_week = next(t["id"] for t in ours["tag"] if t["name"] == "本周试驾")
    return {"sb": sb, "corp": sb.credentials["WECOM_CORP_ID"], "friend_id": friend_id, "this_week": this_week}


def _on_a_thread(app: Any, work: Callable[[Any], Any]) -> tuple[threading.Thread, threading.Event, list[Any]]:
    """`work(session)` then a commit, in a transaction of its own on a thread; its outcome (or
    the exception it raised, rolled back) lands in the list, then the event is set."""
    done, outcome = threading.Event(), []

    def run() -> None:
        with app.app_context():
            session = db.session_factory()
            try:
                outcome.append(work(session))
                session.commit()
            except Exception as exc:  # surfaced by the test's assertions
                session.rollback()
                outcome.append(exc)
            finally:
                session.close()
                done.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, done, outcome


def test_a_sync_takes_over_a_tag_row_an_edit_makes_meanwhile(app: Any, world: Any) -> None:
    """An edit event learns 本周试驾 from the customer carrying it (`learn_strategy_tags`, no
    sync lock) and has made its library row, not yet committed, when the rule-group sync (for a
    change_external_tag) reads the library without it and comes to make the same row. The sync
    waits for the edit's row, then takes it over as a listed tag of rule group 7: one row, and
    the sync's job does not fail on the unique key."""
    corp, this_week = world["corp"], world["this_week"]
    with app.app_context():
        edit = db.session_factory()
        try:
            learned = svc.learn_strategy_tags(
                edit, corp, [{"tag_id": this_week, "tag_name": "本周试驾", "group_name": "试驾意向", "type": 3}]
            )
            assert learned == {this_week}  # its row made, uncommitted
            sync, synced, outcome = _on_a_thread(
                app,
                lambda s: svc.sync_tag_library(s, corp, svc.gateway_for(corp), library=svc.STRATEGY_TAGS),
            )
            waited = lock_wait_seen(10, until=synced)
        finally:
            edit.commit()
            edit.close()
        sync.join(30)

        assert not sync.is_alive()
        assert outcome == [2], outcome  # both of this app's tags listed, the job done
        assert waited  # the sync waited for the edit's row
        session = db.session_factory()
        try:
            rows = session.scalars(select(WeComTag).where(WeComTag.corp_id == corp, WeComTag.tag_id == this_week)).all()
            assert [(r.name, r.group_name, r.kind, r.strategy_id, r.listed, r.deleted) for r in rows] == [
                ("本周试驾", "试驾意向", "strategy", RULE_GROUP, True, False)
            ]
        finally:
            session.close()


def test_an_edit_reading_a_rule_group_tag_being_deleted_does_not_bring_it_back(app: Any, world: Any) -> None:
    """The library knows 本周试驾; the customer does not carry it yet. Its deletion in the
    console (change_external_tag delete, StrategyId 7) has marked the row deleted and not yet
    committed when an edit event reads the customer, whom WeCom still showed carrying the tag.
    The edit waits for the deletion and then leaves the tag off the relation: a customer's tags
    never bring back a tag known deleted."""
    sb, corp, this_week, friend_id = world["sb"], world["corp"], world["this_week"], world["friend_id"]
    with app.app_context():
        session = db.session_factory()
        try:
            svc.sync_tag_library(session, corp, svc.gateway_for(corp), library=svc.STRATEGY_TAGS)
            session.commit()
        finally:
            session.close()
        with sb.state.lock:  # marked on the customer in WeCom, read by the edit below
            sb.state.follows[(ADVISOR, CUSTOMER)]["tag_ids"].append(this_week)
        gateway = svc.gateway_for(corp)
        follow = svc.follow_of(svc.fetch_contact(gateway, CUSTOMER), ADVISOR)
        assert this_week in {t["tag_id"] for t in follow["tags"]}

        deletion = db.session_factory()
        try:
            svc.apply_strategy_tag_event(deletion, gateway, RULE_GROUP, this_week, "tag", "delete", svc.utcnow())

            def edit(s: Any) -> None:
                svc.apply_follow(s, s.get(WeComFriend, friend_id), follow, "race-edit", svc.utcnow())

            editing, edited, outcome = _on_a_thread(app, edit)
            waited = lock_wait_seen(10, until=edited)
        finally:
            deletion.commit()
            deletion.close()
        editing.join(30)

        assert not editing.is_alive()
        assert outcome == [None], outcome
        session = db.session_factory()
        try:
            assert this_week not in carried(session, friend_id)
            assert session.scalars(select(WeComTag.deleted).where(WeComTag.tag_id == this_week)).one() is True
        finally:
            session.close()
        assert waited  # the edit waited for the deletion's row
