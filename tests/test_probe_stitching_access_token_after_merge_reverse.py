"""Probe: an access token issued while a member was merged into another customer, used after
staff reversed the merge (with Redis up, and with Redis down)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]

APP = "/api/app/v1"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _merged_then_reversed(client: Any, sandbox: Any, headers: dict[str, str]) -> dict[str, Any]:
    """a and b log in; staff merge a into b; a logs in again (as b); staff reverse the merge."""

    def login(openid: str) -> dict[str, Any]:
        answer = client.post(f"{APP}/auth/login", json={"code": sandbox.state.issue_login_code(openid)})
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()

    a, b = login("o-at-a"), login("o-at-b")
    merged = client.post(
        "/api/workbench/v1/customer-merges",
        json={"source_id": a["customer_id"], "target_id": b["customer_id"], "reason": "同一人"},
        headers=headers,
    )
    assert merged.status_code == 201, merged.get_json()
    during = login("o-at-a")
    me = client.get(f"{APP}/me", headers=_bearer(during["access_token"]))
    assert me.get_json()["id"] == b["customer_id"]  # one person while merged
    reversed_ = client.post(f"/api/workbench/v1/customer-merges/{merged.get_json()['id']}/reverse", headers=headers)
    assert reversed_.status_code == 200, reversed_.get_json()
    return {"a": a, "b": b, "during": during, "login": login}


def test_access_token_issued_while_merged_stops_at_the_reversal(
    app: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    admin = make_staff(tree.group, "group_admin", userid="admin")
    db_session.commit()
    client = app.test_client()
    seen = _merged_then_reversed(client, sandbox_reset, staff_headers(admin))
    a_id, b_id = seen["a"]["customer_id"], seen["b"]["customer_id"]

    stale = client.get(f"{APP}/me", headers=_bearer(seen["during"]["access_token"]))
    assert (stale.status_code, stale.get_json().get("code")) == (401, "auth.session_revoked")
    # Any owner write with it is refused the same way (it would have landed on b).
    wrote = client.patch(f"{APP}/me", json={"name": "丙"}, headers=_bearer(seen["during"]["access_token"]))
    assert (wrote.status_code, wrote.get_json().get("code")) == (401, "auth.session_revoked")

    again = seen["login"]("o-at-a")
    assert again["customer_id"] == a_id
    assert client.get(f"{APP}/me", headers=_bearer(again["access_token"])).get_json()["id"] == a_id
    # a's access token from before the merge names a: a again, as it should.
    assert client.get(f"{APP}/me", headers=_bearer(seen["a"]["access_token"])).get_json()["id"] == a_id

    # b's own access tokens from before the reversal end too (one generation per customer);
    # b's session from before the merge stays, so b's app refreshes and goes on as b.
    old_b = client.get(f"{APP}/me", headers=_bearer(seen["b"]["access_token"]))
    assert (old_b.status_code, old_b.get_json().get("code")) == (401, "auth.session_revoked")
    refreshed = client.post(f"{APP}/auth/refresh", json={"refresh_token": seen["b"]["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.get_json()
    assert client.get(f"{APP}/me", headers=_bearer(refreshed.get_json()["access_token"])).get_json()["id"] == b_id


@pytest.mark.redis
def test_revoked_access_token_stays_refused_while_redis_is_down(
    app: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any, redis_outage: Any
) -> None:
    admin = make_staff(tree.group, "group_admin", userid="admin")
    db_session.commit()
    client = app.test_client()
    redis_outage.down()
    seen = _merged_then_reversed(client, sandbox_reset, staff_headers(admin))
    stale = client.get(f"{APP}/me", headers=_bearer(seen["during"]["access_token"]))
    assert (stale.status_code, stale.get_json().get("code")) == (401, "auth.session_revoked")
    again = seen["login"]("o-at-a")
    assert client.get(f"{APP}/me", headers=_bearer(again["access_token"])).get_json()["id"] == seen["a"]["customer_id"]
