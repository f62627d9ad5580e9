"""WeCom member directory → staff, member by member: userids matched without regard to case, and
the `status` WeCom lists each member with (1 active, 2 disabled, 4 not yet activated, 5 left the
corp) deciding whether they are active staff. Through the real client and the sandbox."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.org.models import Staff
from backend.wecom.directory import sync_directory
from integrations.sandbox import wecom_ops

STORE_DEPARTMENT = 2


def sync(app: Any, db_session: Any) -> dict[str, int]:
    with app.app_context():
        stats = sync_directory(db_session, app.config["WECOM_CORP_ID"])
        db_session.commit()
    return stats


def snapshot(session: Any) -> dict[str, tuple[str, int, str]]:
    session.expire_all()
    return {s.wecom_userid: (s.name, s.org_unit_id, s.status.value) for s in session.scalars(select(Staff))}


def add_listed_member(state: Any, userid: str, name: str, status: str = "active") -> None:
    state.add_member(userid, name, status=status)
    wecom_ops.place_member(state, userid, [STORE_DEPARTMENT])


def test_a_userid_differing_only_in_case_is_the_same_staff_member(
    db_session: Any, app: Any, sandbox_reset: Any, tree: Any, make_staff: Any
) -> None:
    """WeCom userids are case-insensitive (as is MariaDB's collation; the CSV importer matches them
    by casefold too). A staff member imported as "Zhang.San" whom WeCom lists as "zhang.san" is the
    same person: one staff row, kept active at their store, which takes WeCom's spelling. The
    next sync changes nothing, and once WeCom deletes them they are marked resigned."""
    st = sandbox_reset.state
    store = tree.stores[0]
    wecom_ops.add_department(st, STORE_DEPARTMENT, store.name)
    add_listed_member(st, "zhang.san", "张三")
    add_listed_member(st, "li.si", "李四")
    make_staff(store, "sales_advisor", userid="Zhang.San", name="张三", in_wecom=False)
    make_staff(store, "sales_advisor", userid="li.si", name="李四")

    stats = sync(app, db_session)
    staff = snapshot(db_session)
    assert staff == {"zhang.san": ("张三", store.id, "active"), "li.si": ("李四", store.id, "active")}
    assert (stats["created"], stats["updated"], stats["deactivated"]) == (0, 1, 0)

    stats = sync(app, db_session)
    assert snapshot(db_session) == staff
    assert (stats["created"], stats["updated"], stats["reactivated"], stats["deactivated"]) == (0, 0, 0, 0)

    st.set_member_status("zhang.san", "resigned")  # deleted from the directory
    sync(app, db_session)
    assert snapshot(db_session)["zhang.san"][2] == "resigned"


def test_a_case_variant_listed_as_left_is_resigned_without_a_second_row(
    db_session: Any, app: Any, sandbox_reset: Any, tree: Any, make_staff: Any
) -> None:
    """The deactivation matches without regard to case as well: "Wang.Wu" listed by WeCom as
    "wang.wu" with status 5 is resigned, and no row is created for WeCom's spelling."""
    st = sandbox_reset.state
    store = tree.stores[0]
    wecom_ops.add_department(st, STORE_DEPARTMENT, store.name)
    add_listed_member(st, "stay.here", "留下")
    add_listed_member(st, "wang.wu", "王五", status="exited")
    make_staff(store, "sales_advisor", userid="Wang.Wu", name="王五", in_wecom=False)

    stats = sync(app, db_session)
    staff = snapshot(db_session)
    assert {k: v[2] for k, v in staff.items()} == {"Wang.Wu": "resigned", "stay.here": "active"}
    assert (stats["created"], stats["deactivated"]) == (1, 1)


def test_members_listed_as_disabled_or_left_are_not_active_staff(
    db_session: Any, app: Any, sandbox_reset: Any, tree: Any, make_staff: Any
) -> None:
    """A member WeCom lists as disabled (2, 已禁用) or as having left the corp (5, 退出企业) cannot
    work in WeCom: their staff row is marked resigned (so no customers, behaviour pulls or data
    scope), and no staff row is created for one. A member invited but not yet activated (4,
    未激活) is staff like an active one."""
    st = sandbox_reset.state
    store = tree.stores[0]
    wecom_ops.add_department(st, STORE_DEPARTMENT, store.name)
    members = {
        "stay.here": "active",
        "left.corp": "exited",
        "disabled.one": "disabled",
        "invited.one": "not_activated",
        "new.left": "exited",
        "new.disabled": "disabled",
        "new.invited": "not_activated",
    }
    for userid, status in members.items():
        add_listed_member(st, userid, userid, status=status)
    for userid in ("stay.here", "left.corp", "disabled.one", "invited.one"):
        make_staff(store, "sales_advisor", userid=userid, name=userid)

    stats = sync(app, db_session)
    assert {k: v[2] for k, v in snapshot(db_session).items()} == {
        "stay.here": "active",
        "left.corp": "resigned",
        "disabled.one": "resigned",
        "invited.one": "active",
        "new.invited": "active",
    }
    assert (stats["created"], stats["deactivated"]) == (1, 2)
    resigned = db_session.scalars(select(Staff).where(Staff.wecom_userid == "left.corp")).one()
    assert resigned.resigned_at is not None

    stats = sync(app, db_session)  # unchanged directory: nothing to do
    assert (stats["created"], stats["updated"], stats["reactivated"], stats["deactivated"]) == (0, 0, 0, 0)


def test_a_member_enabled_again_is_reactivated(
    db_session: Any, app: Any, sandbox_reset: Any, tree: Any, make_staff: Any
) -> None:
    """Disabling is reversible in WeCom: a member enabled again is active staff at the next sync."""
    st = sandbox_reset.state
    store = tree.stores[0]
    wecom_ops.add_department(st, STORE_DEPARTMENT, store.name)
    add_listed_member(st, "disabled.one", "停用", status="disabled")
    make_staff(store, "sales_advisor", userid="disabled.one", name="停用")
    sync(app, db_session)
    assert snapshot(db_session)["disabled.one"][2] == "resigned"

    st.set_member_status("disabled.one", "active")
    stats = sync(app, db_session)
    assert snapshot(db_session)["disabled.one"] == ("停用", store.id, "active")
    assert stats["reactivated"] == 1
    member = db_session.scalars(select(Staff).where(Staff.wecom_userid == "disabled.one")).one()
    assert member.resigned_at is None


def test_a_member_listed_as_left_is_resigned_even_when_their_store_is_out_of_sight(
    db_session: Any, app: Any, sandbox_reset: Any, tree: Any, make_staff: Any
) -> None:
    """Staff whose store's department is no longer listed are held when they vanish with it (out
    of sight is not gone); one WeCom still lists, elsewhere, as having left is gone for certain."""
    st = sandbox_reset.state
    wecom_ops.add_department(st, STORE_DEPARTMENT, tree.stores[0].name)
    wecom_ops.add_department(st, 3, tree.stores[1].name)
    add_listed_member(st, "stay.here", "留下")
    st.add_member("moved.away", "调走")
    wecom_ops.place_member(st, "moved.away", [3])
    st.add_member("quit.later", "辞职")
    wecom_ops.place_member(st, "quit.later", [3])
    make_staff(tree.stores[1], "sales_advisor", userid="moved.away", name="调走")
    make_staff(tree.stores[1], "sales_advisor", userid="quit.later", name="辞职")
    sync(app, db_session)

    wecom_ops.remove_department(st, 3)  # out of the app's visible range: store 1's department vanishes
    wecom_ops.place_member(st, "quit.later", [STORE_DEPARTMENT])
    st.set_member_status("quit.later", "exited")
    stats = sync(app, db_session)
    staff = snapshot(db_session)
    assert (staff["moved.away"][2], staff["quit.later"][2]) == ("active", "resigned")
    assert (stats["held"], stats["deactivated"]) == (1, 1)
