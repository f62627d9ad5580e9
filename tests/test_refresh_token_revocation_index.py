"""The revocation of a subject's sessions (a reversed customer merge) reads through an index."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from backend.platform.db import utcnow
from backend.platform.tokens import RefreshToken, revoke_sessions_since

pytestmark = [pytest.mark.mariadb]


def test_revoking_a_subjects_sessions_uses_the_subject_index(db_session: Any) -> None:
    now = utcnow()
    db_session.execute(
        insert(RefreshToken),
        [
            {
                "token_hash": f"{i:064x}",
                "family_id": f"{i:032x}",
                "audience": "owner" if i % 3 else "staff",
                "subject_id": i % 500,
                "issued_at": now - timedelta(minutes=i),
                "expires_at": now + timedelta(days=30),
            }
            for i in range(2000)
        ],
    )
    stmt = revoke_sessions_since("owner", 42, now - timedelta(days=1))
    conn = db_session.connection()
    compiled = stmt.compile(dialect=conn.dialect)
    # Bound the way the statement itself is (the UTC column type turns datetimes into naive UTC).
    params = {}
    for bind, name in compiled.bind_names.items():
        process = bind.type._cached_bind_processor(conn.dialect)
        params[name] = process(compiled.params[name]) if process else compiled.params[name]
    plan = conn.exec_driver_sql(f"EXPLAIN {compiled}", params).mappings().all()
    assert [(row["table"], row["key"]) for row in plan] == [("refresh_token", "ix_refresh_token_subject")], plan
    assert plan[0]["type"] == "range", plan
