"""Corp separation: a handover in a second corp touches only that corp; the nightly directory sync covers every corp."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from backend.customers.models import CustomerAdvisor
from backend.org.models import Staff
from backend.platform import jobs
from backend.wecom import service as svc
from backend.wecom.models import FriendStatus, WeComFriend
from integrations.sandbox import wecom_ops
from tests.wecom.helpers import (
    ZHANG,
    callback_world,
    corp_staff,
    run_due_jobs,
    second_wecom_app,
    sign_post,
    upstream_calls,
)


def test_on_duty_handover_in_corp_b_touches_corp_b_only(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    monkeypatch: Any,
) -> None:
    world = callback_world(sandbox_reset, tree, make_staff)
    sb = world["sandbox"]
    with app.app_context():
        cust_a = svc.ensure_customer(db_session, "wmA1", {"external_contact": {"name": "A客户"}})
        svc.lock_friend(
            db_session, world["advisor"].corp_id, ZHANG, "wmA1", cust_a, world["advisor"], FriendStatus.ACTIVE
        )
        db_session.commit()
    with second_wecom_app(app, sb, monkeypatch) as (second, creds):
        corp_b = creds["WECOM_CORP_ID"]
        zhang_b = corp_staff(db_session, corp_b, tree.stores[1], ZHANG, "sales_advisor", "B张")
        three = corp_staff(db_session, corp_b, tree.stores[1], "adv.three", "sales_advisor", "B三")
        mgr = corp_staff(db_session, corp_b, tree.stores[1], "mgr.b", "store_manager", "B店长")
        for u in (ZHANG, "adv.three", "mgr.b"):
            second.state.add_member(u, u)
        second.state.add_external_contact("wmB1", "B客户", follow_userid=ZHANG)
        sign_post(
            client,
            creds,
            second.state.change_external_contact_xml(
                corp_b, "add_external_contact", ZHANG, "wmB1", int(time.time()) - 10
            ),
        )
        run_due_jobs(app)
        resp = client.post(
            "/api/workbench/v1/wecom/handovers",
            headers=staff_headers(mgr),
            json={"kind": "on_duty", "handover_staff_id": zhang_b.id, "takeover_staff_id": three.id},
        )
        assert resp.status_code == 202, resp.get_json()
        run_due_jobs(app)
        calls = upstream_calls(second, "/cgi-bin/externalcontact/transfer_customer")
        assert [c["json"]["external_userid"] for c in calls] == [["wmB1"]], calls
        assert not upstream_calls(sb, "/cgi-bin/externalcontact/transfer_customer")
        db_session.expire_all()
        a_rel = db_session.scalars(select(WeComFriend).where(WeComFriend.external_userid == "wmA1")).one()
        assert a_rel.status == FriendStatus.ACTIVE
        b_cust = (
            db_session.scalars(select(WeComFriend).where(WeComFriend.external_userid == "wmB1")).first().customer_id
        )
        advisors = db_session.scalars(
            select(CustomerAdvisor.staff_id).where(CustomerAdvisor.customer_id == b_cust)
        ).all()
        assert advisors == [three.id]


def test_nightly_directory_sync_covers_corp_b(
    app: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, monkeypatch: Any
) -> None:
    callback_world(sandbox_reset, tree, make_staff)
    with second_wecom_app(app, sandbox_reset, monkeypatch) as (second, creds):
        corp_b = creds["WECOM_CORP_ID"]
        wecom_ops.add_department(second.state, 2, tree.stores[1].name)
        second.state.add_member(ZHANG, "B张")
        wecom_ops.place_member(second.state, ZHANG, [2])
        monkeypatch.setattr(jobs, "_PERIODIC", [p for p in jobs._PERIODIC if p.name == "wecom.directory.sync"])
        night = datetime(2026, 12, 4, 0, 0, 5, tzinfo=UTC)
        assert jobs.tick_periodic(app, now=night) == ["wecom.directory.sync"]
        run_due_jobs(app)
        db_session.expire_all()
        rows = {
            (s.corp_id, s.org_unit_id) for s in db_session.scalars(select(Staff).where(Staff.wecom_userid == ZHANG))
        }
        assert (corp_b, tree.stores[1].id) in rows and (
            sandbox_reset.credentials["WECOM_CORP_ID"],
            tree.stores[0].id,
        ) in rows, rows
