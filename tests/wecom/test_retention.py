"""Retention of the WeCom intake (backend/wecom/retention.py): old processed raw events go, or
lose their XML when a welcome or an alert points at them; nothing else changes."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from backend.platform.db import utcnow
from backend.platform.jobs import OutboxJob
from backend.platform.retention import prune_job
from backend.touchpoints.models import Touchpoint
from backend.wecom.models import FriendStatus, WeComAlert, WeComFriend, WeComRawEvent, WelcomeMessage
from backend.wecom.retention import RAW_EVENT_KEEP, prune_raw_events
from tests.wecom.helpers import contact_xml, count_rows, post_event

ADVISOR = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR)
    return {"sandbox": sandbox_reset, "admin": make_staff(tree.group, "group_admin", userid="admin")}


def _age(session: Any, raw_ids: list[int], days: float) -> None:
    session.execute(
        update(WeComRawEvent)
        .where(WeComRawEvent.id.in_(raw_ids))
        .values(processed_at=utcnow() - timedelta(days=days), received_at=utcnow() - timedelta(days=days))
    )
    session.commit()


def test_old_processed_events_are_deleted_or_emptied_and_nothing_else_changes(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    sb = world["sandbox"]
    t = int(time.time())
    code = sb.state.issue_welcome_code(ADVISOR, CUSTOMER)
    post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, t, WelcomeCode=code))
    post_event(client, sb, contact_xml(sb, "edit_external_contact", ADVISOR, CUSTOMER, t + 1))
    post_event(client, sb, contact_xml(sb, "del_follow_user", ADVISOR, CUSTOMER, t + 2))
    post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, t + 3))  # re-added
    post_event(client, sb, contact_xml(sb, "no_such_change", ADVISOR, CUSTOMER, t + 4))  # ignored
    add, edit, lost, readd, ignored = db_session.scalars(select(WeComRawEvent).order_by(WeComRawEvent.id)).all()
    assert (add.change_type, readd.change_type, ignored.change_type) == ("add_external_contact",) * 2 + (
        "no_such_change",
    )
    statuses = {raw.id: raw.status for raw in db_session.scalars(select(WeComRawEvent))}
    assert statuses == {
        add.id: "processed",
        edit.id: "processed",
        lost.id: "processed",
        readd.id: "processed",
        ignored.id: "ignored",
    }
    welcome = db_session.scalars(select(WelcomeMessage)).one()
    alert = db_session.scalars(select(WeComAlert)).one()
    assert (welcome.raw_event_id, alert.raw_event_id) == (add.id, lost.id)
    touchpoints = count_rows(db_session, Touchpoint)

    _age(db_session, [add.id, edit.id, lost.id, ignored.id], RAW_EVENT_KEEP.days + 1)  # the re-add is recent
    result = prune_job(db_session)
    db_session.commit()
    assert result["wecom_raw_events"] == 3

    db_session.expire_all()
    left = {raw.id: raw for raw in db_session.scalars(select(WeComRawEvent))}
    assert edit.id not in left  # nothing pointed at it: gone
    for raw_id in (add.id, lost.id):  # a welcome / an alert points at it: kept, emptied
        assert (left[raw_id].status, left[raw_id].xml) == ("pruned", "")
        assert left[raw_id].dedup_hash and left[raw_id].change_type in ("add_external_contact", "del_follow_user")
    assert left[readd.id].status == "processed" and "add_external_contact" in left[readd.id].xml  # recent
    assert left[ignored.id].status == "ignored" and left[ignored.id].xml  # an admin may still replay it
    # What the events did stays: the relation, its touchpoints, the welcome and the alert.
    friend = db_session.scalars(select(WeComFriend)).one()
    assert friend.status == FriendStatus.ACTIVE
    assert count_rows(db_session, Touchpoint) == touchpoints
    assert count_rows(db_session, WelcomeMessage) == 1 and count_rows(db_session, WeComAlert) == 1

    admin_h = staff_headers(world["admin"])
    page = client.get("/api/workbench/v1/wecom/events?status=pruned", headers=admin_h).get_json()
    assert sorted(e["id"] for e in page["items"]) == sorted([add.id, lost.id])
    replay = client.post(f"/api/workbench/v1/wecom/events/{add.id}/replay", headers=admin_h, json={})
    assert (replay.status_code, replay.get_json()["code"]) == (409, "wecom.event_not_replayable")

    assert prune_raw_events(db_session, utcnow() - RAW_EVENT_KEEP) == 0  # a second run finds nothing
    # A redelivery of a pruned event is still recognised by its dedup key and not applied again.
    assert post_event(client, sb, contact_xml(sb, "del_follow_user", ADVISOR, CUSTOMER, t + 2)).data == b"success"
    assert count_rows(db_session, WeComRawEvent) == 4 and count_rows(db_session, WeComAlert) == 1


def test_a_run_takes_a_batch_and_skips_an_event_processed_late(client: Any, db_session: Any, world: Any) -> None:
    """An old event processed late (after retries, or replayed by an admin) is kept until it is
    old itself, without holding back the events after it."""
    sb = world["sandbox"]
    t = int(time.time())
    for i in range(4):
        post_event(client, sb, contact_xml(sb, "edit_external_contact", ADVISOR, CUSTOMER, t + i))
    ids = list(db_session.scalars(select(WeComRawEvent.id).order_by(WeComRawEvent.id)))
    _age(db_session, ids[:1], 100)
    _age(db_session, ids[1:2], 10)  # processed late
    _age(db_session, ids[2:], 100)
    before = utcnow() - RAW_EVENT_KEEP
    assert prune_raw_events(db_session, before, limit=1) == 1  # a batch: the oldest id only
    assert prune_raw_events(db_session, before) == 2
    assert prune_raw_events(db_session, before) == 0
    db_session.commit()
    assert list(db_session.scalars(select(WeComRawEvent.id).order_by(WeComRawEvent.id))) == [ids[1]]


def test_done_intake_jobs_past_a_week_are_pruned(app_ctx: Any, db_session: Any) -> None:
    def job(key: str, status: str, days: float | None) -> OutboxJob:
        finished = utcnow() - timedelta(days=days) if days is not None else None
        row = OutboxJob(name=key.split(":")[0], dedup_key=key, status=status, finished_at=finished)
        db_session.add(row)
        db_session.flush()
        return row

    gone = [job("wecom.process_event:1:0:0", "done", 8), job("wecom.send_welcome:1", "done", 8)]
    kept = [
        job("wecom.process_event:2:0:0", "done", 6),  # within the week
        job("wecom.process_event:3:0:1", "failed", 30),  # not done: for an admin
        job("wecom.notify:9", "done", 30),  # another job's key
        job("wecomXprocess_event:4", "done", 30),  # `.` is not a wildcard
    ]
    result = prune_job(db_session)
    assert result["wecom_intake_jobs"] == 2
    left = set(db_session.scalars(select(OutboxJob.id)))
    assert not left & {row.id for row in gone}
    assert {row.id for row in kept} <= left
