"""An advisor's open work goes on without them: the movers through the real directory sync and
WeCom handover against the sandbox.

Written as review probes of 509e6ed: the first block's each showed a defect (since fixed), the
second's held.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from backend.consult.models import Conversation
from backend.customers.models import Customer, CustomerIdentity, IdentityKind
from backend.leads.models import Lead
from backend.org.models import Staff
from backend.platform.db import utcnow
from backend.touchpoints.models import Touchpoint
from backend.wecom import service as svc
from backend.wecom.directory import sync_directory
from backend.wecom.models import AppMessage, FriendStatus
from integrations.sandbox import wecom_ops
from tests.consult.conftest import WB, World, open_conv, owner_says, staff_says
from tests.wecom.helpers import run_due_jobs

STORE_DEPARTMENT, OTHER_DEPARTMENT = 2, 3


# ------------------------------------------------------------------------------------ helpers


def submit_lead(client: Any, who: Any, body: dict[str, Any]) -> int:
    resp = client.post("/api/app/v1/leads", json=body, headers=who.headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


def app_messages(session: Any, kind: str, key: str) -> list[AppMessage]:
    """App messages of this kind whose dedup key names `key`."""
    session.expire_all()
    rows = session.scalars(select(AppMessage).where(AppMessage.kind == kind)).all()
    return [m for m in rows if f":{key}:" in m.dedup_key]


def told_to(session: Any, kind: str, key_prefix: str) -> list[str]:
    """Userids told by app messages of this kind whose key starts with `key_prefix`."""
    session.expire_all()
    rows = session.scalars(select(AppMessage).where(AppMessage.kind == kind)).all()
    out: list[str] = []
    for m in rows:
        if f":{key_prefix}" in m.dedup_key:
            out.extend(m.touser)
    return sorted(out)


def touchpoints(session: Any, customer_id: int, kind: str) -> list[Touchpoint]:
    session.expire_all()
    return list(
        session.scalars(
            select(Touchpoint)
            .where(Touchpoint.customer_id == customer_id, Touchpoint.kind == kind)
            .order_by(Touchpoint.id)
        )
    )


def directory(sandbox: Any, db_session: Any, tree: Any, *gone: str) -> None:
    """WeCom's directory: every staff member in their store's department, `gone` left."""
    st = sandbox.state
    wecom_ops.add_department(st, STORE_DEPARTMENT, tree.stores[0].name)
    wecom_ops.add_department(st, OTHER_DEPARTMENT, tree.stores[3].name)
    for staff in db_session.scalars(select(Staff)):
        department = STORE_DEPARTMENT if staff.org_unit_id == tree.stores[0].id else OTHER_DEPARTMENT
        wecom_ops.place_member(st, staff.wecom_userid, [department])
    for userid in gone:
        st.set_member_status(userid, "resigned")


def sync(app: Any, db_session: Any) -> dict[str, int]:
    """The directory sync, then the jobs it left (the departed advisors' work is moved by one)."""
    with app.app_context():
        stats = sync_directory(db_session, app.config["WECOM_CORP_ID"])
        db_session.commit()
    run_due_jobs(app)
    return stats


def make_friend(app: Any, db_session: Any, sandbox: Any, world: World, external: str = "wmOwnerChen") -> None:
    """The owner is 王销售's WeCom contact (as after the add callback)."""
    sandbox.state.add_external_contact(external, "陈先生", follow_userid="adv.sales")
    with app.app_context():
        owner = db_session.get(Customer, world.owner.id)
        sales = db_session.get(Staff, world.sales.id)
        db_session.add(CustomerIdentity(customer_id=owner.id, kind=IdentityKind.EXTERNAL_USERID, value=external))
        svc.lock_friend(db_session, sales.corp_id, "adv.sales", external, owner, sales, FriendStatus.ACTIVE)
        db_session.commit()


def hand_over(
    client: Any, app: Any, world: World, takeover_id: int, kind: str = "on_duty", headers: Any = None
) -> None:
    resp = client.post(
        "/api/workbench/v1/wecom/handovers",
        headers=headers or world.manager.headers,
        json={"kind": kind, "handover_staff_id": world.sales.id, "takeover_staff_id": takeover_id},
    )
    assert resp.status_code == 202, resp.get_json()
    run_due_jobs(app)


# ============================================================================================
# Defects found on review (fixed)
# ============================================================================================


def test_two_advisors_leaving_in_one_sync_are_not_handed_each_others_work(
    client: Any, db_session: Any, app: Any, world: World, tree: Any, sandbox_reset: Any
) -> None:
    """王销售 and 李销售 both leave; one sync resigns them. Their open leads must end with someone
    who stays (the store manager: no sales advisor is left), each moved once, and neither leaver
    told of a lead. Actual: the first leaver's lead is routed to the second (still active in the
    loop), who is sent a new_lead app message, and the lead is moved twice."""
    lead_a = submit_lead(client, world.owner, {"type": "new_car", "series": "ID.4"})
    lead_b = submit_lead(client, world.walk_in, {"type": "new_car", "series": "ID.3"})
    db_session.execute(update(Lead).where(Lead.id == lead_b).values(advisor_id=world.sales2.id))
    db_session.commit()
    versions = {i: db_session.get(Lead, i).version for i in (lead_a, lead_b)}

    directory(sandbox_reset, db_session, tree, "adv.sales", "adv.sales2")
    assert sync(app, db_session)["deactivated"] == 2

    db_session.expire_all()
    for lead_id in (lead_a, lead_b):
        lead = db_session.get(Lead, lead_id)
        assert lead.advisor_id == world.manager.id
    told = told_to(db_session, "new_lead", f"lead:{lead_a}:") + told_to(db_session, "new_lead", f"lead:{lead_b}:")
    leavers_told_after = [
        m
        for i in (lead_a, lead_b)
        for m in app_messages(db_session, "new_lead", f"lead:{i}:v{versions[i] + 1}")
        if set(m.touser) & {"adv.sales", "adv.sales2"}
    ]
    assert leavers_told_after == [], f"a leaver was told of a moved lead; everyone told: {told}"
    assert [db_session.get(Lead, i).version for i in (lead_a, lead_b)] == [versions[lead_a] + 1, versions[lead_b] + 1]


def test_a_conversation_released_by_two_leavers_in_one_sync_is_not_told_to_a_leaver(
    client: Any, db_session: Any, app: Any, world: World, tree: Any, sandbox_reset: Any
) -> None:
    """Same sync, both sales advisors leave: the released new-car conversation's card must not go
    to 李销售, who leaves in the same sync."""
    conv = open_conv(client, world.owner, "new_car", text="ID.4 有现车吗")
    directory(sandbox_reset, db_session, tree, "adv.sales", "adv.sales2")
    assert sync(app, db_session)["deactivated"] == 2
    told = told_to(db_session, "new_consultation", f"consult:{conv['id']}:t")
    assert "adv.sales2" not in told and "adv.sales" not in told, told


def test_a_released_conversation_with_no_advisor_of_its_topic_left_tells_the_store_managers(
    client: Any, db_session: Any, app: Any, world: World, tree: Any, sandbox_reset: Any
) -> None:
    """钱金融 (the store's only insurance advisor) claimed an insurance consultation and leaves.
    Back in the queue, somebody must be told (the lead mover falls back to the store manager);
    actual: `_store_advisors` is empty and nobody is told."""
    conv = open_conv(client, world.walk_in, "insurance", text="续保多少钱")
    assert (
        client.post(f"{WB}/conversations/{conv['id']}/claim", json={}, headers=world.insurance.headers).status_code
        == 200
    )
    assert staff_says(client, world.insurance, conv["id"], "稍等").status_code == 201  # not awaiting any more

    directory(sandbox_reset, db_session, tree, "adv.ins")
    assert sync(app, db_session)["deactivated"] == 1
    db_session.expire_all()
    assert db_session.get(Conversation, conv["id"]).advisor_id is None
    told = told_to(db_session, "new_consultation", f"consult:{conv['id']}:t")
    assert told, "the released conversation was told to nobody (no insurance advisor left, managers not told)"


def test_a_conversation_claimed_again_after_release_records_the_new_claim(
    client: Any, db_session: Any, app: Any, world: World, tree: Any, sandbox_reset: Any
) -> None:
    """A walk-in's consultation claimed by 王销售, released by his departure, claimed by 李销售:
    the second claim must be on the timeline (consult_claimed, advisor 李销售). Actual: its
    source_ref `consult:{id}:claimed` is the first claim's, so `record` returns the old row."""
    conv = open_conv(client, world.walk_in, "new_car", text="想试驾")
    url = f"{WB}/conversations/{conv['id']}/claim"
    assert client.post(url, json={}, headers=world.sales.headers).status_code == 200
    directory(sandbox_reset, db_session, tree, "adv.sales")
    sync(app, db_session)
    assert client.post(url, json={}, headers=world.sales2.headers).status_code == 200
    claims = touchpoints(db_session, world.walk_in.id, "consult_claimed")
    assert [t.advisor_id for t in claims] == [world.sales.id, world.sales2.id]


def test_a_conversation_answered_after_release_records_the_implicit_claim(
    client: Any, db_session: Any, app: Any, world: World, tree: Any, sandbox_reset: Any
) -> None:
    """Answering an unclaimed conversation claims it (post_staff_message → _claimed): after a
    release, the answerer's claim must be recorded, not swallowed by the first claim's key."""
    conv = open_conv(client, world.walk_in, "new_car", text="想试驾")
    assert staff_says(client, world.sales, conv["id"], "您好").status_code == 201  # claims
    directory(sandbox_reset, db_session, tree, "adv.sales")
    sync(app, db_session)
    assert owner_says(client, world.walk_in, conv["id"], "还在吗").status_code == 201
    assert staff_says(client, world.sales2, conv["id"], "在的").status_code == 201  # claims again
    claims = touchpoints(db_session, world.walk_in.id, "consult_claimed")
    assert [t.advisor_id for t in claims] == [world.sales.id, world.sales2.id]


def test_an_on_duty_handover_to_a_non_advisor_leaves_the_other_topic_conversation_with_the_advisor(
    client: Any, db_session: Any, app: Any, world: World, sandbox_reset: Any
) -> None:
    """王销售 (on duty) hands 陈先生 over to 孙店长 (store manager, no advisor role): no role moves
    (`roles` is the empty set), so none of 王销售's open work should move. Actual: the mover
    skips the role filter for topic "other" and puts the conversation back in the queue,
    taking it from an advisor who is still on duty."""
    conv = open_conv(client, world.owner, "other", text="随便问问")
    assert (
        client.post(f"{WB}/conversations/{conv['id']}/claim", json={}, headers=world.sales.headers).status_code == 200
    )
    make_friend(app, db_session, sandbox_reset, world)
    hand_over(client, app, world, world.manager.id)
    db_session.expire_all()
    assert db_session.get(Conversation, conv["id"]).advisor_id == world.sales.id
    assert touchpoints(db_session, world.owner.id, "consult_transferred") == []


def test_an_on_duty_handover_to_another_store_leaves_the_store_lead_with_the_advisor_on_duty(
    client: Any,
    db_session: Any,
    app: Any,
    world: World,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
) -> None:
    """王销售 (on duty) hands 陈先生 to 周顾问 of another store. The lead is of 王销售's store and
    stays there; per `move_open_leads`' own docstring it "stays theirs". Actual: it is routed
    again and the round-robin turn decides — here 李销售 gets it (and is told)."""
    # Another customer's lead moves the store's sales round-robin cursor one on.
    submit_lead(client, world.walk_in, {"type": "new_car", "series": "ID.3"})
    lead_id = submit_lead(client, world.owner, {"type": "new_car", "series": "ID.4"})
    assert db_session.get(Lead, lead_id).advisor_id == world.sales.id
    version = db_session.get(Lead, lead_id).version
    make_friend(app, db_session, sandbox_reset, world)
    admin = staff_headers(make_staff(tree.group, "group_admin", userid="adm.group"))
    hand_over(client, app, world, world.foreign_advisor.id, headers=admin)
    db_session.expire_all()
    lead = db_session.get(Lead, lead_id)
    assert lead.store_id == world.store.id  # stays in its store
    assert (lead.advisor_id, lead.version) == (world.sales.id, version)


def test_an_on_duty_handover_to_another_store_leaves_the_store_conversation_with_the_advisor(
    client: Any,
    db_session: Any,
    app: Any,
    world: World,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
) -> None:
    """Same cross-store on-duty handover: 王销售 is still on duty in the conversation's store; the
    lead mover keeps such work with them, the conversation mover throws it into the queue."""
    conv = open_conv(client, world.owner, "new_car", text="ID.4 有现车吗")
    make_friend(app, db_session, sandbox_reset, world)
    admin = staff_headers(make_staff(tree.group, "group_admin", userid="adm.group"))
    hand_over(client, app, world, world.foreign_advisor.id, headers=admin)
    db_session.expire_all()
    moved = db_session.get(Conversation, conv["id"])
    assert (moved.store_id, moved.advisor_id) == (world.store.id, world.sales.id)


# ============================================================================================
# Held on review
# ============================================================================================


def test_a_lead_of_a_store_with_nobody_left_is_unassigned_with_one_touchpoint(
    client: Any, db_session: Any, app: Any, world: World, tree: Any, sandbox_reset: Any
) -> None:
    lead_id = submit_lead(client, world.stranger, {"type": "new_car", "series": "ID.4"})
    assert db_session.get(Lead, lead_id).advisor_id == world.foreign_advisor.id
    version = db_session.get(Lead, lead_id).version
    directory(sandbox_reset, db_session, tree, "adv.foreign")
    assert sync(app, db_session)["deactivated"] == 1
    db_session.expire_all()
    lead = db_session.get(Lead, lead_id)
    assert (lead.advisor_id, lead.routed_by, lead.version, lead.store_id) == (
        None,
        "none",
        version + 1,
        world.other_store.id,
    )
    [tp] = [
        t for t in touchpoints(db_session, world.stranger.id, "lead_assigned") if t.payload.get("by") == "departure"
    ]
    assert tp.advisor_id is None and tp.source_ref == f"lead:{lead_id}:v{version + 1}:assigned"
    assert app_messages(db_session, "new_lead", f"lead:{lead_id}:v{version + 1}") == []


def test_a_loan_lead_falls_back_to_the_store_manager_told_once(
    client: Any, db_session: Any, app: Any, world: World, tree: Any, sandbox_reset: Any
) -> None:
    lead_id = submit_lead(client, world.walk_in, {"type": "loan"})
    assert db_session.get(Lead, lead_id).advisor_id == world.insurance.id
    version = db_session.get(Lead, lead_id).version
    directory(sandbox_reset, db_session, tree, "adv.ins")
    sync(app, db_session)
    sync(app, db_session)
    db_session.expire_all()
    lead = db_session.get(Lead, lead_id)
    assert (lead.advisor_id, lead.routed_by, lead.version) == (world.manager.id, "store_manager", version + 1)
    [msg] = app_messages(db_session, "new_lead", f"lead:{lead_id}:v{version + 1}")
    assert msg.touser == ["mgr.store"]


def test_resigned_reactivated_resigned_again_moves_with_fresh_keys(
    client: Any, db_session: Any, app: Any, world: World, tree: Any, sandbox_reset: Any
) -> None:
    """Moved twice: each move has its own lead version / transfer number, nothing deduplicated
    away, and reactivation moves nothing back."""
    conv = open_conv(client, world.walk_in, "new_car", text="想试驾")
    url = f"{WB}/conversations/{conv['id']}/claim"
    assert client.post(url, json={}, headers=world.sales.headers).status_code == 200
    directory(sandbox_reset, db_session, tree, "adv.sales")
    sync(app, db_session)
    sandbox_reset.state.set_member_status("adv.sales", "active")
    assert sync(app, db_session)["reactivated"] == 1
    db_session.expire_all()
    assert db_session.get(Conversation, conv["id"]).advisor_id is None
    assert client.post(url, json={}, headers=world.sales.headers).status_code == 200
    sandbox_reset.state.set_member_status("adv.sales", "resigned")
    sync(app, db_session)
    db_session.expire_all()
    c = db_session.get(Conversation, conv["id"])
    assert (c.advisor_id, c.transfer_count) == (None, 2)
    refs = [t.source_ref for t in touchpoints(db_session, world.walk_in.id, "consult_transferred")]
    assert refs == [f"consult:{conv['id']}:transfer:1", f"consult:{conv['id']}:transfer:2"]
    assert len(app_messages(db_session, "new_consultation", f"consult:{conv['id']}:t2")) == 1


def test_an_overdue_wait_released_is_alerted_once_to_who_stays(
    client: Any, db_session: Any, app: Any, world: World, tree: Any, sandbox_reset: Any
) -> None:
    from backend.consult.service import alert_overdue

    conv = open_conv(client, world.owner, "new_car", text="ID.4 有现车吗")
    directory(sandbox_reset, db_session, tree, "adv.sales")
    sync(app, db_session)
    later = utcnow() + timedelta(days=3)
    with app.app_context():
        assert alert_overdue(db_session, later) == 1
        assert alert_overdue(db_session, later) == 0
        db_session.commit()
    told = told_to(db_session, "new_consultation", f"consult:{conv['id']}:overdue")
    assert told == ["adv.sales2", "mgr.store"]


def test_wecom_down_during_the_sync_changes_nothing(
    client: Any, db_session: Any, app: Any, world: World, tree: Any, sandbox_reset: Any
) -> None:
    from backend.platform.ports import UpstreamError

    lead_id = submit_lead(client, world.owner, {"type": "new_car", "series": "ID.4"})
    directory(sandbox_reset, db_session, tree, "adv.sales")
    sandbox_reset.state.set_fault("down", service="wecom", path="/cgi-bin/user/list")
    with pytest.raises(UpstreamError):
        sync(app, db_session)
    db_session.rollback()
    sandbox_reset.state.clear_faults()
    db_session.expire_all()
    assert db_session.get(Lead, lead_id).advisor_id == world.sales.id
    assert db_session.get(Staff, world.sales.id).status == "active"


def test_app_messages_failing_do_not_undo_the_move(
    client: Any, db_session: Any, app: Any, world: World, tree: Any, sandbox_reset: Any
) -> None:
    """message/send down: the move is committed (the notification goes through the outbox) and
    the message is retried, not lost."""
    lead_id = submit_lead(client, world.owner, {"type": "new_car", "series": "ID.4"})
    version = db_session.get(Lead, lead_id).version
    directory(sandbox_reset, db_session, tree, "adv.sales")
    sandbox_reset.state.set_fault("down", service="wecom", path="/cgi-bin/message/send", count=1)
    sync(app, db_session)
    run_due_jobs(app)
    db_session.expire_all()
    assert db_session.get(Lead, lead_id).advisor_id == world.sales2.id
    [msg] = app_messages(db_session, "new_lead", f"lead:{lead_id}:v{version + 1}")
    assert msg.touser == ["adv.sales2"] and msg.status == "sent"
