"""Advisor behaviour figures stay with the store they were earned at."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update

from backend.org.models import Staff
from backend.wecom import behaviour

URL = "/api/workbench/v1/wecom/behaviour"


def test_a_moved_advisors_figures_stay_with_the_store_they_were_earned_at(
    client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    """Figures are kept per advisor per day. An advisor who worked at store 0 last week and was
    moved to store 3 today: store 0's manager reviewing last week still sees those days, and
    store 3's manager does not get store 0's history; store 0's manager still finds the advisor
    by id. A re-pull of the day keeps its store."""
    sb = sandbox_reset
    zhang = make_staff(tree.stores[0], "sales_advisor", userid="advisor.zhang")
    m0 = staff_headers(make_staff(tree.stores[0], "store_manager", userid="mgr.0"))
    m3 = staff_headers(make_staff(tree.stores[3], "store_manager", userid="mgr.3"))
    day = behaviour.china_today() - timedelta(days=5)
    sb.state.set_behavior("advisor.zhang", behaviour.day_start(day), chat_cnt=7, message_cnt=20)
    with client.application.app_context():
        assert behaviour.pull(db_session, zhang.corp_id, "advisor.zhang", day, day) == 1
        db_session.commit()
    moved = update(Staff).where(Staff.id == zhang.id).values(org_unit_id=tree.stores[3].id)
    db_session.execute(moved)  # moved to store 3 (as the directory sync does)
    db_session.commit()
    # WeCom's late figures for that day, pulled after the move: the day is still store 0's.
    sb.state.set_behavior("advisor.zhang", behaviour.day_start(day), chat_cnt=9, message_cnt=25)
    with client.application.app_context():
        assert behaviour.pull(db_session, zhang.corp_id, "advisor.zhang", day, day) == 1
        db_session.commit()

    q = {"start_date": day.isoformat(), "end_date": day.isoformat()}
    seen0 = [r["chat_cnt"] for r in client.get(URL, headers=m0, query_string=q).get_json()]
    seen3 = [r["chat_cnt"] for r in client.get(URL, headers=m3, query_string=q).get_json()]
    assert (seen0, seen3) == ([9], [])
    by_id = client.get(URL, headers=m0, query_string={**q, "staff_id": zhang.id})
    assert by_id.status_code == 200 and [r["chat_cnt"] for r in by_id.get_json()] == [9]
    assert client.get(URL, headers=m3, query_string={**q, "staff_id": zhang.id}).get_json() == []
