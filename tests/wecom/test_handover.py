"""Customer handover through the real WeCom client against the sandbox: resigned inheritance in
chunks of 100 with results polled until final, on-duty transfer, failures (refused, limit,
rejected) as touchpoints and manager alerts, upstream faults retried with nothing half-applied,
and bad input answered in the one error format."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from backend.customers.models import Customer, CustomerAdvisor
from backend.platform.db import utcnow
from backend.platform.jobs import OutboxJob
from backend.touchpoints.models import Touchpoint
from backend.wecom import service as svc
from backend.wecom.models import AppMessage, FriendStatus, WeComFriend
from backend.wecom.ops_models import WeComHandover, WeComHandoverItem
from integrations.sandbox import wecom_ops
from tests.wecom.helpers import run_due_jobs, upstream_calls

URL = "/api/workbench/v1/wecom/handovers"
RESIGNED = "advisor.wang"
TAKEOVER = "advisor.zhang"
MANAGER = "advisor.li"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, db_session: Any, app: Any) -> dict[str, Any]:
    store = tree.stores[0]
    resigned = make_staff(store, "sales_advisor", userid=RESIGNED, name="王顾问", status="resigned")
    takeover = make_staff(store, "sales_advisor", userid=TAKEOVER, name="张顾问")
    manager = make_staff(store, "store_manager", userid=MANAGER, name="李店长")
    return {"sandbox": sandbox_reset, "resigned": resigned, "takeover": takeover, "manager": manager, "tree": tree}


def known_relation(db_session: Any, app: Any, staff: Any, ext: str, name: str) -> Any:
    """A relation dealerloop already has (as after an add callback), with the advisor assigned."""
    with app.app_context():
        customer = svc.ensure_customer(db_session, ext, {"external_contact": {"name": name}})
        svc.lock_friend(db_session, staff.corp_id, staff.wecom_userid, ext, customer, staff, FriendStatus.ACTIVE)
        db_session.add(CustomerAdvisor(customer_id=customer.id, staff_id=staff.id, role="sales_advisor"))
        db_session.commit()
    return customer


def start_resigned(client: Any, world: Any, staff_headers: Any, **extra: Any) -> Any:
    """The store manager hands the resigned advisor's customers to the takeover advisor."""
    body = {"kind": "resigned", "handover_staff_id": world["resigned"].id, "takeover_staff_id": world["takeover"].id}
    return client.post(URL, headers=staff_headers(world["manager"]), json={**body, **extra})


def count(session: Any, model: Any, *where: Any) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).where(*where))


def kinds(session: Any, customer_id: int) -> list[str]:
    session.expire_all()
    return list(
        session.scalars(select(Touchpoint.kind).where(Touchpoint.customer_id == customer_id).order_by(Touchpoint.id))
    )


def test_resigned_handover_in_chunks_polled_until_final(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any
) -> None:
    sb = world["sandbox"]
    # WeCom: the resigned advisor has 150 more customers (151 with the seeded one); we know 3.
    for i in range(150):
        sb.state.add_external_contact(f"wmHand{i:03d}", f"客户{i}", follow_userid=RESIGNED)
    known = [known_relation(db_session, app, world["resigned"], f"wmHand{i:03d}", f"客户{i}") for i in range(3)]
    wecom_ops.plan_transfer(sb.state, "wmHand001", final_status=wecom_ops.REFUSED)
    wecom_ops.plan_transfer(sb.state, "wmHand002", final_status=wecom_ops.LIMIT, polls=2)

    resp = start_resigned(client, world, staff_headers)
    assert resp.status_code == 202, resp.get_json()
    body = resp.get_json()
    # Submitted at once (jobs run inline here): ≤ 100 per call, then waiting for WeCom.
    calls = sb.state.received("/cgi-bin/externalcontact/resigned/transfer_customer")
    assert [len(c["json"]["external_userid"]) for c in calls] == [100, 51]
    assert {c["json"]["takeover_userid"] for c in calls} == {TAKEOVER}
    unassigned = sb.state.received("/cgi-bin/externalcontact/get_unassigned_list")
    assert unassigned and {str(c["json"]) for c in unassigned} == {str({"cursor": "", "page_size": 1000})}
    handover = db_session.get(WeComHandover, body["id"])
    db_session.refresh(handover)
    assert handover.status == "polling"
    assert count(db_session, WeComHandoverItem, WeComHandoverItem.status == "waiting") == 151

    run_due_jobs(app)  # poll, re-scheduled until every customer is final
    db_session.refresh(handover)
    assert handover.status == "finished" and handover.polls == 3  # waiting, waiting+final, last one final
    statuses = dict(
        db_session.execute(
            select(WeComHandoverItem.external_userid, WeComHandoverItem.status).where(
                WeComHandoverItem.handover_id == handover.id
            )
        ).all()
    )
    assert statuses["wmHand000"] == "done" and statuses["wmHand001"] == "refused"
    assert statuses["wmHand002"] == "limit" and statuses["wmDemoCustomer002"] == "done"
    assert sum(1 for s in statuses.values() if s == "done") == 149
    assert count(db_session, WeComHandoverItem, WeComHandoverItem.open_key.is_not(None)) == 0

    # dealerloop follows the result: relation and advisor assignment of the done customer moved.
    done = known[0]
    old = db_session.scalars(
        select(WeComFriend).where(WeComFriend.userid == RESIGNED, WeComFriend.customer_id == done.id)
    ).one()
    new = db_session.scalars(
        select(WeComFriend).where(WeComFriend.userid == TAKEOVER, WeComFriend.customer_id == done.id)
    ).one()
    assert (old.status, new.status, new.staff_id) == ("transferred", "active", world["takeover"].id)
    advisors = db_session.scalars(select(CustomerAdvisor.staff_id).where(CustomerAdvisor.customer_id == done.id)).all()
    assert advisors == [world["takeover"].id]
    assert kinds(db_session, done.id) == ["transfer_started", "friend_transferred", "advisor_assigned"]
    # The refused one stays with nobody new; its failure is a touchpoint.
    refused = known[1]
    assert kinds(db_session, refused.id) == ["transfer_started", "transfer_failed"]
    assert db_session.scalars(
        select(CustomerAdvisor.staff_id).where(CustomerAdvisor.customer_id == refused.id)
    ).all() == [world["resigned"].id]
    assert count(db_session, Touchpoint, Touchpoint.kind == "friend_transferred") == 149
    assert count(db_session, Touchpoint, Touchpoint.kind == "transfer_failed") == 2
    assert count(db_session, Touchpoint, Touchpoint.kind == "transfer_started") == 151
    # Unknown customers (from WeCom's unassigned list) became customers of the takeover advisor.
    assert count(db_session, WeComFriend, WeComFriend.userid == TAKEOVER, WeComFriend.status == "active") == 149
    assert sb.state.follows.get((TAKEOVER, "wmHand000")) is not None

    # Failures alerted the store manager (the requester too, the same person: one message per step).
    messages = db_session.scalars(select(AppMessage).where(AppMessage.kind == "handover_failed")).all()
    assert [(m.touser, m.status, m.msgtype) for m in messages] == [([MANAGER], "sent", "textcard")] * 2
    cards = [m for m in sb.state.app_messages if m["msgtype"] == "textcard"]
    assert len(cards) == 2 and all(c["touser"] == MANAGER for c in cards)
    assert "客户拒绝 1 位" in cards[0]["textcard"]["description"]
    assert "上限 1 位" in cards[1]["textcard"]["description"]

    detail = client.get(f"{URL}/{handover.id}", headers=staff_headers(world["manager"])).get_json()
    assert detail["counts"] == {"done": 149, "refused": 1, "limit": 1} and detail["failed"] == 2

    # Re-running the jobs changes nothing (idempotent): no new calls, touchpoints or messages.
    polls_before = sb.hits("/cgi-bin/externalcontact/resigned/transfer_result")
    with app.app_context():
        from backend.wecom import handover as handover_svc

        assert handover_svc.poll(db_session, handover.id) == "skipped"
        assert handover_svc.submit_chunk(db_session, handover.id) == "skipped"
    assert sb.hits("/cgi-bin/externalcontact/resigned/transfer_result") == polls_before
    assert count(db_session, Touchpoint, Touchpoint.kind == "friend_transferred") == 149


@pytest.mark.parametrize(
    "fault",
    [
        {"mode": "errcode", "errcode": 45009},  # rate limited
        {"mode": "down"},  # HTTP 503
    ],
)
def test_submission_failure_is_retried_and_nothing_half_applied(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, fault: Any
) -> None:
    sb = world["sandbox"]
    for i in range(120):
        sb.state.add_external_contact(f"wmRetry{i:03d}", f"客户{i}", follow_userid=RESIGNED)
    # The second chunk's call fails once: the first chunk stays applied, the second not at all.
    original = sb.state.take_fault

    def second_chunk_fails_once(service: str, path: str) -> Any:
        from flask import request

        body = request.get_json(force=True, silent=True) or {}
        if path.endswith("/resigned/transfer_customer") and len(body.get("external_userid", [])) == 20:
            sb.state.take_fault = original  # type: ignore[method-assign]
            sb.state.set_fault(service="wecom", path=path, count=1, **fault)
        return original(service, path)

    sb.state.take_fault = second_chunk_fails_once  # type: ignore[method-assign]
    try:
        resp = start_resigned(client, world, staff_headers, external_userids=[f"wmRetry{i:03d}" for i in range(120)])
    finally:
        sb.state.take_fault = original  # type: ignore[method-assign]
    assert resp.status_code == 202
    handover_id = resp.get_json()["id"]
    assert count(db_session, WeComHandoverItem, WeComHandoverItem.status == "waiting") == 100
    assert count(db_session, WeComHandoverItem, WeComHandoverItem.status == "pending") == 20
    assert len([k for k in sb.state.transfers if k[0] == RESIGNED]) == 100  # WeCom has only chunk 1
    # the chunk goes again in a job of its own, later (not the outbox's few quick tries)
    job = db_session.scalars(
        select(OutboxJob).where(OutboxJob.name == "wecom.handover.submit", OutboxJob.status == "pending")
    ).one()
    assert ":retry:" in job.dedup_key and job.run_after > utcnow() + timedelta(minutes=4)

    sb.state.expire_tokens("wecom")  # and the token expired meanwhile (42001): refreshed once
    tokens_before = sb.hits("/cgi-bin/gettoken")
    run_due_jobs(app)
    assert sb.hits("/cgi-bin/gettoken") == tokens_before + 1
    assert count(db_session, WeComHandoverItem, WeComHandoverItem.status == "done") == 120
    assert db_session.get(WeComHandover, handover_id).status == "finished"
    assert count(db_session, Touchpoint, Touchpoint.kind == "friend_transferred") == 120


def test_poll_failure_is_retried(client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any) -> None:
    sb = world["sandbox"]
    sb.state.set_fault("down", service="wecom", path="/cgi-bin/externalcontact/resigned/transfer_result", count=2)
    resp = start_resigned(client, world, staff_headers)
    assert resp.status_code == 202
    run_due_jobs(app)
    handover = db_session.get(WeComHandover, resp.get_json()["id"])
    db_session.refresh(handover)
    # the two failed reads counted as polls without news; the next two finished it
    assert handover.status == "finished" and handover.polls == 4
    tries = db_session.scalars(select(OutboxJob.attempts).where(OutboxJob.name == "wecom.handover.poll")).all()
    assert tries == [1, 1, 1, 1]


def test_wecom_down_for_hours_does_not_leave_a_handover_stuck(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any
) -> None:
    """More failures than the outbox's tries, at submission and while polling: the handover
    goes on when WeCom is back (it used to stay `submitting` or `polling` for good)."""
    sb = world["sandbox"]
    sb.state.set_fault("down", service="wecom", path="/cgi-bin/externalcontact/resigned/transfer_customer", count=8)
    sb.state.set_fault("down", service="wecom", path="/cgi-bin/externalcontact/resigned/transfer_result", count=8)
    resp = start_resigned(client, world, staff_headers)
    assert resp.status_code == 202
    run_due_jobs(app, rounds=30)
    handover = db_session.get(WeComHandover, resp.get_json()["id"])
    db_session.refresh(handover)
    assert handover.status == "finished"
    assert count(db_session, WeComHandoverItem, WeComHandoverItem.status == "done") == 1
    assert count(db_session, OutboxJob, OutboxJob.name.like("wecom.handover.%"), OutboxJob.status != "done") == 0


def test_a_chunk_wecom_cannot_take_for_a_day_fails_named_and_the_next_goes(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any
) -> None:
    sb = world["sandbox"]
    for i in range(120):
        sb.state.add_external_contact(f"wmLate{i:03d}", f"客户{i}", follow_userid=RESIGNED)
    sb.state.set_fault("down", service="wecom", path="/cgi-bin/externalcontact/resigned/transfer_customer", count=1)
    resp = start_resigned(client, world, staff_headers, external_userids=[f"wmLate{i:03d}" for i in range(120)])
    assert resp.status_code == 202
    handover_id = resp.get_json()["id"]
    # the day is over when the retry comes, and WeCom is still down for it
    a_day_ago = utcnow() - timedelta(hours=25)
    db_session.execute(
        update(WeComHandover)
        .where(WeComHandover.id == handover_id)
        .values(created_at=a_day_ago, collected_at=a_day_ago)
    )
    db_session.commit()
    sb.state.set_fault("down", service="wecom", path="/cgi-bin/externalcontact/resigned/transfer_customer", count=1)
    run_due_jobs(app)
    assert count(db_session, WeComHandoverItem, WeComHandoverItem.status == "rejected") == 100
    assert count(db_session, WeComHandoverItem, WeComHandoverItem.status == "done") == 20
    assert db_session.get(WeComHandover, handover_id).status == "finished"
    alert = db_session.scalars(select(AppMessage).where(AppMessage.dedup_key.like(f"%handover:{handover_id}:%")))
    assert MANAGER in alert.first().touser


def test_a_customer_wecom_already_has_in_transfer_is_polled_not_failed(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any
) -> None:
    """Our call went through but its answer was lost (a timeout): sent again, WeCom says the
    customer is in transfer already; the poll then finds the takeover."""
    from integrations.sandbox.wecom_ops import WAITING

    sb = world["sandbox"]
    ext = "wmInTransfer001"
    sb.state.add_external_contact(ext, "客户", follow_userid=RESIGNED)
    sb.state.transfers[(RESIGNED, TAKEOVER, ext)] = {
        "external_userid": ext,
        "status": WAITING,
        "takeover_time": 0,
        "_polls_left": 1,
    }
    resp = start_resigned(client, world, staff_headers, external_userids=[ext])
    assert resp.status_code == 202
    run_due_jobs(app)
    item = db_session.scalars(select(WeComHandoverItem).where(WeComHandoverItem.external_userid == ext)).one()
    assert (item.status, item.errcode) == ("done", None)


def test_on_duty_transfer(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, make_staff: Any
) -> None:
    sb = world["sandbox"]
    sb.state.add_member("advisor.zhao", "赵顾问")
    zhao = make_staff(world["tree"].stores[0], "sales_advisor", userid="advisor.zhao", name="赵顾问")
    customer = known_relation(db_session, app, world["takeover"], "wmDemoCustomer001", "陈先生")
    resp = client.post(
        URL,
        headers=staff_headers(world["manager"]),
        json={
            "kind": "on_duty",
            "handover_staff_id": world["takeover"].id,
            "takeover_staff_id": zhao.id,
            "transfer_success_msg": "您好，之后由赵顾问为您服务",
        },
    )
    assert resp.status_code == 202, resp.get_json()
    call = sb.state.received("/cgi-bin/externalcontact/transfer_customer")[0]["json"]
    assert call == {
        "handover_userid": TAKEOVER,
        "takeover_userid": "advisor.zhao",
        "external_userid": ["wmDemoCustomer001"],
        "transfer_success_msg": "您好，之后由赵顾问为您服务",
    }
    assert sb.hits("/cgi-bin/externalcontact/get_unassigned_list") == 0  # only for resigned advisors
    run_due_jobs(app)
    assert sb.hits("/cgi-bin/externalcontact/transfer_result") == 2
    friends = dict(
        db_session.execute(
            select(WeComFriend.userid, WeComFriend.status).where(WeComFriend.customer_id == customer.id)
        ).all()
    )
    assert friends == {TAKEOVER: "transferred", "advisor.zhao": "active"}
    assert db_session.scalars(
        select(CustomerAdvisor.staff_id).where(CustomerAdvisor.customer_id == customer.id)
    ).all() == [zhao.id]
    tp = db_session.scalars(
        select(Touchpoint).where(Touchpoint.customer_id == customer.id, Touchpoint.kind == "friend_transferred")
    ).one()
    assert tp.payload["kind"] == "on_duty" and tp.advisor_id == zhao.id


def test_customers_rejected_at_submission_are_failures(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any
) -> None:
    sb = world["sandbox"]
    ghost = known_relation(db_session, app, world["resigned"], "wmGhost", "幽灵客户")  # ours, gone in WeCom
    customers_before = count(db_session, Customer)
    resp = start_resigned(client, world, staff_headers, external_userids=["wmDemoCustomer002", "wmNotHis", "wmGhost"])
    assert resp.status_code == 202
    items = dict(db_session.execute(select(WeComHandoverItem.external_userid, WeComHandoverItem.errcode)).all())
    assert items == {"wmDemoCustomer002": None, "wmNotHis": 84061, "wmGhost": 84061}
    # The known customer's failure is a touchpoint; an id we never knew invents no customer.
    failed = db_session.scalars(select(Touchpoint).where(Touchpoint.kind == "transfer_failed")).one()
    assert failed.customer_id == ghost.id and failed.payload["status"] == "rejected"
    assert count(db_session, Customer) == customers_before + 1  # wmDemoCustomer002, once accepted
    assert [m["touser"] for m in sb.state.app_messages] == [MANAGER]
    # A second handover of the same customers while the first is open is refused by the database.
    again = start_resigned(client, world, staff_headers, external_userids=["wmDemoCustomer002"])
    assert (again.status_code, again.get_json()["code"]) == (409, "wecom.handover_in_progress")


def test_bad_input_is_a_clear_4xx(client: Any, world: Any, staff_headers: Any, make_staff: Any) -> None:
    tree = world["tree"]
    headers, advisor_headers = staff_headers(world["manager"]), staff_headers(world["takeover"])
    elsewhere = make_staff(tree.stores[3], "sales_advisor", userid="far.away", status="resigned")
    empty_id = make_staff(tree.stores[0], "sales_advisor", userid="nobody.here", status="resigned").id
    base = {"kind": "resigned", "handover_staff_id": world["resigned"].id, "takeover_staff_id": world["takeover"].id}
    cases = [
        ({**base, "kind": "sideways"}, 422, "request.invalid"),
        ({**base, "surprise": 1}, 422, "request.invalid"),
        ({**base, "external_userids": []}, 422, "request.invalid"),
        ({**base, "transfer_success_msg": "hi"}, 422, "request.invalid"),
        ({**base, "takeover_staff_id": world["resigned"].id}, 422, "wecom.handover_same_advisor"),
        (
            {**base, "handover_staff_id": world["takeover"].id, "takeover_staff_id": world["manager"].id},
            409,
            "wecom.handover_not_resigned",
        ),
        ({**base, "kind": "on_duty"}, 409, "wecom.handover_advisor_resigned"),
        ({**base, "takeover_staff_id": world["resigned"].id + 100000}, 404, "staff.not_found"),
        ({**base, "handover_staff_id": elsewhere.id}, 404, "staff.not_found"),  # outside my scope
    ]
    for payload, status, code in cases:
        resp = client.post(URL, headers=headers, json=payload)
        assert (resp.status_code, resp.get_json()["code"]) == (status, code), payload
    advisor = client.post(URL, headers=advisor_headers, json=base)
    assert (advisor.status_code, advisor.get_json()["code"]) == (403, "auth.forbidden")
    resp = client.post(URL, headers=headers, json={**base, "handover_staff_id": empty_id})
    assert (resp.status_code, resp.get_json()["code"]) == (422, "wecom.handover_nothing")


def test_handovers_are_listed_in_scope(
    client: Any, db_session: Any, world: Any, staff_headers: Any, make_staff: Any
) -> None:
    resp = start_resigned(client, world, staff_headers)
    handover_id = resp.get_json()["id"]
    other_manager = make_staff(world["tree"].stores[3], "store_manager")
    assert [h["id"] for h in client.get(URL, headers=staff_headers(world["manager"])).get_json()] == [handover_id]
    assert client.get(URL, headers=staff_headers(other_manager)).get_json() == []
    bogus = client.get(URL, headers=staff_headers(world["manager"]), query_string={"status": "lost"})
    assert (bogus.status_code, bogus.get_json()["code"]) == (422, "request.invalid")
    hidden = client.get(f"{URL}/{handover_id}", headers=staff_headers(other_manager))
    assert (hidden.status_code, hidden.get_json()["code"]) == (404, "wecom.handover_not_found")


def test_takeover_at_its_customer_limit_ends_as_limit(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any
) -> None:
    sb = world["sandbox"]
    wecom_ops.set_customer_limit(sb.state, TAKEOVER, 1)  # the takeover advisor already has one customer
    resp = start_resigned(client, world, staff_headers)
    run_due_jobs(app)
    item = db_session.scalars(
        select(WeComHandoverItem).where(WeComHandoverItem.handover_id == resp.get_json()["id"])
    ).one()
    db_session.refresh(item)
    assert (item.external_userid, item.status) == ("wmDemoCustomer002", "limit")
    assert (RESIGNED, "wmDemoCustomer002") in sb.state.follows  # nothing moved in WeCom either
    assert count(db_session, WeComFriend, WeComFriend.userid == TAKEOVER) == 0


def test_unassigned_list_failing_answers_502_and_records_nothing(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    world["sandbox"].state.set_fault("down", service="wecom", path="/cgi-bin/externalcontact/get_unassigned_list")
    resp = start_resigned(client, world, staff_headers)
    assert (resp.status_code, resp.get_json()["code"]) == (502, "upstream.unavailable")
    assert count(db_session, WeComHandover) == 0 and count(db_session, OutboxJob) == 0


def test_a_call_wecom_refuses_as_a_whole_fails_the_chunk_not_retried(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any
) -> None:
    sb = world["sandbox"]
    sb.state.set_member_status(RESIGNED, "active")  # dealerloop says resigned, WeCom does not (40097)
    resp = start_resigned(client, world, staff_headers, external_userids=["wmDemoCustomer002"])
    assert resp.status_code == 202
    run_due_jobs(app)
    handover = db_session.get(WeComHandover, resp.get_json()["id"])
    db_session.refresh(handover)
    item = db_session.scalars(select(WeComHandoverItem).where(WeComHandoverItem.handover_id == handover.id)).one()
    assert (handover.status, item.status, item.errcode) == ("finished", "rejected", 40097)
    submit = db_session.scalars(select(OutboxJob).where(OutboxJob.name == "wecom.handover.submit")).one()
    assert (submit.status, submit.attempts) == ("done", 1)  # not retried
    assert [m["touser"] for m in sb.state.app_messages] == [MANAGER]


def test_on_duty_transfer_of_a_customer_moved_twice_in_90_days_fails_without_calling_wecom(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, make_staff: Any
) -> None:
    from datetime import timedelta

    from backend.platform.db import utcnow

    sb = world["sandbox"]
    sb.state.add_member("advisor.zhao", "赵顾问")
    zhao = make_staff(world["tree"].stores[0], "sales_advisor", userid="advisor.zhao", name="赵顾问")
    takeover = world["takeover"]
    customer = known_relation(db_session, app, takeover, "wmDemoCustomer001", "陈先生")

    def transfer(from_staff: Any, to_staff: Any) -> Any:
        resp = client.post(
            URL,
            headers=staff_headers(world["manager"]),
            json={"kind": "on_duty", "handover_staff_id": from_staff.id, "takeover_staff_id": to_staff.id},
        )
        assert resp.status_code == 202, resp.get_json()
        run_due_jobs(app)
        db_session.expire_all()
        return db_session.scalars(
            select(WeComHandoverItem).where(WeComHandoverItem.handover_id == resp.get_json()["id"])
        ).one()

    assert transfer(takeover, zhao).status == "done"
    assert transfer(zhao, takeover).status == "done"
    calls = len(sb.state.received("/cgi-bin/externalcontact/transfer_customer"))
    third = transfer(takeover, zhao)
    assert third.status == "quota_exceeded"
    assert len(sb.state.received("/cgi-bin/externalcontact/transfer_customer")) == calls  # not sent
    failure = db_session.scalars(
        select(Touchpoint).where(Touchpoint.customer_id == customer.id, Touchpoint.kind == "transfer_failed")
    ).one()
    assert failure.payload["status"] == "quota_exceeded"
    alert = db_session.scalars(select(AppMessage).where(AppMessage.dedup_key.like(f"%handover:{third.handover_id}:%")))
    assert MANAGER in alert.one().touser
    # The advisor keeps the customer.
    assert db_session.scalars(
        select(CustomerAdvisor.staff_id).where(CustomerAdvisor.customer_id == customer.id)
    ).all() == [takeover.id]
    # 90 days after the first two, WeCom allows it again.
    db_session.execute(
        update(WeComHandoverItem)
        .where(WeComHandoverItem.status == "done")
        .values(submitted_at=utcnow() - timedelta(days=91))
    )
    db_session.commit()
    assert transfer(takeover, zhao).status == "done"


def test_a_first_chunk_all_over_the_on_duty_quota_does_not_strand_the_rest(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, make_staff: Any
) -> None:
    """Every customer of the first chunk was moved twice in 90 days: they fail without a call,
    and the customers after them are still sent (they used to stay pending for good)."""
    sb = world["sandbox"]
    sb.state.add_member("advisor.zhao", "赵顾问")
    zhao = make_staff(world["tree"].stores[0], "sales_advisor", userid="advisor.zhao", name="赵顾问")
    takeover = world["takeover"]
    externals = [f"wmQuota{i:03d}" for i in range(101)]
    for ext in externals:
        sb.state.add_external_contact(ext, "客户", follow_userid=TAKEOVER)
        known_relation(db_session, app, takeover, ext, "客户")
    for _ in range(2):  # two earlier on-duty transfers of the first hundred, this month
        earlier = WeComHandover(
            corp_id=takeover.corp_id,
            kind="on_duty",
            handover_userid="advisor.zhao",
            takeover_userid=TAKEOVER,
            handover_staff_id=zhao.id,
            takeover_staff_id=takeover.id,
            store_id=world["tree"].stores[0].id,
            status="finished",
        )
        db_session.add(earlier)
        db_session.flush()
        db_session.add_all(
            WeComHandoverItem(handover_id=earlier.id, external_userid=ext, status="done", submitted_at=utcnow())
            for ext in externals[:100]
        )
    db_session.commit()
    resp = client.post(
        URL,
        headers=staff_headers(world["manager"]),
        json={"kind": "on_duty", "handover_staff_id": takeover.id, "takeover_staff_id": zhao.id},
    )
    assert resp.status_code == 202, resp.get_json()
    run_due_jobs(app)
    items = db_session.scalars(
        select(WeComHandoverItem).where(WeComHandoverItem.handover_id == resp.get_json()["id"])
    ).all()
    assert sorted(i.status for i in items) == ["done"] + ["quota_exceeded"] * 100
    assert {i.external_userid for i in items if i.status == "done"} == {externals[100]}
    assert db_session.get(WeComHandover, resp.get_json()["id"]).status == "finished"


def test_a_long_unassigned_list_is_read_in_the_background_and_handed_over_in_two(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any
) -> None:
    """WeCom lists the resigned advisor's 5,003 customers in pages of 1,000: the request reads
    the first page and answers `collecting`; the collect job reads the rest. 5,000 per
    handover: `left_over` says how many are left, and the next request takes them (those
    already in the first are skipped, not refused)."""
    from backend.wecom.handover import MAX_ITEMS

    sb = world["sandbox"]
    for i in range(MAX_ITEMS):
        sb.state.add_external_contact(f"wmMany{i:05d}", "客户", follow_userid=RESIGNED)
    # Ten relations dealerloop knows, which WeCom also lists (on its last page): counted once.
    for i in range(10):
        sb.state.add_external_contact(f"wmzKnown{i}", "客户", follow_userid=RESIGNED)
        known_relation(db_session, app, world["resigned"], f"wmzKnown{i}", "客户")
    distinct = len({e for (u, e) in sb.state.follows if u == RESIGNED})  # with the one the sandbox seeds
    # WeCom busy: the submissions wait for later (this test is about what the requests record)
    sb.state.set_fault(
        "errcode", errcode=45009, service="wecom", path="/cgi-bin/externalcontact/resigned/transfer_customer"
    )
    first = start_resigned(client, world, staff_headers)
    assert first.status_code == 202, first.get_json()
    body = first.get_json()
    # the ten known and the first page, read in the request
    assert (body["status"], len(body["items"])) == ("collecting", 1010)
    pages = upstream_calls(sb, "/cgi-bin/externalcontact/get_unassigned_list")
    assert [c["json"]["cursor"] for c in pages] == ["", "1000", "2000", "3000", "4000", "5000"]
    # the jobs ran at commit (inline here): the list is read and the submission has started
    after = client.get(f"{URL}/{body['id']}", headers=staff_headers(world["manager"])).get_json()
    left_over = after["left_over"]
    assert left_over == distinct - MAX_ITEMS == after["counts"]["left_over"]
    assert after["status"] == "submitting" and after["counts"]["pending"] == MAX_ITEMS
    assert after["list_incomplete"] is False
    second = start_resigned(client, world, staff_headers)
    assert second.status_code == 202, second.get_json()
    again = client.get(f"{URL}/{second.get_json()['id']}", headers=staff_headers(world["manager"])).get_json()
    assert (again["counts"], again["left_over"]) == ({"pending": left_over}, 0)
    handed = db_session.scalars(
        select(WeComHandoverItem.external_userid).where(WeComHandoverItem.status != "left_over")
    ).all()
    assert len(handed) == len(set(handed)) == distinct


def test_reading_the_unassigned_list_survives_wecom_failing(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, make_staff: Any
) -> None:
    """A page that cannot be read: the pages read are kept, the job tries again later, and the
    submission starts once the list is read to the end."""
    sb = world["sandbox"]
    for i in range(1001):
        sb.state.add_external_contact(f"wmPaged{i:04d}", "客户", follow_userid=RESIGNED)
    # WeCom busy for transfers: the submission waits (this test is about reading the list)
    sb.state.set_fault(
        "errcode", errcode=45009, service="wecom", path="/cgi-bin/externalcontact/resigned/transfer_customer"
    )
    path = "/cgi-bin/externalcontact/get_unassigned_list"
    original = sb.state.take_fault

    def second_page_fails_twice(service: str, fault_path: str) -> Any:
        from flask import request

        body = request.get_json(force=True, silent=True) or {}
        if fault_path == path and body.get("cursor") == "1000" and second_page_fails_twice.left:
            second_page_fails_twice.left -= 1
            sb.state.set_fault("down", service="wecom", path=path, count=1)
        return original(service, fault_path)

    second_page_fails_twice.left = 2  # type: ignore[attr-defined]
    sb.state.take_fault = second_page_fails_twice  # type: ignore[method-assign]
    try:
        resp = start_resigned(client, world, staff_headers)
        assert resp.status_code == 202, resp.get_json()
        handover = db_session.get(WeComHandover, resp.get_json()["id"])
        db_session.refresh(handover)
        assert (handover.status, handover.collect_cursor) == ("collecting", "1000")
        # While its list is being read, another handover of the advisor would race it: refused.
        sb.state.add_member("advisor.zhao", "赵顾问")
        zhao = make_staff(world["tree"].stores[0], "sales_advisor", userid="advisor.zhao")
        racing = client.post(
            URL,
            headers=staff_headers(world["manager"]),
            json={"kind": "resigned", "handover_staff_id": world["resigned"].id, "takeover_staff_id": zhao.id},
        )
        assert (racing.status_code, racing.get_json()["code"]) == (409, "wecom.handover_in_progress")
        run_due_jobs(app, rounds=3)
    finally:
        sb.state.take_fault = original  # type: ignore[method-assign]
    db_session.refresh(handover)
    assert (handover.status, handover.collect_cursor) == ("submitting", None)
    # every customer once: the seeded one and the 1,001, read over two pages (the second after
    # two failures)
    assert count(db_session, WeComHandoverItem, WeComHandoverItem.handover_id == handover.id) == 1002
    reads = [c["json"]["cursor"] for c in upstream_calls(sb, path)]
    assert reads == ["", "1000", "1000", "1000"]


def test_an_unreadable_last_poll_does_not_close_the_takeovers(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any
) -> None:
    """Three days of polls are up, and the last one cannot read WeCom: the items are not closed
    as "no record" unread; the next poll that reads finds the takeover."""
    from backend.wecom.handover import MAX_POLLS

    sb = world["sandbox"]
    ext = "wmLastPoll001"
    sb.state.add_external_contact(ext, "客户", follow_userid=RESIGNED)
    wecom_ops.plan_transfer(sb.state, ext, final_status=wecom_ops.DONE, polls=0)
    resp = start_resigned(client, world, staff_headers, external_userids=[ext])
    assert resp.status_code == 202
    handover_id = resp.get_json()["id"]
    db_session.execute(update(WeComHandover).where(WeComHandover.id == handover_id).values(polls=MAX_POLLS - 1))
    db_session.commit()
    sb.state.set_fault("down", service="wecom", path="/cgi-bin/externalcontact/resigned/transfer_result", count=1)
    run_due_jobs(app, rounds=1)
    item = db_session.scalars(select(WeComHandoverItem).where(WeComHandoverItem.external_userid == ext)).one()
    handover = db_session.get(WeComHandover, handover_id)
    db_session.refresh(item)
    db_session.refresh(handover)
    assert (item.status, handover.status, handover.polls) == ("waiting", "polling", MAX_POLLS)
    run_due_jobs(app)
    db_session.refresh(item)
    assert item.status == "done"
