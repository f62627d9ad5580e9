"""A forked child (an RQ work horse: `flask worker` forks one per job) must open its own database
connections instead of reusing the parent's pooled ones."""

from __future__ import annotations

import os
from typing import Any

import pytest
from sqlalchemy import text

from backend.platform.db import db

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def test_forked_child_uses_its_own_connection(app: Any) -> None:
    with app.app_context():
        session = db.session()
        parent_id = session.scalar(text("SELECT CONNECTION_ID()"))  # the session now holds a connection
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report the connection its session uses, then leave at once
            os.close(read)
            try:
                child_id = db.session().scalar(text("SELECT CONNECTION_ID()"))
                os.write(write, str(child_id).encode())
            finally:
                os._exit(0)
        os.close(write)
        reported = b""
        while chunk := os.read(read, 64):
            reported += chunk
        os.close(read)
        os.waitpid(pid, 0)
        assert reported and int(reported) != parent_id
        # The parent's connection was not disturbed by the child.
        assert session.scalar(text("SELECT CONNECTION_ID()")) == parent_id
        session.rollback()
