"""An advisor's open work goes on without them: when the WeCom directory sync finds them gone,
their open leads are routed again and their open consultations go back to the store's queue
(the topic's advisors told); an owner writing to an advisor who left reaches the store; a WeCom
on-duty handover takes the customer's open work of the moved role to the takeover. Through the
owner and workbench APIs, the real directory sync and handover against the WeCom sandbox."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from backend.consult.models import Conversation
from backend.customers.models import Customer, CustomerIdentity, IdentityKind
from backend.leads.models import Lead
from backend.org.models import Staff
from backend.wecom import service as svc
from backend.wecom.models import AppMessage, FriendStatus
from tests.consult.conftest import WB, World, open_conv, owner_says, staff_says
from tests.consult.test_advisor_departure_cases import directory, sync, touchpoints
from tests.wecom.helpers import run_due_jobs


def submit_lead(client: Any, world: World, body: dict[str, Any]) -> int:
    resp = client.post("/api/app/v1/leads", json=body, headers=world.owner.headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


def told(session: Any, userid: str, kind: str, key: str) -> bool:
    """Whether an app message of this kind about `key` (its dedup key names it) went to `userid`."""
    session.expire_all()
    rows = session.scalars(select(AppMessage).where(AppMessage.kind == kind)).all()
    return any(userid in m.touser and f":{key}:" in m.dedup_key for m in rows)


def test_a_resigned_advisors_open_leads_and_consultations_go_on_without_them(
    client: Any, db_session: Any, app: Any, world: World, tree: Any, sandbox_reset: Any
) -> None:
    lead_id = submit_lead(client, world, {"type": "new_car", "series": "ID.4"})
    conv = open_conv(client, world.owner, "new_car", text="ID.4 有现车吗")
    queued = open_conv(client, world.walk_in, "new_car", text="试驾")
    assert (
        client.post(f"{WB}/conversations/{queued['id']}/claim", json={}, headers=world.sales.headers).status_code == 200
    )
    assert (
        client.post(f"{WB}/conversations/{queued['id']}/close", json={}, headers=world.sales.headers).status_code == 200
    )
    db_session.expire_all()
    lead = db_session.get(Lead, lead_id)
    assert (lead.advisor_id, db_session.get(Conversation, conv["id"]).advisor_id) == (world.sales.id, world.sales.id)
    version = lead.version

    directory(sandbox_reset, db_session, tree, "adv.sales")
    stats = sync(app, db_session)
    assert stats["deactivated"] == 1

    db_session.expire_all()
    lead = db_session.get(Lead, lead_id)
    assert (lead.advisor_id, lead.routed_by, lead.version) == (world.sales2.id, "round_robin", version + 1)
    assigned = touchpoints(db_session, world.owner.id, "lead_assigned")[-1]
    assert assigned.advisor_id == world.sales2.id
    assert (assigned.payload["previous_advisor_id"], assigned.payload["by"]) == (world.sales.id, "departure")
    assert told(db_session, "adv.sales2", "new_lead", f"lead:{lead_id}:v{version + 1}")

    moved = db_session.get(Conversation, conv["id"])
    assert (moved.advisor_id, moved.claimed_at, moved.transfer_count) == (None, None, 1)
    [released] = touchpoints(db_session, world.owner.id, "consult_transferred")
    assert released.payload == {
        "conversation_id": conv["id"],
        "from_staff_id": world.sales.id,
        "to_staff_id": None,
        "reason": "departure",
    }
    # Back in the queue: the store's sales advisors still with us are told, and one claims it.
    assert told(db_session, "adv.sales2", "new_consultation", f"consult:{conv['id']}:t1")
    assert not told(db_session, "adv.sales", "new_consultation", f"consult:{conv['id']}:t1")
    assert db_session.get(Conversation, queued["id"]).advisor_id == world.sales.id  # closed: history stays
    assert (
        client.post(f"{WB}/conversations/{conv['id']}/claim", json={}, headers=world.sales2.headers).status_code == 200
    )

    # A second sync finds nothing more to move.
    before = len(touchpoints(db_session, world.owner.id, "lead_assigned"))
    sync(app, db_session)
    assert len(touchpoints(db_session, world.owner.id, "lead_assigned")) == before
    assert len(touchpoints(db_session, world.owner.id, "consult_transferred")) == 1


def test_an_owner_writing_to_an_advisor_who_left_reaches_the_store(
    client: Any, db_session: Any, world: World, sandbox_reset: Any
) -> None:
    """Even before anything moved the conversation (the advisor marked resigned by hand), the
    owner's new message is not told to nobody: the store's advisors of the topic hear of it."""
    conv = open_conv(client, world.owner, "new_car", text="ID.4 有现车吗")
    assert staff_says(client, world.sales, conv["id"], "有的").status_code == 201
    db_session.execute(update(Staff).where(Staff.id == world.sales.id).values(status="resigned"))
    db_session.commit()
    sandbox_reset.state.app_messages.clear()

    assert owner_says(client, world.owner, conv["id"], "什么时候能提车？").status_code == 201
    cards = sorted(m["touser"] for m in sandbox_reset.state.app_messages if m["msgtype"] == "textcard")
    assert cards == ["adv.sales2"]


def test_an_on_duty_handover_takes_the_customers_open_work_of_the_moved_role(
    client: Any, db_session: Any, app: Any, world: World, sandbox_reset: Any
) -> None:
    """王销售 hands 陈先生 over to 李销售 in WeCom (on duty): the new-car lead and the new-car
    consultation go with the customer; the service consultation 赵服务 holds does not, nor does
    another customer's conversation 王销售 keeps."""
    lead_id = submit_lead(client, world, {"type": "new_car", "series": "ID.4"})
    sales_conv = open_conv(client, world.owner, "new_car", text="ID.4 有现车吗")
    service_conv = open_conv(client, world.owner, "service", text="保养多少钱？")
    other = open_conv(client, world.walk_in, "new_car", text="试驾")
    assert (
        client.post(f"{WB}/conversations/{other['id']}/claim", json={}, headers=world.sales.headers).status_code == 200
    )
    sandbox_reset.state.add_external_contact("wmOwnerChen", "陈先生", follow_userid="adv.sales")
    with app.app_context():
        owner = db_session.get(Customer, world.owner.id)
        sales = db_session.get(Staff, world.sales.id)
        # The owner is the WeCom contact wmOwnerChen of 王销售 (as after the add callback).
        db_session.add(CustomerIdentity(customer_id=owner.id, kind=IdentityKind.EXTERNAL_USERID, value="wmOwnerChen"))
        svc.lock_friend(db_session, sales.corp_id, "adv.sales", "wmOwnerChen", owner, sales, FriendStatus.ACTIVE)
        db_session.commit()

    resp = client.post(
        "/api/workbench/v1/wecom/handovers",
        headers=world.manager.headers,
        json={"kind": "on_duty", "handover_staff_id": world.sales.id, "takeover_staff_id": world.sales2.id},
    )
    assert resp.status_code == 202, resp.get_json()
    run_due_jobs(app)

    db_session.expire_all()
    lead = db_session.get(Lead, lead_id)
    assert (lead.advisor_id, lead.routed_by) == (world.sales2.id, "handover")
    assert touchpoints(db_session, world.owner.id, "lead_assigned")[-1].payload["by"] == "handover"
    assert db_session.get(Conversation, sales_conv["id"]).advisor_id == world.sales2.id
    assert db_session.get(Conversation, service_conv["id"]).advisor_id == world.service.id
    assert db_session.get(Conversation, other["id"]).advisor_id == world.sales.id
    [moved] = touchpoints(db_session, world.owner.id, "consult_transferred")
    assert moved.payload["reason"] == "handover" and moved.payload["to_staff_id"] == world.sales2.id
    assert told(db_session, "adv.sales2", "new_consultation", f"consult:{sales_conv['id']}:t1")
