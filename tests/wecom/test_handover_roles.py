"""What a done (or failed) handover does to the customer in dealerloop: which advisor roles move
to the takeover and which the handing-over advisor loses, the name and store of a customer only
WeCom's unassigned list knew, and whose customers WeCom's list and a named request are (userids
compare case-insensitively)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import Customer, CustomerAdvisor
from backend.touchpoints.models import Touchpoint
from backend.wecom import service as svc
from backend.wecom.models import FriendStatus, WeComFriend
from backend.wecom.ops_models import WeComHandoverItem
from integrations.sandbox import wecom_ops
from tests.wecom.helpers import run_due_jobs

URL = "/api/workbench/v1/wecom/handovers"
RESIGNED = "advisor.wang"  # the sandbox seeds wmDemoCustomer002 as theirs
ON_DUTY = "advisor.zhang"  # the sandbox seeds wmDemoCustomer001 as theirs
MANAGER = "advisor.li"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    store = tree.stores[0]
    resigned = make_staff(store, "sales_advisor", userid=RESIGNED, name="王顾问", status="resigned")
    zhang = make_staff(store, "sales_advisor", userid=ON_DUTY, name="张顾问")
    manager = make_staff(store, "store_manager", userid=MANAGER, name="李店长")
    return {"sandbox": sandbox_reset, "resigned": resigned, "zhang": zhang, "manager": manager, "store": store}


def known(db_session: Any, app: Any, staff: Any, ext: str, *roles: str) -> Any:
    """A customer dealerloop knows as `staff`'s friend, of their store, `staff` holding `roles`."""
    with app.app_context():
        customer = svc.ensure_customer(db_session, ext, {"external_contact": {"name": "陈先生"}})
        customer.home_store_id = staff.org_unit_id
        svc.lock_friend(db_session, staff.corp_id, staff.wecom_userid, ext, customer, staff, FriendStatus.ACTIVE)
        for role in roles or ("sales_advisor",):
            db_session.add(CustomerAdvisor(customer_id=customer.id, staff_id=staff.id, role=role))
        db_session.commit()
    return customer


def hand_over(
    client: Any, app: Any, world: Any, staff_headers: Any, handover: Any, takeover: Any, *externals: str
) -> dict[str, Any]:
    """The store manager hands `handover`'s customers (resigned or on duty, as their status is)
    to `takeover`, and WeCom's results are polled until final."""
    body: dict[str, Any] = {
        "kind": "resigned" if handover.status == "resigned" else "on_duty",
        "handover_staff_id": handover.id,
        "takeover_staff_id": takeover.id,
    }
    if externals:
        body["external_userids"] = list(externals)
    resp = client.post(URL, headers=staff_headers(world["manager"]), json=body)
    assert resp.status_code == 202, resp.get_json()
    run_due_jobs(app)
    return resp.get_json()


def item_of(db_session: Any, handover_id: int, ext: str) -> WeComHandoverItem:
    db_session.expire_all()
    return db_session.scalars(
        select(WeComHandoverItem).where(
            WeComHandoverItem.handover_id == handover_id, WeComHandoverItem.external_userid == ext
        )
    ).one()


def roles_of(db_session: Any, customer_id: int) -> dict[str, int]:
    db_session.expire_all()
    return dict(
        db_session.execute(
            select(CustomerAdvisor.role, CustomerAdvisor.staff_id).where(CustomerAdvisor.customer_id == customer_id)
        ).all()
    )


def assignment_payload(db_session: Any, customer_id: int) -> dict[str, Any]:
    return db_session.scalars(
        select(Touchpoint.payload).where(Touchpoint.customer_id == customer_id, Touchpoint.kind == "advisor_assigned")
    ).one()


def test_a_resigned_advisors_role_the_takeover_shares_moves_and_their_other_roles_are_removed(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, make_staff: Any
) -> None:
    """The resigned advisor was the customer's sales advisor and (covering for a colleague) their
    insurance advisor. A sales advisor takes over: the sales role is theirs now; the insurance
    role is nobody's (the advisor has left; the store's routing assigns someone). The
    advisor_assigned touchpoint says which role moved and which was unassigned."""
    takeover = make_staff(world["store"], "sales_advisor", userid="advisor.zhao", name="赵顾问")
    customer = known(db_session, app, world["resigned"], "wmDemoCustomer002", "sales_advisor", "insurance_finance")

    body = hand_over(client, app, world, staff_headers, world["resigned"], takeover, "wmDemoCustomer002")

    assert item_of(db_session, body["id"], "wmDemoCustomer002").status == "done"
    assert roles_of(db_session, customer.id) == {"sales_advisor": takeover.id}
    payload = assignment_payload(db_session, customer.id)
    assert (payload["role"], payload["moved"], payload["unassigned"]) == (
        "sales_advisor",
        ["sales_advisor"],
        ["insurance_finance"],
    )


def test_a_takeover_of_another_role_does_not_become_the_customers_advisor_for_the_resigned_ones_role(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, make_staff: Any
) -> None:
    """The resigned sales advisor's customer (who has a service advisor too) is handed to another
    service advisor. Consultations about a new car are routed by the sales_advisor role: the
    service advisor must not become the customer's sales advisor. The resigned advisor's sales
    role is removed, and the customer's own service advisor keeps that role (the takeover has
    the WeCom relation, not the role someone else holds)."""
    service_a = make_staff(world["store"], "service_advisor", userid="svc.a", name="服务顾问甲")
    service_b = make_staff(world["store"], "service_advisor", userid="svc.b", name="服务顾问乙")
    customer = known(db_session, app, world["resigned"], "wmDemoCustomer002")
    db_session.add(CustomerAdvisor(customer_id=customer.id, staff_id=service_a.id, role="service_advisor"))
    db_session.commit()

    body = hand_over(client, app, world, staff_headers, world["resigned"], service_b, "wmDemoCustomer002")

    assert item_of(db_session, body["id"], "wmDemoCustomer002").status == "done"
    assert roles_of(db_session, customer.id) == {"service_advisor": service_a.id}
    relation = db_session.scalars(
        select(WeComFriend.status).where(WeComFriend.customer_id == customer.id, WeComFriend.userid == "svc.b")
    ).one()
    assert relation == "active"
    payload = assignment_payload(db_session, customer.id)
    assert (payload["moved"], payload["unassigned"]) == ([], ["sales_advisor"])


def test_a_store_manager_taking_over_leaves_no_resigned_advisor_assigned(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any
) -> None:
    """A store manager takes over the resigned advisor's customer (common while a replacement is
    hired). WeCom moves the customer; dealerloop keeps neither the resigned advisor as the
    customer's advisor nor gives the manager an advisor role they do not have. The customer
    stays with the store."""
    customer = known(db_session, app, world["resigned"], "wmDemoCustomer002")

    body = hand_over(client, app, world, staff_headers, world["resigned"], world["manager"], "wmDemoCustomer002")

    assert item_of(db_session, body["id"], "wmDemoCustomer002").status == "done"
    assert roles_of(db_session, customer.id) == {}
    assert db_session.get(Customer, customer.id).home_store_id == world["store"].id
    payload = assignment_payload(db_session, customer.id)
    assert (payload["role"], payload["moved"], payload["unassigned"]) == (None, [], ["sales_advisor"])


def test_an_advisor_on_duty_keeps_their_role_when_an_advisor_of_another_role_takes_the_relation(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, make_staff: Any
) -> None:
    """An on-duty transfer from the sales advisor to a service advisor moves the WeCom relation;
    the sales advisor still works here and stays the customer's sales advisor. The service
    advisor becomes the customer's service advisor (nobody held that role)."""
    service = make_staff(world["store"], "service_advisor", userid="svc.a", name="服务顾问甲")
    customer = known(db_session, app, world["zhang"], "wmDemoCustomer001")

    body = hand_over(client, app, world, staff_headers, world["zhang"], service)

    assert item_of(db_session, body["id"], "wmDemoCustomer001").status == "done"
    assert roles_of(db_session, customer.id) == {"sales_advisor": world["zhang"].id, "service_advisor": service.id}
    payload = assignment_payload(db_session, customer.id)
    assert (payload["kind"], payload["moved"], payload["unassigned"]) == ("on_duty", [], [])


def test_a_customer_only_wecoms_unassigned_list_knows_gets_their_wecom_name_and_the_store(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, make_staff: Any
) -> None:
    """A customer WeCom lists as the resigned advisor's that dealerloop never knew (a lost add
    callback) becomes a customer as any add makes one: with their WeCom name (externalcontact/get)
    and of the store."""
    takeover = make_staff(world["store"], "sales_advisor", userid="advisor.zhao", name="赵顾问")
    world["sandbox"].state.add_external_contact("wmUnknown001", "周女士", follow_userid=RESIGNED)

    body = hand_over(client, app, world, staff_headers, world["resigned"], takeover)

    item = item_of(db_session, body["id"], "wmUnknown001")
    assert item.status == "done" and item.customer_id is not None
    customer = db_session.get(Customer, item.customer_id)
    assert (customer.name, customer.home_store_id) == ("周女士", world["store"].id)
    assert roles_of(db_session, customer.id) == {"sales_advisor": takeover.id}


def test_wecom_failing_to_name_new_customers_does_not_fail_the_handover(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, make_staff: Any
) -> None:
    """WeCom fails the first contact detail read at submission: the customers of that run are
    created without a name (the run does not go on asking a failing WeCom once per customer),
    the transfer goes on, and the takeover reads the names again."""
    sb = world["sandbox"]
    takeover = make_staff(world["store"], "sales_advisor", userid="advisor.zhao", name="赵顾问")
    names = {"wmNameless0": "郑先生", "wmNameless1": "冯女士"}
    for ext, name in names.items():
        sb.state.add_external_contact(ext, name, follow_userid=RESIGNED)
    sb.state.set_fault("down", service="wecom", path="/cgi-bin/externalcontact/get", count=1)

    def detail_reads() -> int:
        return sum(1 for c in sb.state.received("/cgi-bin/externalcontact/get") if c["path"].endswith("/get"))

    resp = client.post(
        URL,
        headers=staff_headers(world["manager"]),
        json={
            "kind": "resigned",
            "handover_staff_id": world["resigned"].id,
            "takeover_staff_id": takeover.id,
            "external_userids": list(names),
        },
    )
    assert resp.status_code == 202, resp.get_json()
    # Submitted at once (jobs run inline here): one read, failed; the other customer not asked for.
    assert detail_reads() == 1
    items = [item_of(db_session, resp.get_json()["id"], ext) for ext in names]
    assert [(i.status, db_session.get(Customer, i.customer_id).name) for i in items] == [("waiting", None)] * 2

    run_due_jobs(app)
    named = {}
    for ext in names:
        item = item_of(db_session, resp.get_json()["id"], ext)
        assert item.status == "done"
        named[ext] = db_session.get(Customer, item.customer_id).name
    assert named == names


def test_a_refused_customer_only_wecom_knew_can_be_opened_by_the_manager_told_to_handle_it(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, make_staff: Any
) -> None:
    """A customer only WeCom's unassigned list knows refuses the takeover. The manager gets the
    card "1 位客户交接失败 … 请处理" and the handover detail names the customer id: the customer
    is the store's, so opening them works (not 404), with their WeCom name."""
    sb = world["sandbox"]
    takeover = make_staff(world["store"], "sales_advisor", userid="advisor.zhao", name="赵顾问")
    sb.state.add_external_contact("wmUnknownRefuse", "吴先生", follow_userid=RESIGNED)
    wecom_ops.plan_transfer(sb.state, "wmUnknownRefuse", final_status=wecom_ops.REFUSED)

    body = hand_over(client, app, world, staff_headers, world["resigned"], takeover, "wmUnknownRefuse")

    headers = staff_headers(world["manager"])
    detail = client.get(f"{URL}/{body['id']}", headers=headers).get_json()
    item = detail["items"][0]
    assert item["status"] == "refused" and item["customer_id"] is not None
    seen = client.get(f"/api/workbench/v1/customers/{item['customer_id']}", headers=headers)
    assert seen.status_code == 200, seen.get_json()
    customer = db_session.get(Customer, item["customer_id"])
    assert (customer.name, customer.home_store_id) == ("吴先生", world["store"].id)
    assert roles_of(db_session, customer.id) == {}


def test_the_handover_detail_names_each_customer_and_both_advisors(
    client: Any, app: Any, world: Any, staff_headers: Any, make_staff: Any
) -> None:
    """The manager reads the results on the card's page: who each customer is and between whom,
    by name (WeCom userids and customer ids alone say nothing to a store manager)."""
    sb = world["sandbox"]
    takeover = make_staff(world["store"], "sales_advisor", userid="advisor.zhao", name="赵顾问")
    sb.state.add_external_contact("wmNamedRefuse", "吴先生", follow_userid=RESIGNED)
    wecom_ops.plan_transfer(sb.state, "wmNamedRefuse", final_status=wecom_ops.REFUSED)

    body = hand_over(client, app, world, staff_headers, world["resigned"], takeover, "wmNamedRefuse")

    detail = client.get(f"{URL}/{body['id']}", headers=staff_headers(world["manager"])).get_json()
    assert (detail["handover_staff_name"], detail["takeover_staff_name"]) == ("王顾问", "赵顾问")
    assert [(i["external_userid"], i["customer_name"], i["status"]) for i in detail["items"]] == [
        ("wmNamedRefuse", "吴先生", "refused")
    ]


def test_wecoms_unassigned_list_matches_the_advisors_userid_case_insensitively(
    client: Any, app: Any, world: Any, staff_headers: Any, make_staff: Any
) -> None:
    """WeCom userids are case-insensitive (the directory, channels and admin treat them so). The
    resigned advisor's staff row spells the userid `Advisor.Chen`; WeCom's unassigned list
    answers `advisor.chen`: their customers are the advisor's all the same."""
    sb = world["sandbox"]
    sb.state.add_member("advisor.chen", "陈顾问", status="resigned")
    for i in range(3):
        sb.state.add_external_contact(f"wmCase{i}", "客户", follow_userid="advisor.chen")
    chen = make_staff(
        world["store"], "sales_advisor", userid="Advisor.Chen", name="陈顾问", status="resigned", in_wecom=False
    )
    # Keep the submission waiting: the items the request recorded are what is looked at.
    path = "/cgi-bin/externalcontact/resigned/transfer_customer"
    sb.state.set_fault("errcode", errcode=45009, service="wecom", path=path)

    resp = client.post(
        URL,
        headers=staff_headers(world["manager"]),
        json={"kind": "resigned", "handover_staff_id": chen.id, "takeover_staff_id": world["zhang"].id},
    )

    assert resp.status_code == 202, resp.get_json()
    assert sorted(i["external_userid"] for i in resp.get_json()["items"]) == ["wmCase0", "wmCase1", "wmCase2"]


def test_a_named_customer_whose_relation_spells_the_advisors_userid_otherwise_is_theirs(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, make_staff: Any
) -> None:
    """A manager names the customers to hand over. The relation we recorded from WeCom's callback
    spells the advisor's userid `advisor.chen`, the staff row `Advisor.Chen`: the customer is
    the advisor's, not refused as another advisor's."""
    sb = world["sandbox"]
    chen = make_staff(
        world["store"], "sales_advisor", userid="Advisor.Chen", name="陈顾问", status="resigned", in_wecom=False
    )
    with app.app_context():
        customer = svc.ensure_customer(db_session, "wmCaseNamed", {"external_contact": {"name": "客户"}})
        svc.lock_friend(db_session, chen.corp_id, "advisor.chen", "wmCaseNamed", customer, chen, FriendStatus.ACTIVE)
        db_session.commit()
    path = "/cgi-bin/externalcontact/resigned/transfer_customer"
    sb.state.set_fault("errcode", errcode=45009, service="wecom", path=path)

    resp = client.post(
        URL,
        headers=staff_headers(world["manager"]),
        json={
            "kind": "resigned",
            "handover_staff_id": chen.id,
            "takeover_staff_id": world["zhang"].id,
            "external_userids": ["wmCaseNamed"],
        },
    )

    assert resp.status_code == 202, resp.get_json()
    assert [i["external_userid"] for i in resp.get_json()["items"]] == ["wmCaseNamed"]
