"""Handover requests (on-duty and resigned transfers of customers between advisors) are checked
before anything is recorded or asked of WeCom: both advisors belong to one configured corp, and a
manager names only customers of the handing-over advisor; malformed input is a 4xx in the one
error format."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.customers.models import Customer
from backend.touchpoints.models import Touchpoint
from backend.wecom import service as svc
from backend.wecom.models import FriendStatus
from backend.wecom.ops_models import WeComHandover

URL = "/api/workbench/v1/wecom/handovers"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, db_session: Any) -> dict[str, Any]:
    store = tree.stores[0]
    manager = make_staff(store, "store_manager", userid="mgr0")
    here = make_staff(store, "sales_advisor", userid="advisor.here")
    # A member of another corp (a second WeCom app's directory), working at the same store.
    other = make_staff(store, "sales_advisor", userid="advisor.other", in_wecom=False)
    other.corp_id = "wwSecondCorp000002"
    gone = make_staff(store, "sales_advisor", userid="advisor.gone", status="resigned", in_wecom=False)
    gone.corp_id = "wwUnconfigured0003"
    db_session.commit()
    return {"manager": manager, "here": here, "other": other, "gone": gone}


def handovers(session: Any) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(WeComHandover))


def test_handover_to_an_advisor_of_another_corp_is_refused(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    """WeCom moves customers only inside one corp, and userids repeat across corps: a takeover
    advisor of another corp is refused (WeCom would give the customers to whoever has that userid
    in the first corp), and no handover is recorded."""
    body = {
        "kind": "on_duty",
        "handover_staff_id": world["here"].id,
        "takeover_staff_id": world["other"].id,
        "external_userids": ["wmHandoverX1"],
    }
    resp = client.post(URL, headers=staff_headers(world["manager"]), json=body)
    assert (resp.status_code, resp.get_json()["code"]) == (422, "wecom.handover_corp_mismatch"), resp.get_json()
    assert handovers(db_session) == 0


def test_resigned_handover_of_an_advisor_of_an_unconfigured_corp_is_refused(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    """An advisor whose corp has no WeCom app configured has no customer list to read: the
    request answers a 4xx naming the missing app rather than failing on the gateway lookup."""
    body = {"kind": "resigned", "handover_staff_id": world["gone"].id, "takeover_staff_id": world["here"].id}
    resp = client.post(URL, headers=staff_headers(world["manager"]), json=body)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.get_json())
    assert handovers(db_session) == 0


def test_explicit_external_userids_are_limited_to_the_handover_advisors_customers(
    client: Any, db_session: Any, app: Any, world: Any, make_staff: Any, staff_headers: Any, tree: Any
) -> None:
    """A store manager may name the customers to hand over. One known as the friend of an advisor
    of another store (never of the handing-over advisor) is refused: the handover is not recorded,
    so it neither answers that customer's id back (which would map external_userid to customer id
    across scopes) nor writes failure touchpoints on the customer's timeline."""
    far_advisor = make_staff(tree.stores[3], "sales_advisor", userid="advisor.far")
    with app.app_context():
        foreign = svc.ensure_customer(db_session, "wmForeign", {"external_contact": {"name": "远店客户"}})
        svc.lock_friend(
            db_session,
            far_advisor.corp_id,
            far_advisor.wecom_userid,
            "wmForeign",
            foreign,
            far_advisor,
            FriendStatus.ACTIVE,
        )
        db_session.get(Customer, foreign.id).home_store_id = tree.stores[3].id
        db_session.commit()
    headers = staff_headers(world["manager"])
    # the manager cannot see that customer
    assert client.get(f"/api/workbench/v1/customers/{foreign.id}", headers=headers).status_code == 404
    takeover = make_staff(tree.stores[0], "sales_advisor", userid="advisor.take")
    body = {
        "kind": "on_duty",
        "handover_staff_id": world["here"].id,
        "takeover_staff_id": takeover.id,
        "external_userids": ["wmForeign"],
    }
    resp = client.post(URL, headers=headers, json=body)
    assert (resp.status_code, resp.get_json()["code"]) == (422, "wecom.handover_not_their_customer"), resp.get_json()
    assert "items" not in resp.get_json()
    assert handovers(db_session) == 0
    written = list(db_session.scalars(select(Touchpoint.kind).where(Touchpoint.customer_id == foreign.id)))
    assert written == []


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("post", URL, ["not", "an", "object"]),
        ("post", URL, {"kind": "resigned", "handover_staff_id": 2**70, "takeover_staff_id": 1}),
        ("post", URL, {"kind": "resigned", "handover_staff_id": 1, "takeover_staff_id": 2**63}),
        ("post", URL, {"kind": "resigned", "handover_staff_id": 1, "takeover_staff_id": 2, "external_userids": [None]}),
        ("post", URL, {"kind": "on_duty", "handover_staff_id": 1, "takeover_staff_id": 2, "transfer_success_msg": 5}),
        ("get", f"{URL}/{2**70}", None),
        ("get", f"{URL}/abc", None),
        ("get", f"{URL}?limit=0", None),
        ("get", f"{URL}?limit=abc", None),
    ],
)
def test_malformed_requests_are_a_4xx_in_the_one_error_format(
    client: Any, world: Any, staff_headers: Any, method: str, path: str, body: Any
) -> None:
    """A body that is no object, ids beyond any column, a null customer, a non-text message, a
    path id that is no number or too large, a bad page size: each answers a 4xx with the one
    error format (code, status, message), never a 500."""
    headers = staff_headers(world["manager"])
    resp = (
        getattr(client, method)(path, headers=headers, json=body)
        if body is not None
        else client.get(path, headers=headers)
    )
    data = resp.get_json(silent=True)
    assert 400 <= resp.status_code < 500, (resp.status_code, data)
    assert isinstance(data, dict) and {"code", "status", "message"} <= set(data), data
