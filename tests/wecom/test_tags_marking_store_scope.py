"""Tag marking across stores: who may act in WeCom through which relation, and what each role sees."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import Customer
from backend.wecom.models import WeComFriend
from tests.wecom.helpers import contact_xml, post_event, tag_id

ZHANG = "advisor.zhang"  # store 0
LI = "advisor.li"  # store 1
CUSTOMER = "wmSharedStores01"


@pytest.fixture
def world(client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> Any:
    """A customer first added by Li (store 1, so the customer's home store is store 1), then by
    Zhang (store 0): two open relations, one per store."""
    sb = sandbox_reset
    zhang = make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    li = make_staff(tree.stores[1], "sales_advisor", userid=LI, name="李顾问")
    mgr1 = make_staff(tree.stores[1], "store_manager", userid="mgr1", name="店长1")
    admin = make_staff(tree.group, "group_admin", userid="admin")
    sb.state.add_external_contact(CUSTOMER, "赵先生", follow_userid=LI)
    sb.state.add_follow(ZHANG, CUSTOMER)
    db_session.commit()
    t = int(time.time())
    for userid, when in ((LI, t - 10), (ZHANG, t - 5)):
        resp = post_event(client, sb, contact_xml(sb, "add_external_contact", userid, CUSTOMER, when))
        assert (resp.status_code, resp.data) == (200, b"success")
    sync = client.post("/api/workbench/v1/wecom/tags/sync", headers=staff_headers(admin), json={})
    assert sync.status_code == 202
    db_session.expire_all()
    friends = {
        f.userid: f for f in db_session.scalars(select(WeComFriend).where(WeComFriend.external_userid == CUSTOMER))
    }
    assert set(friends) == {LI, ZHANG}
    customer = db_session.get(Customer, friends[LI].customer_id)
    assert customer.home_store_id == tree.stores[1].id
    return {"sb": sb, "zhang": zhang, "li": li, "mgr1": staff_headers(mgr1), "customer_id": customer.id}


def _mark(client: Any, world: Any, body: dict[str, Any]) -> Any:
    return client.post(
        f"/api/workbench/v1/wecom/customers/{world['customer_id']}/tags", headers=world["mgr1"], json=body
    )


def test_manager_cannot_mark_tags_through_another_stores_advisor(client: Any, world: Any) -> None:
    """The manager of store 1 names Zhang (an advisor of store 0, outside the manager's scope):
    tagging must not act in WeCom as Zhang (as channels refuse another store's advisor)."""
    resp = _mark(client, world, {"add_tag_ids": [tag_id(world["sb"], "A")], "userid": ZHANG})
    calls = [c["json"] for c in world["sb"].state.received("/cgi-bin/externalcontact/mark_tag", "wecom")]
    assert resp.status_code in (403, 404, 409), (resp.status_code, resp.get_json(), calls)
    assert calls == []


def test_manager_default_relation_is_one_in_scope(client: Any, world: Any) -> None:
    """Without `userid`, the relation chosen for the manager of store 1 should be one of their
    store (Li's), not the latest-added relation of another store's advisor (Zhang's)."""
    resp = _mark(client, world, {"add_tag_ids": [tag_id(world["sb"], "A")]})
    calls = [c["json"] for c in world["sb"].state.received("/cgi-bin/externalcontact/mark_tag", "wecom")]
    assert all(c["userid"] == LI for c in calls), (resp.status_code, resp.get_json(), calls)
