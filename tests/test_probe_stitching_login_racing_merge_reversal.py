"""Probe: a member of a merged pair logging in while staff reverse the merge."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.threads import held_reversal

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]

APP = "/api/app/v1"


@pytest.fixture
def merged_pair(
    app: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> Callable[[str], tuple[Any, Callable[[str], dict[str, Any]], dict, dict, Any]]:
    """Two members logged in (openids `<prefix>-a`, `<prefix>-b`), a merged into b by a group
    admin; gives the client, the login helper, both logins and the reversal to hold."""
    admin = make_staff(tree.group, "group_admin", userid="admin")
    db_session.commit()
    admin_id, h = admin.id, staff_headers(admin)
    client = app.test_client()

    def login(openid: str) -> dict[str, Any]:
        answer = client.post(f"{APP}/auth/login", json={"code": sandbox_reset.state.issue_login_code(openid)})
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()

    def make(prefix: str) -> tuple[Any, Callable[[str], dict[str, Any]], dict, dict, Any]:
        a, b = login(f"{prefix}-a"), login(f"{prefix}-b")
        merged = client.post(
            "/api/workbench/v1/customer-merges",
            json={"source_id": a["customer_id"], "target_id": b["customer_id"], "reason": "同一人"},
            headers=h,
        )
        assert merged.status_code == 201, merged.get_json()
        return client, login, a, b, held_reversal(app, merged.get_json()["id"], admin_id)

    return make


def test_login_racing_a_reversal_opens_a_session_of_the_member_split_off(merged_pair: Any) -> None:
    client, login, a, _, reversal = merged_pair("o-lr")
    with reversal:
        during = login("o-lr-a")  # a's app logs in while the reversal is about to commit
    refreshed = client.post(f"{APP}/auth/refresh", json={"refresh_token": during["refresh_token"]})
    acts_as = (
        client.get(f"{APP}/me", headers={"Authorization": f"Bearer {refreshed.get_json()['access_token']}"})
        .get_json()
        .get("id")
        if refreshed.status_code == 200
        else None
    )
    # Whatever the login answered, its session must not go on acting as b once the merge is undone.
    assert (during["customer_id"], refreshed.status_code, acts_as) == (a["customer_id"], 200, a["customer_id"])


def test_the_survivors_own_login_racing_a_reversal_gets_a_token_that_works(merged_pair: Any) -> None:
    """The reversal raises the survivor's session generation; a login of the survivor that read
    its row before the reversal committed must still sign the generation the row has after it."""
    client, login, _, b, reversal = merged_pair("o-ls")
    with reversal:
        during = login("o-ls-b")  # the survivor's own app logs in while the reversal is about to commit
    me = client.get(f"{APP}/me", headers={"Authorization": f"Bearer {during['access_token']}"})
    assert (during["customer_id"], me.status_code, me.get_json().get("id")) == (b["customer_id"], 200, b["customer_id"])
