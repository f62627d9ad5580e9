"""An on-duty transfer's friend_transferred touchpoint is the same whichever of the poll
result and WeCom's DELETE_BY_TRANSFER callback is processed first."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import CustomerAdvisor
from backend.touchpoints.models import Touchpoint
from backend.wecom import service as svc
from backend.wecom.models import FriendStatus
from backend.wecom.ops_models import WeComHandoverItem
from integrations.sandbox import wecom_ops
from tests.wecom import test_transfer_callbacks
from tests.wecom.helpers import contact_xml, post_event, run_due_jobs

URL = "/api/workbench/v1/wecom/handovers"
ZHANG = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"

world = test_transfer_callbacks.world  # the fixture: advisors Zhang and Zhao and manager Li at store 0


@pytest.mark.parametrize("callback_first", [False, True])
def test_friend_transferred_touchpoint_independent_of_order(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, callback_first: bool
) -> None:
    sb = world["sandbox"]
    with app.app_context():
        customer = svc.ensure_customer(db_session, CUSTOMER, {"external_contact": {"name": "陈先生"}})
        svc.lock_friend(
            db_session, world["zhang"].corp_id, ZHANG, CUSTOMER, customer, world["zhang"], FriendStatus.ACTIVE
        )
        db_session.add(CustomerAdvisor(customer_id=customer.id, staff_id=world["zhang"].id, role="sales_advisor"))
        db_session.commit()
    wecom_ops.plan_transfer(sb.state, CUSTOMER, final_status=wecom_ops.DONE, polls=1)
    body = {"kind": "on_duty", "handover_staff_id": world["zhang"].id, "takeover_staff_id": world["zhao"].id}
    assert client.post(URL, headers=staff_headers(world["manager"]), json=body).status_code == 202
    item = db_session.scalars(select(WeComHandoverItem)).one()
    assert item.status == "waiting"
    xml = contact_xml(sb, "del_external_contact", ZHANG, CUSTOMER, int(time.time()), Source="DELETE_BY_TRANSFER")
    if callback_first:
        assert post_event(client, sb, xml).data == b"success"
    run_due_jobs(app)
    if not callback_first:
        assert post_event(client, sb, xml).data == b"success"
    db_session.expire_all()
    rows = db_session.scalars(
        select(Touchpoint).where(Touchpoint.customer_id == customer.id, Touchpoint.kind == "friend_transferred")
    ).all()
    assert [(r.advisor_id, r.source) for r in rows] == [(world["zhao"].id, "wecom_handover")], (
        f"zhang={world['zhang'].id} zhao={world['zhao'].id}"
    )
