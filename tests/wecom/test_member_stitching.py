"""A mini-program member and a WeCom contact who are the same WeChat user become one customer."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.customers.models import Customer, CustomerIdentity, CustomerMerge, IdentityKind
from backend.wecom.models import WeComFriend
from tests.wecom.helpers import contact_xml, post_event

ADVISOR = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"  # the sandbox's contact with unionid oDemoUnion001
UNIONID = "oDemoUnion001"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR, name="张顾问")
    admin = make_staff(tree.group, "group_admin", userid="admin")
    return {"sandbox": sandbox_reset, "admin": admin}


def login(client: Any, sb: Any, openid: str, unionid: str | None = None) -> dict[str, Any]:
    resp = client.post("/api/app/v1/auth/login", json={"code": sb.state.issue_login_code(openid, unionid)})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def live_customers(session: Any) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(Customer).where(Customer.merged_into_id.is_(None)))


def test_a_member_whose_unionid_arrives_later_is_stitched_with_the_wecom_contact(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    """The member first logged in before the mini-program returned a unionid (the app not yet
    bound to the open platform); WeCom then brought the same person with that unionid. The
    member's next login carries the unionid: the contact is merged into the member (audited,
    reversible), the member's token and id unchanged, the friend relation now theirs. A merge a
    group admin reversed is not redone by the next login."""
    sb = world["sandbox"]
    first = login(client, sb, "o-member-1")
    added = contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, int(time.time()))
    assert post_event(client, sb, added).data == b"success"
    assert live_customers(db_session) == 2
    contact_id = db_session.scalars(select(WeComFriend.customer_id)).one()

    again = login(client, sb, "o-member-1", UNIONID)
    assert again["customer_id"] == first["customer_id"]
    assert live_customers(db_session) == 1
    merge = db_session.scalars(select(CustomerMerge)).one()
    assert (merge.source_id, merge.target_id) == (contact_id, first["customer_id"])
    assert db_session.scalars(select(WeComFriend.customer_id)).one() == first["customer_id"]
    idents = set(
        db_session.execute(
            select(CustomerIdentity.kind, CustomerIdentity.value).where(
                CustomerIdentity.customer_id == first["customer_id"]
            )
        ).all()
    )
    assert {
        (IdentityKind.OPENID, "o-member-1"),
        (IdentityKind.UNIONID, UNIONID),
        (IdentityKind.EXTERNAL_USERID, CUSTOMER),
    } <= idents

    resp = client.post(f"/api/workbench/v1/customer-merges/{merge.id}/reverse", headers=staff_headers(world["admin"]))
    assert resp.status_code == 200, resp.get_json()
    assert live_customers(db_session) == 2
    login(client, sb, "o-member-1", UNIONID)
    assert live_customers(db_session) == 2
    assert db_session.scalar(select(func.count()).select_from(CustomerMerge)) == 1


def test_a_member_who_already_has_a_unionid_is_not_merged_with_another_holder(
    client: Any, db_session: Any, world: Any
) -> None:
    """Two customers with different unionids are two people: a login naming a unionid that
    another customer holds, for a member bound to a different one, changes nothing."""
    sb = world["sandbox"]
    member = login(client, sb, "o-member-2", "oOtherUnion")
    added = contact_xml(sb, "add_external_contact", ADVISOR, CUSTOMER, int(time.time()))
    assert post_event(client, sb, added).data == b"success"
    assert live_customers(db_session) == 2
    again = login(client, sb, "o-member-2", UNIONID)
    assert again["customer_id"] == member["customer_id"]
    assert live_customers(db_session) == 2
    assert db_session.scalar(select(func.count()).select_from(CustomerMerge)) == 0
