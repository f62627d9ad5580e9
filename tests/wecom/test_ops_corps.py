"""The WeCom operations room with several corps configured (WECOM_EXTRA_APPS): a manual
reconciliation or directory sync covers every corp, departments (whose ids repeat across corps)
are listed and mapped per corp, the app message list says which corp's namesake a message was for,
and the tag library of every corp is re-read nightly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from backend.org.models import Staff
from backend.platform import jobs
from backend.platform.jobs import OutboxJob
from backend.wecom import directory, notify
from backend.wecom import service as svc
from backend.wecom.models import WeComTag
from backend.wecom.ops_models import WeComDepartment
from integrations.sandbox import wecom_ops
from tests.wecom.helpers import callback_world, corp_b_world, run_due_jobs, second_wecom_app

WB = "/api/workbench/v1"
DEPARTMENTS = f"{WB}/wecom/departments"
MAP = f"{WB}/wecom/departments/map"
MESSAGES = f"{WB}/wecom/app-messages"
TAG_LIST = "/cgi-bin/externalcontact/get_corp_tag_list"


def add_market_departments(app: Any, db_session: Any, w: dict[str, Any]) -> None:
    """Department 7 in both corps ("A市场部", "B市场部": no store of either name), each read by its
    corp's sync."""
    wecom_ops.add_department(w["sandbox"].state, 7, "A市场部")
    st = w["second"].state
    wecom_ops.add_department(st, 7, "B市场部")
    st.add_member("b.market", "B市场")
    wecom_ops.place_member(st, "b.market", [7])
    with app.app_context():
        for corp_id in (w["advisor"].corp_id, w["corp_b"]):
            directory.sync_directory(db_session, corp_id)
        db_session.commit()


def test_a_manual_reconciliation_covers_every_configured_corp(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    monkeypatch: Any,
) -> None:
    """A group admin's "reconcile now" queues a look at every active advisor of every corp, not
    only the primary corp's: corp B's relations drift as much as corp A's."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch, b_tags=False) as w:
        resp = client.post(f"{WB}/wecom/friends/reconcile", headers=staff_headers(w["admin"]), json={})
        assert resp.status_code == 202, resp.get_json()
        db_session.expire_all()
        queued = {
            (j.args["corp_id"], j.args["userid"])
            for j in db_session.scalars(select(OutboxJob).where(OutboxJob.name == "wecom.reconcile.advisor"))
        }
        assert {(w["advisor"].corp_id, "advisor.zhang"), (w["corp_b"], "adv.two"), (w["corp_b"], "mgr.b")} <= queued
        assert resp.get_json()["enqueued"] == len(queued)


def test_a_manual_directory_sync_reads_every_corps_directory(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    monkeypatch: Any,
) -> None:
    """One sync job per configured corp (one corp's failure is retried on its own), each reading
    its own corp's directory."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch, b_tags=False) as w:
        resp = client.post(f"{WB}/wecom/directory/sync", headers=staff_headers(w["admin"]), json={})
        assert (resp.status_code, resp.get_json()) == (202, {"enqueued": 2})
        run_due_jobs(app)
        assert w["second"].state.received("/cgi-bin/department/list"), "corp B's directory never read"
        assert sandbox_reset.state.received("/cgi-bin/department/list")
        db_session.expire_all()
        corps = set(db_session.scalars(select(WeComDepartment.corp_id)))
        assert corps == {w["advisor"].corp_id, w["corp_b"]}


def test_departments_name_their_corp_and_are_mapped_per_corp(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    monkeypatch: Any,
) -> None:
    """Both corps have a department 7: the list shows each with its corp (and filters by corp),
    and mapping corp B's 7 leaves corp A's alone; corp B's member becomes staff at the next sync."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch, b_tags=False) as w:
        corp_a, corp_b = w["advisor"].corp_id, w["corp_b"]
        add_market_departments(app, db_session, w)
        headers = staff_headers(w["admin"])
        listed = client.get(DEPARTMENTS, headers=headers).get_json()
        assert {(d["corp_id"], d["name"]) for d in listed if d["department_id"] == 7} == {
            (corp_a, "A市场部"),
            (corp_b, "B市场部"),
        }
        only_b = client.get(DEPARTMENTS, headers=headers, query_string={"corp_id": corp_b}).get_json()
        assert {d["corp_id"] for d in only_b} == {corp_b} and 7 in [d["department_id"] for d in only_b]

        store = tree.stores[1].id
        mapped = client.post(MAP, headers=headers, json={"corp_id": corp_b, "department_id": 7, "org_unit_id": store})
        assert mapped.status_code == 200, mapped.get_json()
        assert (mapped.get_json()["corp_id"], mapped.get_json()["org_unit_id"]) == (corp_b, store)
        db_session.expire_all()
        units = dict(
            db_session.execute(
                select(WeComDepartment.corp_id, WeComDepartment.org_unit_id).where(WeComDepartment.department_id == 7)
            ).all()
        )
        assert units == {corp_a: None, corp_b: store}

        # without a corp: the primary corp's department of that id
        primary = client.post(MAP, headers=headers, json={"department_id": 7, "org_unit_id": tree.stores[0].id})
        assert primary.status_code == 200, primary.get_json()
        assert primary.get_json()["corp_id"] == corp_a

        with app.app_context():
            directory.sync_directory(db_session, corp_b)
            db_session.commit()
        member = db_session.scalars(select(Staff).where(Staff.corp_id == corp_b, Staff.wecom_userid == "b.market"))
        assert member.one().org_unit_id == store


def test_a_department_only_another_corp_has_is_mapped_without_naming_the_corp(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    monkeypatch: Any,
) -> None:
    """A client that sends no corp (written for one corp) can still map corp B's department 7
    when the primary corp has none of that id: there is only one it can mean."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch, b_tags=False) as w:
        st = w["second"].state
        wecom_ops.add_department(st, 7, "B市场部")
        with app.app_context():
            directory.sync_directory(db_session, w["corp_b"])
            db_session.commit()
        body = {"department_id": 7, "org_unit_id": tree.stores[1].id}
        mapped = client.post(MAP, headers=staff_headers(w["admin"]), json=body)
        assert mapped.status_code == 200, mapped.get_json()
        assert mapped.get_json()["corp_id"] == w["corp_b"]


def test_mapping_refuses_an_unknown_corp_and_an_ambiguous_department(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    monkeypatch: Any,
) -> None:
    """A corp no app is configured for is a 422 with its own code (not "department not found");
    a department id that several other corps have, sent without a corp, is refused rather than
    guessed."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch, b_tags=False) as w:
        headers = staff_headers(w["admin"])
        body = {"department_id": 7, "org_unit_id": tree.stores[1].id}
        unknown = client.post(MAP, headers=headers, json={**body, "corp_id": "wwNoSuchCorp"})
        assert (unknown.status_code, unknown.get_json()["code"]) == (422, "wecom.corp_not_configured")
        assert "corp_id" in unknown.get_json()["errors"]

        third = "wwThirdCorp0000003"
        monkeypatch.setattr(svc, "corp_ids", lambda: [w["advisor"].corp_id, w["corp_b"], third])
        for corp_id in (w["corp_b"], third):
            db_session.add(WeComDepartment(corp_id=corp_id, department_id=7, name="市场部", present=True, manual=False))
        db_session.commit()
        ambiguous = client.post(MAP, headers=headers, json=body)
        assert (ambiguous.status_code, ambiguous.get_json()["code"]) == (422, "wecom.department_ambiguous")
        named = client.post(MAP, headers=headers, json={**body, "corp_id": third})
        assert (named.status_code, named.get_json()["corp_id"]) == (200, third)


def test_app_messages_say_which_corps_namesake_they_were_for(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    monkeypatch: Any,
) -> None:
    """A message to corp A's advisor.zhang and one to corp B's: the admin's "why did X not get
    it?" list filtered by userid shows both, each with its corp, and a corp filter keeps one."""
    world = callback_world(sandbox_reset, tree, make_staff)
    corp_a = world["advisor"].corp_id
    with second_wecom_app(app, sandbox_reset, monkeypatch) as (second, creds):
        corp_b = creds["WECOM_CORP_ID"]
        second.state.add_member("advisor.zhang", "B张")  # corp B's own Zhang
        with app.app_context():
            notify.notify(db_session, corp_a, "new_lead", "k1", ["advisor.zhang"], text="A")
            notify.notify(db_session, corp_b, "new_lead", "k2", ["advisor.zhang"], text="B")
            db_session.commit()
        headers = staff_headers(world["admin"])
        both = client.get(MESSAGES, headers=headers, query_string={"userid": "advisor.zhang"}).get_json()
        assert sorted((m["corp_id"], m["touser"]) for m in both) == sorted(
            [(corp_a, ["advisor.zhang"]), (corp_b, ["advisor.zhang"])]
        )
        run_due_jobs(app)  # delivered: found through the recipient rows too
        for corp_id in (corp_a, corp_b):
            query = {"userid": "advisor.zhang", "corp_id": corp_id}
            one = client.get(MESSAGES, headers=headers, query_string=query).get_json()
            assert [(m["corp_id"], m["status"]) for m in one] == [(corp_id, "sent")], one
        only_b = client.get(MESSAGES, headers=headers, query_string={"corp_id": corp_b}).get_json()
        assert [m["corp_id"] for m in only_b] == [corp_b]


def test_the_tag_library_of_every_corp_is_reread_nightly(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    monkeypatch: Any,
) -> None:
    """Tag callbacks keep the library current, but a lost one would leave it stale for good: a
    nightly run re-reads each corp's library (one job per corp), once per slot."""
    assert "wecom.sync_tags" in {p.name for p in jobs._PERIODIC}
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch, b_tags=False) as w:
        group = w["second"].state.add_tag_group("B客户等级", ["B级"])
        monkeypatch.setattr(jobs, "_PERIODIC", [p for p in jobs._PERIODIC if p.name == "wecom.sync_tags"])
        night = datetime(2026, 12, 4, 0, 0, 5, tzinfo=UTC)
        assert jobs.tick_periodic(app, now=night) == ["wecom.sync_tags"]
        assert jobs.tick_periodic(app, now=night) == []  # the same slot fires once
        run_due_jobs(app)
        assert w["second"].state.received(TAG_LIST), "corp B's library never read"
        assert sandbox_reset.state.received(TAG_LIST)
        slot = int(night.timestamp()) // 86400 * 86400
        db_session.expire_all()
        done = db_session.scalars(
            select(OutboxJob.dedup_key).where(OutboxJob.name == "wecom.sync_tags", OutboxJob.status == "done")
        ).all()
        assert sorted(done) == sorted(
            [
                f"periodic:wecom.sync_tags:{slot}",
                f"wecom.sync_tags:{w['advisor'].corp_id}:{slot}",
                f"wecom.sync_tags:{w['corp_b']}:{slot}",
            ]
        )
        b_tags = db_session.scalars(select(WeComTag.tag_id).where(WeComTag.corp_id == w["corp_b"])).all()
        assert group["tag"][0]["id"] in b_tags
