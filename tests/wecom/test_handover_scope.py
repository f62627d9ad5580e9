"""Which handover reaches which customers and who may read one: two handovers of one advisor
split the customers between them, and an advisor who is no party to a handover cannot read it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import CustomerAdvisor
from backend.wecom import service as svc
from backend.wecom.models import FriendStatus
from backend.wecom.ops_models import WeComHandoverItem
from integrations.sandbox import wecom_ops
from tests.wecom.helpers import run_due_jobs

URL = "/api/workbench/v1/wecom/handovers"
RESIGNED = "advisor.wang"  # the sandbox seeds wmDemoCustomer002 as theirs
TAKEOVER = "advisor.zhang"
MANAGER = "advisor.li"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    store = tree.stores[0]
    resigned = make_staff(store, "sales_advisor", userid=RESIGNED, name="王顾问", status="resigned")
    takeover = make_staff(store, "sales_advisor", userid=TAKEOVER, name="张顾问")
    manager = make_staff(store, "store_manager", userid=MANAGER, name="李店长")
    return {"sandbox": sandbox_reset, "resigned": resigned, "takeover": takeover, "manager": manager, "store": store}


def test_two_handovers_of_one_advisor_to_different_takeovers_split_the_customers(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, make_staff: Any
) -> None:
    """A manager hands two named customers of the resigned advisor to one advisor, then the rest
    (WeCom's unassigned list) to another: the second handover takes only the customers the first
    did not, and WeCom gives each customer to the advisor their handover named."""
    sb = world["sandbox"]
    zhao = make_staff(world["store"], "sales_advisor", userid="advisor.zhao", name="赵顾问")
    for i in range(5):
        sb.state.add_external_contact(f"wmTwo{i}", "客户", follow_userid=RESIGNED)
        wecom_ops.plan_transfer(sb.state, f"wmTwo{i}", polls=2)
    headers = staff_headers(world["manager"])
    base = {"kind": "resigned", "handover_staff_id": world["resigned"].id}

    first = client.post(
        URL,
        headers=headers,
        json={**base, "takeover_staff_id": world["takeover"].id, "external_userids": ["wmTwo0", "wmTwo1"]},
    )
    assert first.status_code == 202, first.get_json()
    second = client.post(URL, headers=headers, json={**base, "takeover_staff_id": zhao.id})
    assert second.status_code == 202, second.get_json()
    run_due_jobs(app)

    db_session.expire_all()
    rows = db_session.execute(
        select(WeComHandoverItem.handover_id, WeComHandoverItem.external_userid, WeComHandoverItem.status)
    ).all()
    by = {(h, e): s for h, e, s in rows}
    f, s = first.get_json()["id"], second.get_json()["id"]
    assert {e for (h, e) in by if h == f} == {"wmTwo0", "wmTwo1"}
    assert {e for (h, e) in by if h == s} == {"wmTwo2", "wmTwo3", "wmTwo4", "wmDemoCustomer002"}, by
    assert set(by.values()) == {"done"}, by
    assert (TAKEOVER, "wmTwo0") in sb.state.follows and ("advisor.zhao", "wmTwo3") in sb.state.follows


def test_an_advisor_cannot_read_a_colleagues_handover(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, make_staff: Any
) -> None:
    """Handovers are a managers' room (the list answers 403 to an advisor); an advisor of the
    store who is no party to one cannot read its detail, with every customer's id, either."""
    bystander = make_staff(world["store"], "sales_advisor", userid="advisor.bystander", name="路人顾问")
    resigned = world["resigned"]
    with app.app_context():
        customer = svc.ensure_customer(db_session, "wmDemoCustomer002", {"external_contact": {"name": "刘女士"}})
        customer.home_store_id = resigned.org_unit_id
        svc.lock_friend(
            db_session, resigned.corp_id, RESIGNED, "wmDemoCustomer002", customer, resigned, FriendStatus.ACTIVE
        )
        db_session.add(CustomerAdvisor(customer_id=customer.id, staff_id=resigned.id, role="sales_advisor"))
        db_session.commit()
    resp = client.post(
        URL,
        headers=staff_headers(world["manager"]),
        json={
            "kind": "resigned",
            "handover_staff_id": resigned.id,
            "takeover_staff_id": world["takeover"].id,
            "external_userids": ["wmDemoCustomer002"],
        },
    )
    assert resp.status_code == 202, resp.get_json()
    run_due_jobs(app)

    listed = client.get(URL, headers=staff_headers(bystander))
    assert listed.status_code == 403
    detail = client.get(f"{URL}/{resp.get_json()['id']}", headers=staff_headers(bystander))
    assert detail.status_code in (403, 404), (detail.status_code, detail.get_json())
