"""Marking WeCom tags on a customer is scoped to the acting advisor's own relation: an advisor who
serves the customer but is not their WeCom friend cannot tag through a colleague's relation."""

from __future__ import annotations

from typing import Any

import pytest

from backend.customers.models import CustomerAdvisor
from tests.wecom.helpers import befriend_and_sync_tags, tag_id

ZHANG = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"


@pytest.fixture
def world(client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> Any:
    sb = sandbox_reset
    make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    # The customer's service advisor, at another store, who is not the customer's WeCom friend.
    wang = make_staff(tree.stores[3], "service_advisor", userid="advisor.wang", name="王顾问")
    admin = make_staff(tree.group, "group_admin", userid="admin")
    friend = befriend_and_sync_tags(client, db_session, sb, staff_headers, admin, ZHANG, CUSTOMER)
    db_session.add(CustomerAdvisor(customer_id=friend.customer_id, staff_id=wang.id, role="service_advisor"))
    db_session.commit()
    return {"sb": sb, "wang": staff_headers(wang), "customer_id": friend.customer_id}


@pytest.mark.parametrize(
    "userid,status,code",
    [
        (None, 409, "wecom.not_a_friend"),  # defaulting to the customer's friend, a colleague
        (ZHANG, 403, "wecom.userid_out_of_scope"),  # naming the colleague's userid
    ],
)
def test_an_advisor_cannot_mark_tags_as_another_advisor(
    client: Any, world: Any, userid: str | None, status: int, code: str
) -> None:
    """Advisors act on their own customers through their own relation: an advisor who is not the
    customer's friend has nothing to tag, and never tags in WeCom as a colleague (of another store),
    whether the request names the colleague's userid or leaves it to default. Nothing reaches
    WeCom's mark_tag."""
    body: dict[str, Any] = {"add_tag_ids": [tag_id(world["sb"], "A")]}
    if userid:
        body["userid"] = userid
    resp = client.post(
        f"/api/workbench/v1/wecom/customers/{world['customer_id']}/tags", headers=world["wang"], json=body
    )
    assert (resp.status_code, resp.get_json()["code"]) == (status, code), resp.get_json()
    calls = world["sb"].state.received("/cgi-bin/externalcontact/mark_tag", "wecom")
    assert calls == []
