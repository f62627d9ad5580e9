"""Logins while Redis is down: staff by WeCom OAuth code and owners by mini-program code. The
access tokens these calls need come from the process's fallback cache (one fetch per service
for the whole outage, not one per login), the members, identities and refresh tokens are
written once, and once Redis is back (emptied, as after a restart) logins go on with one more
fetch per service into the shared cache."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.customers.models import Customer
from backend.platform.db import db
from backend.platform.jobs import OutboxJob
from backend.touchpoints.models import Touchpoint

pytestmark = pytest.mark.redis


def _count(app: Any, model: Any, *where: Any) -> int:
    with app.app_context():
        try:
            return db.session().scalar(select(func.count()).select_from(model).where(*where))
        finally:
            db.session.remove()


def test_staff_and_owner_logins_while_redis_is_down_fetch_each_token_once(
    app: Any, client: Any, sandbox_reset: Any, tree: Any, make_staff: Any, redis_outage: Any
) -> None:
    state = sandbox_reset.state
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr-outage")
    manager_id = manager.id

    def fetches() -> tuple[int, int]:
        return sandbox_reset.hits("/cgi-bin/token", service="wechat"), sandbox_reset.hits(
            "/cgi-bin/gettoken", service="wecom"
        )

    def staff_login() -> dict[str, Any]:
        resp = client.post("/api/workbench/v1/auth/login", json={"code": state.issue_oauth_code("mgr-outage")})
        assert resp.status_code == 200, resp.get_json()
        return resp.get_json()

    def owner_login() -> dict[str, Any]:
        resp = client.post("/api/app/v1/auth/login", json={"code": state.issue_login_code("o-outage", "u-outage")})
        assert resp.status_code == 200, resp.get_json()
        return resp.get_json()

    redis_outage.down()
    assert fetches() == (0, 0)
    staff = [staff_login() for _ in range(3)]
    owners = [owner_login() for _ in range(3)]
    assert {s["staff_id"] for s in staff} == {manager_id}
    assert [o["is_new_member"] for o in owners] == [True, False, False]
    assert len({o["customer_id"] for o in owners}) == 1
    assert fetches() == (1, 1)  # the process's own tokens, reused by every login
    me = client.get("/api/workbench/v1/me", headers={"Authorization": f"Bearer {staff[-1]['access_token']}"})
    assert me.status_code == 200 and me.get_json()["id"] == manager_id
    refreshed = client.post("/api/app/v1/auth/refresh", json={"refresh_token": owners[-1]["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.get_json()
    assert _count(app, Customer) == 1
    assert _count(app, Touchpoint, Touchpoint.kind == "member_registered") == 1
    pending = _count(app, OutboxJob, OutboxJob.status == "pending")

    redis_outage.up()
    redis_outage.drain()
    assert _count(app, OutboxJob, OutboxJob.status == "done") == pending
    again = [staff_login(), owner_login(), staff_login(), owner_login()]
    assert again[1]["customer_id"] == owners[0]["customer_id"] and again[1]["is_new_member"] is False
    assert fetches() == (2, 2)  # Redis came back empty: one shared fetch per service
    assert sandbox_reset.hits("/cgi-bin/auth/getuserinfo") == 5
    assert sandbox_reset.hits("/sns/jscode2session") == 5
    assert _count(app, Customer) == 1
    assert _count(app, OutboxJob, OutboxJob.status != "done") == 0
