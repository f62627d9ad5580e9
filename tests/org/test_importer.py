"""CSV import of the org tree and staff: all or nothing, every bad row reported with its line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.org.importer import import_files
from backend.org.models import OrgKind, OrgUnit, Role, Staff, StaffRole, StaffStatus
from backend.platform.audit import AuditLog

pytestmark = [pytest.mark.usefixtures("app_ctx")]  # these call services that need the app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

UNITS = """code,name,kind,parent_code
G9,华南汽车集团,group,
D9,奥迪事业部,division,G9
R9,广州区域,region,D9
S91,广州天河奥迪4S店,store,R9
S92,广州白云奥迪4S店,store,R9
"""
STAFF = """wecom_userid,name,org_code,roles,status
imp-admin,王总,G9,group_admin,active
imp-region,李经理,R9,region_manager,
imp-mgr,张店长,S91,store_manager|sales_advisor,active
imp-sales,陈顾问,S91,sales_advisor,active
imp-service,刘顾问,S92,service_advisor,resigned
"""


def _write(tmp_path: Path, name: str, text: str, *, bom: bool = False, crlf: bool = False) -> str:
    if crlf:
        text = text.replace("\n", "\r\n")
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return str(path)


def _run(units: str | None, staff: str | None) -> tuple[bool, list[str]]:
    messages: list[str] = []
    return import_files(units, staff, echo=messages.append), messages


def _units(session: Any) -> dict[str, OrgUnit]:
    return {u.code: u for u in session.scalars(select(OrgUnit))}


def _staff(session: Any) -> dict[str, Staff]:
    return {s.wecom_userid: s for s in session.scalars(select(Staff))}


def _counts(session: Any) -> dict[str, int]:
    return {
        m.__name__: session.scalar(select(func.count()).select_from(m)) for m in (OrgUnit, Staff, StaffRole, AuditLog)
    }


def _assert_paths(session: Any) -> None:
    units = {u.id: u for u in session.scalars(select(OrgUnit))}
    for unit in units.values():
        parent = units.get(unit.parent_id) if unit.parent_id else None
        assert unit.path == (parent.path if parent else "/") + f"{unit.id}/", unit.code


def test_good_import_builds_tree_and_staff(app: Any, db_session: Any, tmp_path: Path) -> None:
    ok, messages = _run(_write(tmp_path, "units.csv", UNITS), _write(tmp_path, "staff.csv", STAFF))
    assert ok, messages
    assert messages[-1] == (
        "imported org units: 5 created, 0 updated, 0 unchanged; "
        "staff: 5 created, 0 updated, 0 unchanged (0 with new roles)"
    )
    db_session.expire_all()
    units = _units(db_session)
    assert units["S91"].kind == OrgKind.STORE and units["S91"].name == "广州天河奥迪4S店"
    assert units["S91"].path == f"/{units['G9'].id}/{units['D9'].id}/{units['R9'].id}/{units['S91'].id}/"
    assert units["G9"].parent_id is None and units["R9"].parent_id == units["D9"].id
    _assert_paths(db_session)

    staff = _staff(db_session)
    assert staff["imp-mgr"].roles == {Role.STORE_MANAGER, Role.SALES_ADVISOR}
    assert staff["imp-mgr"].org_unit_id == units["S91"].id
    assert staff["imp-region"].status == StaffStatus.ACTIVE  # empty status means active
    assert staff["imp-service"].status == StaffStatus.RESIGNED and staff["imp-service"].resigned_at is not None
    assert {s.corp_id for s in staff.values()} == {app.config["WECOM_CORP_ID"]}

    audit = db_session.scalars(select(AuditLog).where(AuditLog.action == "org.imported")).one()
    assert (audit.actor_type, audit.actor_id) == ("system", "org_import")
    assert audit.detail["units"] == {"created": 5, "updated": 0, "unchanged": 0}
    assert audit.detail["staff"]["created"] == 5


def test_reimport_updates_in_place(app: Any, db_session: Any, tmp_path: Path) -> None:
    assert _run(_write(tmp_path, "units.csv", UNITS), _write(tmp_path, "staff.csv", STAFF))[0]
    db_session.expire_all()
    ids_before = {code: u.id for code, u in _units(db_session).items()}
    staff_ids_before = {k: s.id for k, s in _staff(db_session).items()}
    counts_before = _counts(db_session)

    # A second division takes over region R9 (and so its stores move too); a store is renamed;
    # the manager loses the sales role; the resigned advisor comes back.
    units2 = UNITS.replace("R9,广州区域,region,D9", "R9,广州区域,region,D8").replace("广州白云", "广州白云新") + (
        "D8,新能源事业部,division,G9\n"
    )
    staff2 = STAFF.replace("store_manager|sales_advisor", "store_manager").replace(",resigned", ",active")
    ok, messages = _run(_write(tmp_path, "units2.csv", units2), _write(tmp_path, "staff2.csv", staff2))
    assert ok, messages
    assert "org units: 1 created, 2 updated, 3 unchanged" in messages[-1]
    assert "staff: 0 created, 2 updated, 3 unchanged (1 with new roles)" in messages[-1]
    db_session.expire_all()
    units = _units(db_session)
    assert {code: units[code].id for code in ids_before} == ids_before
    assert units["R9"].parent_id == units["D8"].id
    assert units["S92"].name == "广州白云新奥迪4S店"
    assert units["S91"].path.startswith(units["D8"].path)
    _assert_paths(db_session)
    staff = _staff(db_session)
    assert {k: staff[k].id for k in staff_ids_before} == staff_ids_before
    assert staff["imp-mgr"].roles == {Role.STORE_MANAGER}
    assert staff["imp-service"].status == StaffStatus.ACTIVE and staff["imp-service"].resigned_at is None
    after = _counts(db_session)
    assert after["OrgUnit"] == counts_before["OrgUnit"] + 1
    assert after["Staff"] == counts_before["Staff"]
    assert after["StaffRole"] == counts_before["StaffRole"] - 1
    assert after["AuditLog"] == counts_before["AuditLog"] + 1

    # The same files again: nothing changes.
    ok, messages = _run(_write(tmp_path, "units2.csv", units2), _write(tmp_path, "staff2.csv", staff2))
    assert ok and "0 created, 0 updated, 6 unchanged" in messages[-1]


def test_every_bad_row_is_reported_and_nothing_written(app: Any, db_session: Any, tmp_path: Path, tree: Any) -> None:
    units = (
        "code,name,kind,parent_code\n"
        "G9,华南集团,group,\n"  # 2 ok
        "D9,事业部,divison,G9\n"  # 3 unknown kind
        "R9,区域,region,G9\n"  # 4 region under a group
        "S91,,store,R9\n"  # 5 empty name
        "S92,门店,store,R404\n"  # 6 unknown parent
        "G9,again,group,\n"  # 7 duplicate code
        '"S93","多行\n名称",store,NOPE\n'  # 8-9 a quoted newline; unknown parent
        "X1,环一,region,X2\n"  # 10 cycle
        "X2,环二,division,X1\n"  # 11 cycle
        f"G8,第二集团,group,{tree.group.code}\n"  # 12 a group has no parent
        f"{tree.stores[0].code},改成区域,region,{tree.divisions[0].code}\n"  # 13 a store stays a store
        "S94,门店,store\n"  # 14 missing field
    )
    staff = (
        "wecom_userid,name,org_code,roles,status\n"
        "ok-1,好人,S91,sales_advisor,\n"  # 2 fine (S91's own row is bad, but it is a known code)
        "ok-1,重复,S91,sales_advisor,\n"  # 3 duplicate userid
        ",无名,S91,sales_advisor,\n"  # 4 empty userid
        "u5,五,NOWHERE,sales_advisor,\n"  # 5 unknown org unit
        f"u6,六,{tree.stores[0].code},,active\n"  # 6 no role
        f"u7,七,{tree.stores[0].code},salesman,active\n"  # 7 unknown role
        f"u8,八,{tree.regions[0].code},store_manager,active\n"  # 8 role at the wrong level
        f"u9,九,{tree.stores[0].code},sales_advisor,left\n"  # 9 unknown status
    )
    before = _counts(db_session)
    ok, messages = _run(_write(tmp_path, "org_units.csv", units), _write(tmp_path, "staff.csv", staff))
    assert not ok
    expected = [
        "org_units.csv line 14: row: expected 4 fields, found 3",
        "org_units.csv line 3: kind: unknown kind 'divison' (one of group, division, region, store)",
        "org_units.csv line 5: name: required",
        "org_units.csv line 7: code: duplicate code 'G9' (first on line 2)",
        "org_units.csv line 12: parent_code: a group has no parent; leave it empty",
        f"org_units.csv line 13: kind: '{tree.stores[0].code}' is already a store; "
        "the kind of an existing unit cannot change",
        "org_units.csv line 4: parent_code: a region's parent must be a division; 'G9' is a group",
        "org_units.csv line 6: parent_code: unknown parent 'R404' (not in this file nor in the database)",
        "org_units.csv line 8: parent_code: unknown parent 'NOPE' (not in this file nor in the database)",
        "org_units.csv line 10: parent_code: cycle: X1 → X2 → X1",
        "org_units.csv line 11: parent_code: cycle: X2 → X1 → X2",
        "staff.csv line 3: wecom_userid: duplicate userid 'ok-1' (first on line 2)",
        "staff.csv line 4: wecom_userid: required",
        "staff.csv line 5: org_code: unknown org unit 'NOWHERE'",
        "staff.csv line 6: roles: at least one role is required (|-separated)",
        "staff.csv line 7: roles: unknown role 'salesman'",
        f"staff.csv line 8: roles: a store_manager works at a store; '{tree.regions[0].code}' is a region",
        "staff.csv line 9: status: unknown status 'left' (active or resigned)",
        "18 problem(s) found: nothing was imported",
    ]
    assert sorted(messages) == sorted(expected)
    db_session.expire_all()
    assert _counts(db_session) == before
    assert db_session.get(OrgUnit, tree.stores[0].id).kind == OrgKind.STORE


def test_header_problems_name_the_columns(app: Any, db_session: Any, tmp_path: Path) -> None:
    units = _write(tmp_path, "u.csv", "code,name,type,parent_code,notes\nG9,集团,group,,x\n")
    staff = _write(tmp_path, "s.csv", "wecom_userid,name,roles\nu1,一,sales_advisor\n")
    ok, messages = _run(units, staff)
    assert not ok
    assert messages[:-1] == [
        "u.csv line 1: header: missing column(s) kind; expected code,name,kind,parent_code",
        "u.csv line 1: header: unexpected column(s) 'type', 'notes'; expected code,name,kind,parent_code",
        "s.csv line 1: header: missing column(s) org_code; expected wecom_userid,name,org_code,roles,status",
    ]
    ok, messages = _run(_write(tmp_path, "empty.csv", ""), None)
    assert not ok and messages[0].startswith("empty.csv line 1: header: the file is empty")


def test_excel_bom_crlf_and_optional_status(app: Any, db_session: Any, tmp_path: Path) -> None:
    staff = "wecom_userid,name,org_code,roles\nimp-admin,王总,G9,group_admin\n,,,\n"  # Excel's empty trailing row
    ok, messages = _run(
        _write(tmp_path, "units.csv", UNITS, bom=True, crlf=True),
        _write(tmp_path, "staff.csv", staff, bom=True, crlf=True),
    )
    assert ok, messages
    db_session.expire_all()
    assert _units(db_session)["G9"].name == "华南汽车集团"
    assert _staff(db_session)["imp-admin"].status == StaffStatus.ACTIVE


def test_not_utf8_is_refused_clearly(app: Any, db_session: Any, tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes(UNITS.encode("gbk"))
    ok, messages = _run(str(path), None)
    assert not ok
    assert messages[0] == 'gbk.csv line 2: file: not UTF-8 text (in Excel, save as "CSV UTF-8")'


def test_parents_and_units_already_in_the_database(app: Any, db_session: Any, tmp_path: Path, tree: Any) -> None:
    units = _write(tmp_path, "u.csv", f"code,name,kind,parent_code\nS99,新门店,store,{tree.regions[1].code}\n")
    staff = _write(
        tmp_path,
        "s.csv",
        "wecom_userid,name,org_code,roles,status\n"
        f"n1,新人,S99,sales_advisor,active\nn2,老店,{tree.stores[0].code},marketing,active\n",
    )
    ok, messages = _run(units, staff)
    assert ok, messages
    db_session.expire_all()
    store = _units(db_session)["S99"]
    assert store.path == f"{tree.regions[1].path}{store.id}/"
    assert _staff(db_session)["n2"].org_unit_id == tree.stores[0].id


def test_nothing_to_import(app: Any, db_session: Any) -> None:
    assert _run(None, None) == (False, ["nothing to import: give --units and/or --staff"])


def test_examples_import_and_cli(app: Any, db_session: Any) -> None:
    units, staff = str(EXAMPLES / "org_units.csv"), str(EXAMPLES / "staff.csv")
    result = app.test_cli_runner().invoke(args=["org", "import", "--units", units, "--staff", staff])
    assert result.exit_code == 0, result.output
    assert "imported org units: 5 created" in result.output
    db_session.expire_all()
    assert _staff(db_session)["s08-manager"].roles == {Role.STORE_MANAGER, Role.SALES_ADVISOR}
    _assert_paths(db_session)
    # Re-running the examples is harmless.
    result = app.test_cli_runner().invoke(args=["org", "import", "--units", units, "--staff", staff])
    assert result.exit_code == 0 and "0 created, 0 updated, 5 unchanged" in result.output


def test_examples_fit_on_top_of_the_demo_seed(app: Any, db_session: Any) -> None:
    from backend.seed import seed_demo

    seed_demo(customers=1)
    messages: list[str] = []
    assert import_files(str(EXAMPLES / "org_units.csv"), str(EXAMPLES / "staff.csv"), echo=messages.append), messages
    assert "org units: 3 created, 0 updated, 2 unchanged" in messages[-1]


def test_cli_exit_code_on_errors(app: Any, db_session: Any, tmp_path: Path) -> None:
    bad = _write(tmp_path, "bad.csv", "code,name,kind,parent_code\nX,名,planet,\n")
    result = app.test_cli_runner().invoke(args=["org", "import", "--units", bad])
    assert result.exit_code == 1
    assert "bad.csv line 2: kind: unknown kind 'planet'" in result.output


def test_codes_and_userids_match_without_regard_to_case(app: Any, db_session: Any, tmp_path: Path) -> None:
    """As MariaDB's collation and WeCom do: "s91" is the unit S91, "IMP-MGR" the staff imp-mgr."""
    assert _run(_write(tmp_path, "units.csv", UNITS), _write(tmp_path, "staff.csv", STAFF))[0]
    before = _counts(db_session)
    units = "code,name,kind,parent_code\ns93,广州番禺奥迪4S店,store,r9\n"
    staff = "wecom_userid,name,org_code,roles,status\nIMP-MGR,张店长,s93,store_manager,active\n"
    ok, messages = _run(_write(tmp_path, "u.csv", units), _write(tmp_path, "s.csv", staff))
    assert ok, messages
    db_session.expire_all()
    found = _units(db_session)
    assert found["s93"].parent_id == found["R9"].id
    assert _staff(db_session)["imp-mgr"].org_unit_id == found["s93"].id
    after = _counts(db_session)
    assert (after["OrgUnit"], after["Staff"]) == (before["OrgUnit"] + 1, before["Staff"])

    dupes = "code,name,kind,parent_code\nS95,一,store,R9\ns95,二,store,R9\n"
    ok, messages = _run(_write(tmp_path, "d.csv", dupes), None)
    assert not ok and messages[0] == "d.csv line 3: code: duplicate code 'S95' (first on line 2)"
