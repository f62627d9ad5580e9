"""The advisor workbench side of leads through HTTP: lists with filters, detail with history,
status changes (valid and not), reassignment by managers, scopes, the owner's subscribe notice,
and the SLA escalation to the store manager (once, however often the job runs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from freezegun import freeze_time
from sqlalchemy import func, select

from backend.leads.models import Lead
from backend.notices.models import SubscribeNotice
from backend.platform.db import commit, db
from backend.platform.jobs import OutboxJob, enqueue
from backend.touchpoints.models import Touchpoint
from tests.leads.conftest import APP, PHOTO, WB, accident_body, submit
from tests.wecom.helpers import run_due_jobs

START = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def _status(client: Any, headers: dict, lead_id: int, **body: Any) -> Any:
    return client.post(f"{WB}/leads/{lead_id}/status", json=body, headers=headers)


def sweep(app: Any, now: datetime) -> int:
    """Fire the periodic sweep's slot as a worker's tick would (this periodic job only; it runs
    inline after the commit) and answer how many escalations exist afterwards minus before."""
    slot = int(now.timestamp()) // 60 * 60
    with app.app_context():
        session = db.session_factory()
        try:
            count = select(func.count()).select_from(Touchpoint).where(Touchpoint.kind == "lead_escalated")
            before = session.scalar(count)
            key = f"periodic:leads.escalate_overdue:{slot}"
            assert enqueue(session, "leads.escalate_overdue", {"slot": slot}, dedup_key=key) is not None
            commit(session)
            assert session.scalar(select(OutboxJob.status).where(OutboxJob.dedup_key == key)) == "done"
            return session.scalar(count) - before
        finally:
            session.close()


def _kinds(db_session: Any, customer_id: int) -> list[str]:
    db_session.expire_all()
    stmt = select(Touchpoint.kind).where(Touchpoint.customer_id == customer_id).order_by(Touchpoint.id)
    return list(db_session.scalars(stmt))


def test_status_flow_valid_and_invalid_transitions(
    client: Any, db_session: Any, store: Any, owner: Any, sandbox_reset: Any
) -> None:
    with freeze_time(START) as frozen:
        lead = submit(client, owner, {"type": "new_car", "series": "ID.4"}).get_json()
        advisor = next(s for s in store.sales if s.id == lead["advisor_id"])
        h = store.headers(advisor)
        frozen.tick(timedelta(minutes=10))
        contacted = _status(client, h, lead["id"], status="contacted", note="已电话联系", version=1)
        assert contacted.status_code == 200, contacted.get_json()
        body = contacted.get_json()
        assert body["status"] == "contacted" and body["contacted_at"] == "2026-12-02T08:10:00+00:00"
        assert body["version"] == 2 and body["overdue"] is False
        # A stale version is refused; the same status again changes nothing.
        stale = _status(
            client, h, lead["id"], status="appointment", appointment_at="2026-12-05T10:00:00+08:00", version=1
        )
        assert stale.status_code == 409 and stale.get_json()["code"] == "lead.version_conflict"
        again = _status(client, h, lead["id"], status="contacted", version=1)  # the retry of that tap
        assert again.status_code == 200 and again.get_json()["version"] == 2
        no_time = _status(client, h, lead["id"], status="appointment")
        assert no_time.status_code == 422 and no_time.get_json()["code"] == "lead.appointment_time_required"
        booked = _status(client, h, lead["id"], status="appointment", appointment_at="2026-12-05T10:00:00+08:00")
        assert booked.get_json()["appointment_at"] == "2026-12-05T02:00:00+00:00"
        no_reason = _status(client, h, lead["id"], status="lost", lost_reason="  ")
        assert no_reason.status_code == 422 and no_reason.get_json()["code"] == "lead.lost_reason_required"
        won = _status(client, h, lead["id"], status="won")
        assert won.status_code == 200 and won.get_json()["closed_at"]
        for target in ("new", "contacted", "lost"):
            back = _status(client, h, lead["id"], status=target, lost_reason="x")
            assert back.status_code == 409 and back.get_json()["code"] == "lead.invalid_transition"
            assert back.get_json()["errors"] == {"from": "won", "to": target}
        assert _status(client, h, lead["id"], status="maybe").status_code == 422
    h = store.headers(advisor)  # the clock is real again: a fresh token
    detail = client.get(f"{WB}/leads/{lead['id']}", headers=h).get_json()
    assert [(x["kind"], (x["payload"] or {}).get("to")) for x in detail["history"]] == [
        ("lead_created", None),
        ("lead_assigned", None),
        ("lead_status_changed", "contacted"),
        ("lead_status_changed", "appointment"),
        ("lead_status_changed", "won"),
    ]
    assert detail["customer_name"] and detail["status"] == "won"
    mine = client.get(f"{APP}/me/leads/{lead['id']}", headers=owner.headers).get_json()
    assert mine["status"] == "won"
    # The owner's subscribe notice is decided once per change (no template configured here:
    # recorded, not sent).
    notices = db_session.scalars(select(SubscribeNotice).order_by(SubscribeNotice.id)).all()
    assert [n.template_setting for n in notices] == ["SUBSCRIBE_TEMPLATE_LEAD_UPDATE"] * 3
    assert {n.status for n in notices} == {"no_template"}
    assert notices[-1].data["phrase2"]["value"] == "已成交"


def test_lost_needs_a_reason_and_is_final(client: Any, store: Any, owner: Any, sandbox_reset: Any) -> None:
    lead = submit(client, owner, {"type": "loan", "amount_fen": 5_000_000}).get_json()
    h = store.headers(store.finance)
    assert _status(client, h, lead["id"], status="lost").get_json()["code"] == "lead.lost_reason_required"
    lost = _status(client, h, lead["id"], status="lost", lost_reason="利率不合适")
    assert lost.get_json()["lost_reason"] == "利率不合适" and lost.get_json()["status"] == "lost"
    assert _status(client, h, lead["id"], status="new").get_json()["code"] == "lead.invalid_transition"


def test_other_staff_cannot_see_or_update_a_lead(
    client: Any, db_session: Any, store: Any, owner: Any, make_owner: Any, sandbox_reset: Any
) -> None:
    lead = submit(client, owner, {"type": "new_car", "series": "ID.4"}).get_json()
    colleague = next(s for s in store.sales if s.id != lead["advisor_id"])
    for staff in (store.other_store_advisor, store.other_store_manager, colleague):
        h = store.headers(staff)
        assert client.get(f"{WB}/leads/{lead['id']}", headers=h).status_code == 404
        resp = _status(client, h, lead["id"], status="contacted")
        assert resp.status_code == 404 and resp.get_json()["code"] == "lead.not_found"
        resp = client.post(f"{WB}/leads/{lead['id']}/reassign", json={"advisor_id": staff.id}, headers=h)
        assert resp.status_code == 404
    stranger = make_owner(store.unit)
    assert client.get(f"{APP}/me/leads/{lead['id']}", headers=stranger.headers).status_code == 404
    db_session.expire_all()
    assert db_session.get(Lead, lead["id"]).status.value == "new"


def test_manager_reassigns_and_the_new_advisor_is_notified(
    client: Any, store: Any, owner: Any, make_ref_staff: Any, stores: Any, sandbox_reset: Any
) -> None:
    lead = submit(client, owner, {"type": "new_car", "series": "ID.4"}).get_json()
    first = lead["advisor_id"]
    other = next(s for s in store.sales if s.id != first)
    advisor_h, manager_h = store.headers(next(s for s in store.sales if s.id == first)), store.headers(store.manager)
    url = f"{WB}/leads/{lead['id']}/reassign"
    refused = client.post(url, json={"advisor_id": other.id}, headers=advisor_h)
    assert refused.status_code == 403 and refused.get_json()["code"] == "auth.forbidden"
    far = client.post(url, json={"advisor_id": store.other_store_advisor.id}, headers=manager_h)
    assert far.status_code == 422 and far.get_json()["code"] == "lead.advisor_invalid"
    resigned = make_ref_staff(stores[0], "sales_advisor", status="resigned")
    assert client.post(url, json={"advisor_id": resigned.id}, headers=manager_h).status_code == 422
    moved = client.post(url, json={"advisor_id": other.id}, headers=manager_h)
    assert moved.status_code == 200 and moved.get_json()["advisor_id"] == other.id
    assert moved.get_json()["routed_by"] == "manual"
    to_other = [m for m in sandbox_reset.state.app_messages if m["touser"] == other.userid]
    assert len(to_other) == 1 and to_other[0]["textcard"]["title"] == "新线索 · 新车意向"
    # The previous advisor no longer sees it; the new one works it.
    assert client.get(f"{WB}/leads/{lead['id']}", headers=advisor_h).status_code == 404
    assert _status(client, store.headers(other), lead["id"], status="lost", lost_reason="无意向").status_code == 200
    closed = client.post(url, json={"advisor_id": first}, headers=manager_h)
    assert closed.status_code == 409 and closed.get_json()["code"] == "lead.closed"


def test_lists_filter_by_type_status_and_overdue(client: Any, store: Any, make_owner: Any, sandbox_reset: Any) -> None:
    owners = [make_owner(store.unit) for _ in range(3)]
    with freeze_time(START) as frozen:
        accident = submit(client, owners[0], accident_body(owners[0].car_id)).get_json()
        car = submit(client, owners[1], {"type": "new_car", "series": "ID.4"}).get_json()
        trade = submit(
            client, owners[2], {"type": "trade_in", "car_id": owners[2].car_id, "mileage_km": 9, "photos": [PHOTO]}
        ).get_json()
        frozen.tick(timedelta(minutes=20))  # the accident (15 min) is overdue, the others not yet
        mh = store.headers(store.manager)

        def ids(**query: Any) -> list[int]:
            resp = client.get(f"{WB}/leads", query_string=query, headers=mh)
            assert resp.status_code == 200, resp.get_json()
            return [i["id"] for i in resp.get_json()["items"]]

        assert ids() == [accident["id"], car["id"], trade["id"]]  # high priority first, then due time
        assert ids(overdue="true") == [accident["id"]]
        assert ids(overdue="false") == [car["id"], trade["id"]]
        assert ids(type=["new_car", "trade_in"]) == [car["id"], trade["id"]]
        car_advisor = next(s for s in store.sales if s.id == car["advisor_id"])
        _status(client, store.headers(car_advisor), car["id"], status="contacted")
        assert ids(status="contacted") == [car["id"]]
        assert ids(status=["new"], type="accident") == [accident["id"]]
        assert ids(mine="true") == []  # the manager has none of their own
        service_h = store.headers(store.service)
        mine = client.get(f"{WB}/leads", headers=service_h).get_json()
        assert [i["id"] for i in mine["items"]] == [accident["id"]] and mine["items"][0]["overdue"] is True
        far = client.get(f"{WB}/leads", headers=store.headers(store.other_store_manager)).get_json()
        assert far["items"] == [] and far["total"] == 0
        assert client.get(f"{WB}/leads", query_string={"status": "nope"}, headers=mh).status_code == 422


def test_overdue_lead_is_escalated_to_the_store_manager_once(
    client: Any, db_session: Any, app: Any, store: Any, make_owner: Any, sandbox_reset: Any
) -> None:
    late, on_time = make_owner(store.unit), make_owner(store.unit)
    with freeze_time(START) as frozen:
        lead = submit(client, late, accident_body(late.car_id)).get_json()
        other = submit(client, on_time, accident_body(on_time.car_id)).get_json()
        frozen.tick(timedelta(minutes=5))
        assert _status(client, store.headers(store.service), other["id"], status="contacted").status_code == 200
        run_due_jobs(app)  # the delayed SLA jobs run early here: nothing is due yet, nothing happens
        assert [m["touser"] for m in sandbox_reset.state.app_messages].count("lead.manager") == 0
        frozen.move_to(START + timedelta(minutes=16))
        run_due_jobs(app)  # nothing left to run: the delayed jobs ran above
        assert sweep(app, START + timedelta(minutes=16)) == 1  # the periodic sweep catches it
        frozen.move_to(START + timedelta(minutes=30))
        assert sweep(app, START + timedelta(minutes=30)) == 0  # the next slot: already escalated
    to_manager = [m for m in sandbox_reset.state.app_messages if m["touser"] == "lead.manager"]
    assert len(to_manager) == 1
    assert to_manager[0]["textcard"]["title"] == "线索超时提醒" and "超时" in to_manager[0]["textcard"]["description"]
    db_session.expire_all()
    row = db_session.get(Lead, lead["id"])
    assert row.escalated_at == START + timedelta(minutes=16)
    assert db_session.get(Lead, other["id"]).escalated_at is None  # contacted in time
    assert _kinds(db_session, late.customer_id).count("lead_escalated") == 1
    assert _kinds(db_session, on_time.customer_id).count("lead_escalated") == 0
    h = store.headers(store.manager)
    detail = client.get(f"{WB}/leads/{lead['id']}", headers=h).get_json()
    assert detail["escalated_at"] and detail["history"][-1]["kind"] == "lead_escalated"
    # Calling the job body again (a re-run) changes nothing.
    from backend.leads import service

    with app.app_context():
        assert service.escalate(db_session, lead["id"]) is False
        assert service.escalate_due(db_session) == 0
    assert (
        db_session.scalar(select(func.count()).select_from(Touchpoint).where(Touchpoint.kind == "lead_escalated")) == 1
    )


def test_the_delayed_sla_job_escalates_when_due_and_a_rerun_does_nothing(
    client: Any, db_session: Any, app: Any, store: Any, owner: Any, sandbox_reset: Any
) -> None:
    with freeze_time(START) as frozen:
        lead = submit(client, owner, {"type": "new_car", "series": "ID.4"}).get_json()
        job = db_session.scalars(select(OutboxJob).where(OutboxJob.dedup_key == f"leads.check_sla:{lead['id']}")).one()
        assert job.status == "pending" and job.run_after == START + timedelta(hours=1)
        frozen.move_to(START + timedelta(hours=1, seconds=1))
        run_due_jobs(app)
        run_due_jobs(app)
        assert sweep(app, START + timedelta(hours=1, minutes=1)) == 0
    db_session.expire_all()
    assert db_session.get(Lead, lead["id"]).escalated_at == START + timedelta(hours=1, seconds=1)
    assert [m["touser"] for m in sandbox_reset.state.app_messages].count("lead.manager") == 1
    assert _kinds(db_session, owner.customer_id).count("lead_escalated") == 1


def test_lead_lists_have_no_n_plus_one(client: Any, store: Any, owner: Any, sandbox_reset: Any) -> None:
    from sqlalchemy import event

    made = iter(range(1000))

    def count_queries(n_leads: int, url: str, headers: dict) -> int:
        for _ in range(n_leads):
            assert submit(client, owner, {"type": "new_car", "series": f"车型{next(made)}"}).status_code == 201
        statements: list[str] = []
        listener = lambda *a, **k: statements.append(a[2])  # noqa: E731
        bind = db.session().get_bind()
        event.listen(bind, "before_cursor_execute", listener)
        try:
            assert client.get(url, headers=headers).status_code == 200
        finally:
            event.remove(bind, "before_cursor_execute", listener)
        return len(statements)

    h = store.headers(store.manager)
    few = count_queries(2, f"{WB}/leads?page_size=100", h)
    many = count_queries(20, f"{WB}/leads?page_size=100", h)
    assert many == few, f"{few} queries for 2 leads, {many} for 22"
    assert count_queries(0, f"{APP}/me/leads", owner.headers) == count_queries(5, f"{APP}/me/leads", owner.headers)


def test_owner_with_a_grant_gets_a_subscribe_message_on_a_status_change(
    app: Any, client: Any, db_session: Any, store: Any, owner: Any, sandbox_reset: Any, monkeypatch: Any
) -> None:
    template = "TPL_LEAD_UPDATE_0001"
    monkeypatch.setitem(app.config, "SUBSCRIBE_TEMPLATE_LEAD_UPDATE", template)
    state = sandbox_reset.state
    state.add_user("o-lead-owner-1")
    state.set_subscribe_grants("o-lead-owner-1", template, 1)
    granted = client.post(f"{APP}/notices/grants", json={"results": {template: "accept"}}, headers=owner.headers)
    assert granted.status_code == 200 and granted.get_json()["grants"] == {template: 1}
    lead = submit(client, owner, {"type": "insurance", "car_id": owner.car_id, "insurance_kind": "renewal"}).get_json()
    h = store.headers(store.finance)
    assert _status(client, h, lead["id"], status="contacted").status_code == 200
    assert _status(client, h, lead["id"], status="won").status_code == 200  # no grant left: recorded, not sent
    [message] = state.subscribe_messages
    assert message["touser"] == "o-lead-owner-1" and message["template_id"] == template
    assert message["data"]["thing1"]["value"] == "保险报价" and message["data"]["phrase2"]["value"] == "已联系"
    assert message["page"] == f"pages/leads/detail?id={lead['id']}"
    db_session.expire_all()
    statuses = db_session.scalars(select(SubscribeNotice.status).order_by(SubscribeNotice.id)).all()
    assert statuses == ["sent", "no_grant"]


def test_a_store_without_a_manager_escalates_to_the_region_manager(
    client: Any, app: Any, tree: Any, stores: Any, make_ref_staff: Any, make_owner: Any, sandbox_reset: Any
) -> None:
    region = SimpleNamespace(id=tree.regions[0].id)
    make_ref_staff(stores[1], "service_advisor", userid="s1.service")
    make_ref_staff(region, "region_manager", userid="r0.manager")
    make_ref_staff(SimpleNamespace(id=tree.group.id), "group_admin", userid="g.admin")
    someone = make_owner(stores[1])
    with freeze_time(START) as frozen:
        lead = submit(client, someone, accident_body(someone.car_id)).get_json()
        frozen.move_to(START + timedelta(minutes=16))
        assert sweep(app, START + timedelta(minutes=16)) == 1
    cards = [m for m in sandbox_reset.state.app_messages if m["msgtype"] == "textcard"]
    assert [(c["touser"], c["textcard"]["title"]) for c in cards] == [
        ("s1.service", "【紧急】出险报案"),
        ("r0.manager", "线索超时提醒"),
    ]
    assert lead["store_id"] == stores[1].id


def test_lead_history_names_its_advisors_in_one_query_for_the_whole_history(
    client: Any, store: Any, owner: Any, sandbox_reset: Any
) -> None:
    from sqlalchemy import event

    from backend.org.models import Staff

    lead = submit(client, owner, {"type": "new_car", "series": "ID.4"}).get_json()
    manager_h = store.headers(store.manager)
    url = f"{WB}/leads/{lead['id']}"

    def history_and_queries() -> tuple[list[dict[str, Any]], int]:
        statements: list[str] = []
        listener = lambda *a, **k: statements.append(a[2])  # noqa: E731
        bind = db.session().get_bind()
        event.listen(bind, "before_cursor_execute", listener)
        try:
            resp = client.get(url, headers=manager_h)
        finally:
            event.remove(bind, "before_cursor_execute", listener)
        assert resp.status_code == 200, resp.get_json()
        return resp.get_json()["history"], len(statements)

    _, before = history_and_queries()
    # Passed from one advisor to the other and back: three more assignments, each naming two staff.
    first = lead["advisor_id"]
    other = next(s for s in store.sales if s.id != first)
    for to in (other.id, first, other.id):
        moved = client.post(f"{url}/reassign", json={"advisor_id": to}, headers=manager_h)
        assert moved.status_code == 200, moved.get_json()
    history, after = history_and_queries()
    assert after == before, f"{before} queries for a short history, {after} after three reassignments"
    names = dict(db.session().execute(select(Staff.id, Staff.name).where(Staff.id.in_([first, other.id]))).all())
    assigned = [(h["previous_advisor_name"], h["advisor_name"]) for h in history if h["kind"] == "lead_assigned"]
    assert assigned == [
        (None, names[first]),
        (names[first], names[other.id]),
        (names[other.id], names[first]),
        (names[first], names[other.id]),
    ]
