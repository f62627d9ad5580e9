"""Real threads on MariaDB: the same notification asked for at once from two
transactions, and one dead letter replayed twice at once."""

from __future__ import annotations

from typing import Any

import pytest

from backend.platform.db import db
from backend.platform.jobs import OutboxJob
from backend.wecom import notify
from backend.wecom.models import AppMessage, WeComRawEvent
from tests.threads import count_committed, run_threads

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]

ADVISOR = "advisor.zhang"


def test_same_key_from_four_transactions_at_once_is_recorded_and_sent_once(
    app: Any, sandbox_reset: Any, redis_dispatcher: Any
) -> None:
    """Four workers record the same new-lead notification (same kind, key, recipient) at the
    same moment: one message row, one delivery job, nobody crashes (dedup by unique key, not by
    check-then-insert)."""
    corp = app.config["WECOM_CORP_ID"]

    def record(_i: int) -> int:
        with app.app_context():
            session = db.session()
            made = notify.new_lead(session, corp, "L-race", ADVISOR, "陈先生", "抖音")
            session.commit()
            return len(made)

    results = run_threads(4, record)
    assert sorted(r for r in results if isinstance(r, int)) == [0, 0, 0, 1], results
    assert count_committed(app, AppMessage) == 1
    assert count_committed(app, OutboxJob, OutboxJob.name == notify.APP_MESSAGE_JOB) == 1


def test_dead_letter_replayed_twice_at_once_runs_once(
    app: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any, redis_dispatcher: Any
) -> None:
    """Two admins press replay on the same dead letter at once: one 202, one 409
    (event_not_replayable), the event is replayed once and one processing job is made."""
    admin = make_staff(tree.group, "group_admin", userid="admin")
    headers = staff_headers(admin)
    corp = app.config["WECOM_CORP_ID"]
    xml = sandbox_reset.state.change_external_contact_xml(
        corp, "del_follow_user", ADVISOR, "wmDeadLetter001", 1_700_000_000
    )
    with app.app_context():
        session = db.session()
        raw = WeComRawEvent(
            corp_id=corp,
            dedup_hash="d" * 64,
            dedup_key="replay-twice",
            event="change_external_contact",
            change_type="del_follow_user",
            create_time=1_700_000_000,
            xml=xml,
            status="dead",
            attempts=5,
        )
        session.add(raw)
        session.commit()
        raw_id = raw.id
        db.session.remove()
    jobs_before = count_committed(app, OutboxJob)

    def replay(_i: int) -> int:
        resp = app.test_client().post(
            f"/api/workbench/v1/wecom/events/{raw_id}/replay", headers=headers, json={"reason": "race"}
        )
        return resp.status_code

    results = run_threads(2, replay)
    assert sorted(results) == [202, 409], results
    with app.app_context():
        try:
            assert db.session().get(WeComRawEvent, raw_id).replays == 1
        finally:
            db.session.remove()
    assert count_committed(app, OutboxJob) - jobs_before == 1
