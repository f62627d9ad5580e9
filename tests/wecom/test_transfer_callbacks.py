"""Handover results meeting the callbacks WeCom sends for the same transfer: one record, one owner."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.customers.models import Customer, CustomerAdvisor
from backend.touchpoints.models import Touchpoint
from backend.wecom import service as svc
from backend.wecom.models import AlertKind, AppMessage, FriendStatus, WeComAlert, WeComFriend
from backend.wecom.ops_models import WeComHandover, WeComHandoverItem
from integrations.sandbox import wecom_ops
from tests.wecom.helpers import contact_xml, post_event, run_due_jobs

URL = "/api/workbench/v1/wecom/handovers"
ZHANG = "advisor.zhang"
MANAGER = "advisor.li"
CUSTOMER = "wmDemoCustomer001"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    store = tree.stores[0]
    zhang = make_staff(store, "sales_advisor", userid=ZHANG, name="张顾问")
    zhao = make_staff(store, "sales_advisor", userid="advisor.zhao", name="赵顾问")
    manager = make_staff(store, "store_manager", userid=MANAGER, name="李店长")
    return {"sandbox": sandbox_reset, "zhang": zhang, "zhao": zhao, "manager": manager}


def known_relation(db_session: Any, app: Any, staff: Any, ext: str) -> Any:
    with app.app_context():
        customer = svc.ensure_customer(db_session, ext, {"external_contact": {"name": "陈先生"}})
        svc.lock_friend(db_session, staff.corp_id, staff.wecom_userid, ext, customer, staff, FriendStatus.ACTIVE)
        db_session.add(CustomerAdvisor(customer_id=customer.id, staff_id=staff.id, role="sales_advisor"))
        db_session.commit()
    return customer


def test_on_duty_transfer_and_its_delete_by_transfer_callback_are_one_friend_transferred(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any
) -> None:
    """An on-duty transfer that WeCom completes: the poll records friend_transferred, and WeCom's
    del_external_contact(Source=DELETE_BY_TRANSFER) for the handover advisor records it again."""
    sb = world["sandbox"]
    customer = known_relation(db_session, app, world["zhang"], CUSTOMER)
    body = {"kind": "on_duty", "handover_staff_id": world["zhang"].id, "takeover_staff_id": world["zhao"].id}
    assert client.post(URL, headers=staff_headers(world["manager"]), json=body).status_code == 202
    run_due_jobs(app)
    item = db_session.scalars(select(WeComHandoverItem)).one()
    assert item.status == "done"
    at = int(item.takeover_time.timestamp())
    xml = contact_xml(sb, "del_external_contact", ZHANG, CUSTOMER, at, Source="DELETE_BY_TRANSFER")
    assert post_event(client, sb, xml).data == b"success"
    db_session.expire_all()
    moved = db_session.scalars(
        select(Touchpoint).where(Touchpoint.customer_id == customer.id, Touchpoint.kind == "friend_transferred")
    ).all()
    assert len(moved) == 1, [(t.source, t.source_ref) for t in moved]


def test_a_transfer_wecom_reports_by_callback_moves_the_advisor_assignment(
    client: Any, db_session: Any, app: Any, world: Any
) -> None:
    """A transfer done outside dealerloop's ledger (in the admin console): WeCom tells us by
    del_external_contact(DELETE_BY_TRANSFER) for the old advisor and add_external_contact for the
    new one. The relation moves, but the customer stays assigned to the advisor who no longer
    has them (the new advisor's add only assigns an empty role)."""
    sb = world["sandbox"]
    t = int(time.time()) - 100
    assert post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, CUSTOMER, t)).data == b"success"
    with sb.state.lock:
        follow = sb.state.follows.pop((ZHANG, CUSTOMER))
        sb.state.follows[("advisor.zhao", CUSTOMER)] = dict(follow, userid="advisor.zhao")
    xml = contact_xml(sb, "del_external_contact", ZHANG, CUSTOMER, t + 50, Source="DELETE_BY_TRANSFER")
    assert post_event(client, sb, xml).data == b"success"
    assert post_event(client, sb, contact_xml(sb, "add_external_contact", "advisor.zhao", CUSTOMER, t + 50)).data == (
        b"success"
    )
    db_session.expire_all()
    customer_id = svc.find_by_identity(db_session, svc.IdentityKind.EXTERNAL_USERID, CUSTOMER).id
    advisors = db_session.scalars(
        select(CustomerAdvisor.staff_id).where(
            CustomerAdvisor.customer_id == customer_id, CustomerAdvisor.role == "sales_advisor"
        )
    ).all()
    assert advisors == [world["zhao"].id], f"sales advisor is still staff {advisors} (zhao={world['zhao'].id})"


def start_on_duty(client: Any, world: Any, staff_headers: Any) -> None:
    body = {"kind": "on_duty", "handover_staff_id": world["zhang"].id, "takeover_staff_id": world["zhao"].id}
    assert client.post(URL, headers=staff_headers(world["manager"]), json=body).status_code == 202


def failure_records(db_session: Any, customer_id: int) -> tuple[list[str], int, int]:
    """The customer's transfer_failed touchpoints (their source refs), the transfer-failed
    alerts, and the app messages recorded."""
    db_session.expire_all()
    touchpoints = db_session.scalars(
        select(Touchpoint.source_ref).where(Touchpoint.customer_id == customer_id, Touchpoint.kind == "transfer_failed")
    ).all()
    alerts = db_session.scalar(
        select(func.count()).select_from(WeComAlert).where(WeComAlert.kind == AlertKind.TRANSFER_FAILED)
    )
    messages = db_session.scalar(select(func.count()).select_from(AppMessage))
    return list(touchpoints), alerts, messages


@pytest.mark.parametrize("callback_first", [True, False])
def test_a_refused_on_duty_transfer_told_by_poll_and_callback_is_one_failure(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, callback_first: bool
) -> None:
    """The customer refuses an on-duty transfer sent from dealerloop: WeCom says so twice, in
    transfer_result (status 3) and by a transfer_fail callback, in either order. The handover
    item fails with the reason, and there is one transfer_failed touchpoint (the handover's) and
    one message to the managers, not two; the callback raises no alert of its own."""
    sb = world["sandbox"]
    customer = known_relation(db_session, app, world["zhang"], CUSTOMER)
    wecom_ops.plan_transfer(sb.state, CUSTOMER, final_status=wecom_ops.REFUSED, polls=1)
    start_on_duty(client, world, staff_headers)
    item = db_session.scalars(select(WeComHandoverItem)).one()
    assert item.status == "waiting"
    failed = contact_xml(sb, "transfer_fail", "advisor.zhao", CUSTOMER, int(time.time()), FailReason="customer_refused")
    if callback_first:
        assert post_event(client, sb, failed).data == b"success"
        db_session.refresh(item)
        assert item.status == "refused"
    run_due_jobs(app)
    if not callback_first:
        db_session.refresh(item)
        assert item.status == "refused"
        assert post_event(client, sb, failed).data == b"success"

    refs, alerts, messages = failure_records(db_session, customer.id)
    assert refs == [f"wecom:handover:{item.id}:transfer_failed"]
    assert (alerts, messages) == (0, 1)
    db_session.refresh(item)
    assert item.status == "refused"
    assert db_session.get(WeComHandover, item.handover_id).status == "finished"
    zhao_relation = db_session.scalars(
        select(WeComFriend).where(WeComFriend.userid == "advisor.zhao", WeComFriend.external_userid == CUSTOMER)
    ).one_or_none()
    assert zhao_relation is None  # the takeover never became the customer's friend


def test_a_transfer_fail_no_handover_of_ours_knows_is_recorded_by_the_callback(
    client: Any, db_session: Any, app: Any, world: Any
) -> None:
    """A transfer made in the admin console fails: no handover item matches, so the callback
    records the failure itself (touchpoint and alert on the customer's relation)."""
    sb = world["sandbox"]
    customer = known_relation(db_session, app, world["zhang"], CUSTOMER)
    failed = contact_xml(
        sb, "transfer_fail", "advisor.zhao", CUSTOMER, int(time.time()), FailReason="customer_limit_exceed"
    )
    assert post_event(client, sb, failed).data == b"success"
    refs, alerts, _ = failure_records(db_session, customer.id)
    assert len(refs) == 1 and refs[0].startswith("wecom:ev")
    assert alerts == 1


def test_a_customer_handed_to_an_advisor_of_another_store_moves_to_that_store(
    client: Any, db_session: Any, app: Any, world: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    """An on-duty handover from store 0's advisor to store 1's (requested by someone who sees
    both stores): the customer's home store follows the advisor, so store 1's manager now sees
    and follows them up and store 0's, left with no advisor for them, no longer does. The
    touchpoint says where the customer moved from and to."""
    sb = world["sandbox"]
    customer = known_relation(db_session, app, world["zhang"], CUSTOMER)
    store0, store1 = tree.stores[0], tree.stores[1]
    db_session.get(type(customer), customer.id).home_store_id = store0.id
    db_session.commit()
    sb.state.add_member("advisor.sun", "孙顾问")
    sun = make_staff(store1, "sales_advisor", userid="advisor.sun", name="孙顾问")
    manager1 = make_staff(store1, "store_manager", userid="mgr1")
    admin = make_staff(tree.group, "group_admin", userid="admin")
    body = {"kind": "on_duty", "handover_staff_id": world["zhang"].id, "takeover_staff_id": sun.id}
    assert client.post(URL, headers=staff_headers(admin), json=body).status_code == 202
    run_due_jobs(app)
    item = db_session.scalars(select(WeComHandoverItem)).one()
    assert item.status == "done", item.errcode

    db_session.expire_all()
    assert db_session.get(type(customer), customer.id).home_store_id == store1.id
    detail = f"/api/workbench/v1/customers/{customer.id}"
    assert client.get(detail, headers=staff_headers(manager1)).status_code == 200
    assert client.get(detail, headers=staff_headers(world["manager"])).status_code == 404
    assigned = db_session.scalars(
        select(Touchpoint).where(Touchpoint.customer_id == customer.id, Touchpoint.kind == "advisor_assigned")
    ).one()
    assert assigned.payload["home_store_moved"] == {"from": store0.id, "to": store1.id}


def sales_advisors(db_session: Any, customer_id: int) -> list[int]:
    db_session.expire_all()
    return list(
        db_session.scalars(
            select(CustomerAdvisor.staff_id).where(
                CustomerAdvisor.customer_id == customer_id, CustomerAdvisor.role == "sales_advisor"
            )
        )
    )


def test_a_console_transfer_to_another_store_writes_its_assignment_touchpoint(
    client: Any, db_session: Any, world: Any, tree: Any, make_staff: Any
) -> None:
    """A transfer made in the WeCom console from store 0's advisor to store 1's: the role and
    the home store follow, and the customer's timeline says so (advisor_assigned, from where to
    where), as for a handover of ours."""
    sb = world["sandbox"]
    sb.state.add_member("advisor.sun", "孙顾问")
    sun = make_staff(tree.stores[1], "sales_advisor", userid="advisor.sun", name="孙顾问")
    t = int(time.time()) - 100
    assert post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, CUSTOMER, t)).data == b"success"
    with sb.state.lock:
        follow = sb.state.follows.pop((ZHANG, CUSTOMER))
        sb.state.follows[("advisor.sun", CUSTOMER)] = dict(follow, userid="advisor.sun")
    moved = contact_xml(sb, "del_external_contact", ZHANG, CUSTOMER, t + 50, Source="DELETE_BY_TRANSFER")
    assert post_event(client, sb, moved).data == b"success"
    added = contact_xml(sb, "add_external_contact", "advisor.sun", CUSTOMER, t + 50)
    assert post_event(client, sb, added).data == b"success"

    customer_id = svc.find_by_identity(db_session, svc.IdentityKind.EXTERNAL_USERID, CUSTOMER).id
    assert sales_advisors(db_session, customer_id) == [sun.id]
    assert db_session.get(Customer, customer_id).home_store_id == tree.stores[1].id
    (assigned,) = db_session.scalars(
        select(Touchpoint).where(Touchpoint.customer_id == customer_id, Touchpoint.kind == "advisor_assigned")
    ).all()
    assert assigned.advisor_id == sun.id
    assert assigned.payload["from_staff_id"] == world["zhang"].id
    assert assigned.payload["home_store_moved"] == {"from": tree.stores[0].id, "to": tree.stores[1].id}


def test_a_stale_transfer_does_not_hand_the_role_to_an_unrelated_later_add(
    client: Any, db_session: Any, world: Any
) -> None:
    """Zhang's relation was transferred a day ago (the takeover's add never reached us); today
    the customer adds Zhao through a QR code. Zhao's add did not come with that transfer: the
    role stays where it was."""
    sb = world["sandbox"]
    now = int(time.time())
    t0 = now - 2 * 86400
    assert post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, CUSTOMER, t0)).data == b"success"
    moved = contact_xml(sb, "del_external_contact", ZHANG, CUSTOMER, t0 + 86400, Source="DELETE_BY_TRANSFER")
    assert post_event(client, sb, moved).data == b"success"
    customer_id = svc.find_by_identity(db_session, svc.IdentityKind.EXTERNAL_USERID, CUSTOMER).id
    before = sales_advisors(db_session, customer_id)
    assert before == [world["zhang"].id]
    sb.state.add_follow("advisor.zhao", CUSTOMER)
    added = contact_xml(sb, "add_external_contact", "advisor.zhao", CUSTOMER, now - 10)
    assert post_event(client, sb, added).data == b"success"
    assert sales_advisors(db_session, customer_id) == before
