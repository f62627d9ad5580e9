"""WeCom member directory → staff, through the real client and the sandbox: departments mapped
to stores (by name, or by a group admin), members created / updated / moved / reactivated /
deactivated, idempotent re-runs, upstream faults retried with nothing applied, bad input."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.org.models import Staff
from backend.platform.jobs import OutboxJob
from backend.wecom.ops_models import WeComDepartment
from integrations.sandbox import wecom_ops
from tests.wecom.helpers import run_due_jobs

SYNC = "/api/workbench/v1/wecom/directory/sync"
DEPARTMENTS = "/api/workbench/v1/wecom/departments"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    sb = sandbox_reset
    st = sb.state
    wecom_ops.add_department(st, 2, tree.stores[0].name)  # "门店0-0": mapped by name
    wecom_ops.add_department(st, 3, tree.stores[3].name, parentid=2)
    wecom_ops.add_department(st, 4, "市场部")  # no store of that name: unmapped
    wecom_ops.place_member(st, "advisor.zhang", [2])
    wecom_ops.place_member(st, "advisor.li", [2])
    st.add_member("advisor.new", "新顾问")
    wecom_ops.place_member(st, "advisor.new", [3])
    st.add_member("market.x", "市场小王")
    wecom_ops.place_member(st, "market.x", [4])
    st.add_member("back.again", "回来了")
    wecom_ops.place_member(st, "back.again", [2])
    st.add_member("admin.g", "管理员")  # root department: stays where dealerloop has them
    staff = {
        "zhang": make_staff(tree.stores[0], "sales_advisor", userid="advisor.zhang", name="旧名字"),
        "li": make_staff(tree.stores[1], "sales_advisor", userid="advisor.li", name="李顾问"),
        "wang": make_staff(tree.stores[0], "sales_advisor", userid="advisor.wang", name="王顾问"),  # left
        "old": make_staff(tree.stores[0], "sales_advisor", userid="old.timer", name="老员工", in_wecom=False),
        "back": make_staff(tree.stores[1], "sales_advisor", userid="back.again", name="回来了", status="resigned"),
        "admin": make_staff(tree.group, "group_admin", userid="admin.g", name="管理员"),
    }
    return {"sandbox": sb, "tree": tree, "staff": staff}


def snapshot(session: Any) -> dict[str, tuple[str, int, str]]:
    session.expire_all()
    return {s.wecom_userid: (s.name, s.org_unit_id, s.status.value) for s in session.scalars(select(Staff))}


def test_sync_maps_departments_and_brings_staff_in_line(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    sb, tree = world["sandbox"], world["tree"]
    headers = staff_headers(world["staff"]["admin"])
    resp = client.post(SYNC, headers=headers, json={})
    assert (resp.status_code, resp.get_json()) == (202, {"enqueued": 1})
    assert sb.hits("/cgi-bin/department/list") >= 1
    user_list = sb.state.received("/cgi-bin/user/list")
    assert user_list and {(c["query"]["department_id"], c["query"]["fetch_child"]) for c in user_list} == {("1", "1")}

    staff = snapshot(db_session)
    store0, store3 = tree.stores[0].id, tree.stores[3].id
    assert staff["advisor.zhang"] == ("张顾问", store0, "active")  # renamed
    assert staff["advisor.li"] == ("李顾问", store0, "active")  # moved to the mapped store
    assert staff["advisor.new"] == ("新顾问", store3, "active")  # created at the store of department 3
    assert "market.x" not in staff  # department 4 is not mapped: not created
    assert staff["back.again"] == ("回来了", store0, "active")  # reactivated
    assert staff["advisor.wang"][2] == "resigned" and staff["old.timer"][2] == "resigned"
    assert staff["admin.g"] == ("管理员", tree.group.id, "active")
    new = db_session.scalars(select(Staff).where(Staff.wecom_userid == "advisor.new")).one()
    assert new.roles == set()  # deny by default: roles come from an admin
    departments = {d["department_id"]: d for d in client.get(DEPARTMENTS, headers=headers).get_json()}
    assert (departments[2]["org_unit_id"], departments[3]["org_unit_id"], departments[4]["org_unit_id"]) == (
        store0,
        store3,
        None,
    )

    # Unchanged directory: a second run changes nothing.
    assert client.post(SYNC, headers=headers, json={}).status_code == 202
    assert snapshot(db_session) == staff

    # A group admin maps department 4; the next sync brings its member in.
    mapped = client.post(
        f"{DEPARTMENTS}/map", headers=headers, json={"department_id": 4, "org_unit_id": tree.stores[2].id}
    )
    assert mapped.status_code == 200 and mapped.get_json()["org_unit_id"] == tree.stores[2].id
    client.post(SYNC, headers=headers, json={})
    assert snapshot(db_session)["market.x"] == ("市场小王", tree.stores[2].id, "active")

    # A department removed in WeCom is kept, marked absent.
    wecom_ops.remove_department(sb.state, 4)
    wecom_ops.place_member(sb.state, "market.x", [2])
    client.post(SYNC, headers=headers, json={})
    assert db_session.scalars(select(WeComDepartment.present).where(WeComDepartment.department_id == 4)).one() is False


@pytest.mark.parametrize("fault", [{"mode": "errcode", "errcode": 45009}, {"mode": "down"}])
def test_a_failed_read_changes_nothing_and_is_retried(
    client: Any, db_session: Any, app: Any, world: Any, staff_headers: Any, fault: Any
) -> None:
    sb = world["sandbox"]
    before = snapshot(db_session)
    sb.state.set_fault(service="wecom", path="/cgi-bin/user/list", count=1, **fault)
    assert client.post(SYNC, headers=staff_headers(world["staff"]["admin"]), json={}).status_code == 202
    assert snapshot(db_session) == before
    assert db_session.scalar(select(func.count()).select_from(WeComDepartment)) == 0
    job = db_session.scalars(select(OutboxJob).where(OutboxJob.name == "wecom.directory.sync")).one()
    assert (job.status, job.attempts) == ("pending", 1)
    sb.state.expire_tokens("wecom")
    run_due_jobs(app)
    assert snapshot(db_session)["advisor.new"][2] == "active"


def test_a_department_out_of_sight_does_not_make_its_members_resign(
    client: Any, db_session: Any, world: Any, staff_headers: Any
) -> None:
    """A department taken out of the app's visible range disappears with its members: they are
    held, not marked resigned (a member who left a department still listed is)."""
    sb, headers = world["sandbox"], staff_headers(world["staff"]["admin"])
    client.post(SYNC, headers=headers, json={})
    assert snapshot(db_session)["advisor.new"][2] == "active"
    wecom_ops.remove_department(sb.state, 3)  # out of sight, and advisor.new with it
    sb.state.set_member_status("advisor.li", "resigned")  # left department 2, which is still listed
    client.post(SYNC, headers=headers, json={})
    staff = snapshot(db_session)
    assert staff["advisor.new"][2] == "active" and staff["advisor.li"][2] == "resigned"
    from backend.wecom.directory import sync_directory

    with client.application.app_context():
        stats = sync_directory(db_session, client.application.config["WECOM_CORP_ID"])
    assert (stats["held"], stats["deactivated"]) == (1, 0)


def test_an_empty_directory_deactivates_nobody(db_session: Any, app: Any, world: Any) -> None:
    from backend.wecom.directory import sync_directory

    st = world["sandbox"].state
    for userid in list(st.members):
        st.set_member_status(userid, "resigned")  # what a missing permission looks like: nobody listed
    with app.app_context():
        stats = sync_directory(db_session, app.config["WECOM_CORP_ID"])
    assert stats["users"] == 0 and stats["deactivated"] == 0
    assert snapshot(db_session)["advisor.zhang"][2] == "active"


def test_bad_input_and_roles(client: Any, world: Any, staff_headers: Any) -> None:
    admin = staff_headers(world["staff"]["admin"])
    advisor = staff_headers(world["staff"]["zhang"])
    client.post(SYNC, headers=admin, json={})
    cases = [
        ({"department_id": 999, "org_unit_id": None}, 404, "wecom.department_not_found"),
        ({"department_id": 2, "org_unit_id": 99999999}, 422, "wecom.org_unit_not_found"),
        ({"department_id": "two", "org_unit_id": None}, 422, "request.invalid"),
        ({"department_id": 2}, 422, "request.invalid"),
    ]
    for body, status, code in cases:
        resp = client.post(f"{DEPARTMENTS}/map", headers=admin, json=body)
        assert (resp.status_code, resp.get_json()["code"]) == (status, code), body
    for method, url in (("POST", SYNC), ("GET", DEPARTMENTS), ("POST", f"{DEPARTMENTS}/map")):
        resp = client.open(url, method=method, headers=advisor, json={} if method == "POST" else None)
        assert (resp.status_code, resp.get_json()["code"]) == (403, "auth.forbidden"), url
    unmapped = client.post(f"{DEPARTMENTS}/map", headers=admin, json={"department_id": 2, "org_unit_id": None})
    assert unmapped.status_code == 200 and unmapped.get_json()["org_unit_id"] is None
    assert unmapped.get_json()["manual"] is True
    client.post(SYNC, headers=admin, json={})  # an explicit "unmapped" is not re-mapped by name
    department = {d["department_id"]: d for d in client.get(DEPARTMENTS, headers=admin).get_json()}[2]
    assert department["org_unit_id"] is None
