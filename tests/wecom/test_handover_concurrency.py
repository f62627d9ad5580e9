"""Handover under real concurrency on MariaDB (real threads, real commits): the same handover
requested at once by several managers is recorded once; polls running side by side apply each
takeover once."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.platform.db import commit, db
from backend.touchpoints.models import Touchpoint
from backend.wecom import handover as handover_svc
from backend.wecom.ops_models import WeComHandover, WeComHandoverItem
from tests.threads import count_committed, run_threads

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]

URL = "/api/workbench/v1/wecom/handovers"


def test_same_handover_requested_concurrently_is_recorded_once(
    app: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    sb = sandbox_reset
    externals = [f"wmRace{i:02d}" for i in range(30)]
    for ext in externals:
        sb.state.add_external_contact(ext, ext, follow_userid="advisor.wang")
    resigned = make_staff(tree.stores[0], "sales_advisor", userid="advisor.wang", status="resigned")
    takeover = make_staff(tree.stores[0], "sales_advisor", userid="advisor.zhang")
    managers = [make_staff(tree.stores[0], "store_manager") for _ in range(4)]
    headers = [staff_headers(m) for m in managers]
    body = {
        "kind": "resigned",
        "handover_staff_id": resigned.id,
        "takeover_staff_id": takeover.id,
        "external_userids": externals,
    }

    def request(i: int) -> tuple[int, str | None]:
        resp = app.test_client().post(URL, headers=headers[i], json=body)
        return resp.status_code, resp.get_json().get("code")

    results = run_threads(4, request)
    assert sorted(r[0] for r in results) == [202, 409, 409, 409], results
    assert {r[1] for r in results if r[0] == 409} == {"wecom.handover_in_progress"}
    assert count_committed(app, WeComHandover) == 1
    assert count_committed(app, WeComHandoverItem, WeComHandoverItem.status == "waiting") == 30
    assert len([k for k in sb.state.transfers if k[0] == "advisor.wang"]) == 30

    # Three polls at once: the row lock orders them; each takeover is applied once.
    with app.app_context():
        handover_id = db.session().scalar(select(WeComHandover.id))
        db.session.remove()

    def poll(_i: int) -> str:
        with app.app_context():
            session = db.session()
            outcome = handover_svc.poll(session, handover_id)
            commit(session)
            return outcome

    outcomes = run_threads(3, poll)
    assert sorted(outcomes) == ["finished", "polling", "skipped"], outcomes
    assert count_committed(app, Touchpoint, Touchpoint.kind == "friend_transferred") == 30
    assert count_committed(app, WeComHandoverItem, WeComHandoverItem.status == "done") == 30


def test_two_managers_handing_one_long_list_to_different_advisors_get_one_handover(
    app: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    """The resigned advisor's list runs over two pages, so both requests would go on reading it
    in the background. The second finds the first's customers taken (the open-key index makes it
    wait for the first's commit): it is refused while the first is still reading the list, or,
    if the first has read it all meanwhile, it is left with no customer. Either way each
    customer is in one handover, for one takeover advisor."""
    sb = sandbox_reset
    for i in range(1001):
        sb.state.add_external_contact(f"wmLong{i:04d}", "客户", follow_userid="advisor.wang")
    for userid in ("advisor.zhang", "advisor.zhao"):
        sb.state.add_member(userid, userid)
    # WeCom busy for transfers: the submissions wait (this test is about the requests)
    sb.state.set_fault(
        "errcode", errcode=45009, service="wecom", path="/cgi-bin/externalcontact/resigned/transfer_customer"
    )
    resigned = make_staff(tree.stores[0], "sales_advisor", userid="advisor.wang", status="resigned")
    takeovers = [make_staff(tree.stores[0], "sales_advisor", userid=u) for u in ("advisor.zhang", "advisor.zhao")]
    headers = [staff_headers(make_staff(tree.stores[0], "store_manager")) for _ in range(2)]

    def request(i: int) -> tuple[int, str | None]:
        body = {"kind": "resigned", "handover_staff_id": resigned.id, "takeover_staff_id": takeovers[i].id}
        resp = app.test_client().post(URL, headers=headers[i], json=body)
        return resp.status_code, resp.get_json().get("code")

    results = run_threads(2, request)
    assert sorted(r[0] for r in results) in ([202, 202], [202, 409]), results
    with app.app_context():
        session = db.session()
        per_handover = dict(
            session.execute(
                select(WeComHandoverItem.handover_id, func.count()).group_by(WeComHandoverItem.handover_id)
            ).all()
        )
        distinct = session.scalar(select(func.count(func.distinct(WeComHandoverItem.external_userid))))
        db.session.remove()
    assert sorted(per_handover.values()) == [1002] and distinct == 1002  # both pages, once (+1 seeded)
