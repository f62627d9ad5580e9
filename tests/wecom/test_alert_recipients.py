"""The lost-customer and transfer-failure messages raised by callback events: who receives them
(active people only, managers above a store without one, each through their own corp's app),
one message per person (the rate limit is per person), and their kind in the admin list."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from backend.org.models import Role, Staff, StaffRole
from backend.wecom.models import AppMessage
from tests.wecom.helpers import URL, contact_xml, post_event, run_due_jobs

ADVISOR = "advisor.zhang"
MANAGER = "advisor.li"
CUSTOMER = "wmDemoCustomer001"
MESSAGES = "/api/workbench/v1/wecom/app-messages"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any, db_session: Any) -> dict[str, Any]:
    admin = make_staff(tree.group, "group_admin", userid="admin")
    headers = staff_headers(admin)
    db_session.commit()  # end staff_headers' read (else the callback INSERT is rolled back with it)
    return {"sandbox": sandbox_reset, "tree": tree, "admin": headers}


def _lose_customer(client: Any, sb: Any, userid: str = ADVISOR) -> None:
    t = int(time.time())
    assert post_event(client, sb, contact_xml(sb, "add_external_contact", userid, CUSTOMER, t - 5)).data == b"success"
    sb.state.app_messages.clear()
    assert post_event(client, sb, contact_xml(sb, "del_follow_user", userid, CUSTOMER, t)).data == b"success"


def test_lost_customer_alert_is_listed_under_its_kind(
    client: Any, db_session: Any, world: Any, make_staff: Any
) -> None:
    """§7: lost customer and handover failure are kinds of notification. An admin filtering
    the app-message list by kind=lost_customer (or handover_failed) finds the alerts the
    callbacks sent; they are recorded with their kind, not kind=None."""
    sb = world["sandbox"]
    make_staff(world["tree"].stores[0], "sales_advisor", userid=ADVISOR)
    make_staff(world["tree"].stores[0], "store_manager", userid=MANAGER)
    _lose_customer(client, sb)
    assert len(sb.state.app_messages) == 2  # the alert was sent, to the advisor and the manager
    kinds = db_session.scalars(select(AppMessage.kind)).all()
    listed = client.get(MESSAGES, headers=world["admin"], query_string={"kind": "lost_customer"}).get_json()
    assert len(listed) == 2, f"recorded kinds: {kinds}; listed under lost_customer: {listed}"


def test_lost_customer_alert_skips_an_advisor_who_left(
    client: Any, db_session: Any, world: Any, make_staff: Any
) -> None:
    """An advisor who has left (status resigned) is not sent the lost-customer alert of their
    old relation; the store manager is (consultations already skip inactive advisors)."""
    sb = world["sandbox"]
    make_staff(world["tree"].stores[0], "sales_advisor", userid=ADVISOR, status="resigned")
    make_staff(world["tree"].stores[0], "store_manager", userid=MANAGER)
    _lose_customer(client, sb)
    touser = [m["touser"] for m in sb.state.app_messages]
    assert touser == [MANAGER], touser


def test_a_busy_manager_does_not_hold_back_the_advisors_alert(
    app: Any, client: Any, db_session: Any, world: Any, make_staff: Any, monkeypatch: Any
) -> None:
    """The limit is per recipient: a store manager at their limit must not delay the
    lost-customer alert of an advisor who has received nothing. The advisor gets it now; the
    manager's copy waits for the window."""
    from backend.platform.db import commit
    from backend.wecom import notify

    sb = world["sandbox"]
    monkeypatch.setitem(app.config, "WECOM_NOTIFY_RATE_LIMIT", 1)
    make_staff(world["tree"].stores[0], "sales_advisor", userid=ADVISOR)
    make_staff(world["tree"].stores[0], "store_manager", userid=MANAGER)
    with app.app_context():
        notify.weak_item(db_session, app.config["WECOM_CORP_ID"], "busy", [MANAGER], "店长本窗口的第一条")
        commit(db_session)
    _lose_customer(client, sb)
    reached = [u for m in sb.state.app_messages for u in m["touser"].split("|")]
    statuses = db_session.scalars(select(AppMessage.status).order_by(AppMessage.id)).all()
    assert ADVISOR in reached, f"sent now to {reached}; message statuses {statuses}"


def test_second_corps_alert_reaches_each_manager_in_their_own_corp(
    app: Any, client: Any, db_session: Any, world: Any, make_staff: Any, monkeypatch: Any
) -> None:
    """A store whose advisors are in corp B while its manager is in corp A (a group with two
    WeCom corps, as consultations and lead escalations already allow: they group recipients by
    corp). A customer of corp B's advisor is lost: corp B's app tells the advisor, and the
    manager is told through corp A's app, under their corp-A userid; corp B's app is not asked
    to deliver to a userid that means nobody (or someone else) in corp B."""
    from integrations.sandbox.wecom_emit import sign_event
    from tests.wecom.helpers import second_wecom_app

    sb = world["sandbox"]
    store = world["tree"].stores[0]
    make_staff(store, "store_manager", userid=MANAGER)
    with second_wecom_app(app, sb, monkeypatch) as (second, creds):
        corp_b = creds["WECOM_CORP_ID"]
        advisor_b = Staff(
            corp_id=corp_b, wecom_userid="adv.two", name="二号顾问", org_unit_id=store.id, status="active"
        )
        advisor_b.role_rows = [StaffRole(role=Role("sales_advisor"))]
        db_session.add(advisor_b)
        db_session.commit()
        second.state.add_member("adv.two", "二号顾问")
        second.state.add_external_contact("wmSecondCorp1", "王先生", follow_userid="adv.two")
        t = int(time.time())
        for change, at in (("add_external_contact", t - 5), ("del_follow_user", t)):
            xml = second.state.change_external_contact_xml(corp_b, change, "adv.two", "wmSecondCorp1", at)
            params, body = sign_event(xml, creds)
            resp = client.post(URL, query_string=params, data=body, content_type="text/xml")
            assert resp.data == b"success"
        run_due_jobs(app)
        corp_b_users = [u for m in second.state.app_messages for u in m["touser"].split("|")]
        corp_a_users = [u for m in sb.state.app_messages for u in m["touser"].split("|")]
    assert "adv.two" in corp_b_users, corp_b_users
    assert MANAGER not in corp_b_users and MANAGER in corp_a_users, (corp_a_users, corp_b_users)


def test_transfer_failure_in_a_store_without_manager_reaches_someone(
    client: Any, db_session: Any, world: Any, make_staff: Any
) -> None:
    """A transfer fails in a store that has no store manager (vacant post) while its region
    manager is there: the failure is still told to a manager (lead escalations already climb
    the tree: region, division, group admins), not dropped with no message recorded."""
    sb = world["sandbox"]
    tree = world["tree"]
    make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR)
    make_staff(tree.stores[0], "sales_advisor", userid="advisor.wang")
    make_staff(tree.regions[0], "region_manager", userid="region.boss")
    t = int(time.time())
    post_event(client, sb, contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, t - 60))
    sb.state.app_messages.clear()
    ack = post_event(
        client, sb, contact_xml(sb, "transfer_fail", "advisor.wang", CUSTOMER, t, FailReason="customer_refused")
    )
    assert ack.data == b"success"
    from backend.wecom.models import WeComAlert

    assert db_session.scalars(select(WeComAlert.kind)).all() == ["transfer_failed"]  # processed
    recorded = db_session.scalars(select(AppMessage.touser)).all()
    sent = [m["touser"] for m in sb.state.app_messages]
    assert sent, f"nobody told of the failed transfer; app messages recorded: {recorded}"
