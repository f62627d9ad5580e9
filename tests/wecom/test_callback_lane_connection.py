"""The acknowledgement lane keeps a MariaDB connection between requests: when MariaDB drops it,
the next callback is still stored (once) and answered `success`."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select, text

from backend.wecom.models import WeComRawEvent
from tests.wecom.helpers import callback_world, contact_xml, post_event

ADVISOR = "advisor.zhang"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    return callback_world(sandbox_reset, tree, make_staff)


def _stored(app: Any) -> list[str]:
    from backend.platform.db import db

    with app.app_context(), db.engine.connect() as conn:
        return list(conn.execute(select(WeComRawEvent.__table__.c.dedup_key)).scalars())


@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_the_kept_connection_killed_then_the_next_event_is_still_stored(client: Any, world: Any) -> None:
    from backend.platform.db import db

    app = client.application
    sb = world["sandbox"]
    t = int(time.time())
    assert post_event(client, sb, contact_xml(sb, "del_follow_user", ADVISOR, "wmLaneA", t)).data == b"success"
    kept = [conn for conn, _ in db._idle_autocommit]
    assert kept, "the lane keeps its autocommit connection"
    with db.engine.connect() as killer:
        for conn in kept:
            killer.execute(text(f"KILL {conn.connection.dbapi_connection.thread_id()}"))
    resp = post_event(client, sb, contact_xml(sb, "del_follow_user", ADVISOR, "wmLaneB", t))
    assert (resp.status_code, resp.data) == (200, b"success")
    assert sum("wmLaneB" in key for key in _stored(app)) == 1
