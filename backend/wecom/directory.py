"""The WeCom member directory → dealerloop's staff.

`sync_directory` reads `department/list` and `user/list` (root department, `fetch_child=1`) and
brings `wecom_department` and `staff` in line:
- departments are stored with the org node they map to; an unmapped department is mapped to
  the store of the same name when exactly one exists, otherwise a group admin maps it;
- a member of a mapped department becomes staff at that node (created without roles: deny by
  default, roles are given by an admin), an existing staff member gets the name and node WeCom
  has, and is reactivated when back in the directory;
- userids are matched without regard to case, as WeCom (and MariaDB's collation, and the CSV
  importer) does; a staff row whose userid differs from WeCom's only in case takes WeCom's spelling;
- a member WeCom still lists as disabled (`status` 2) or as having left the corp (5) is not active
  staff: marked resigned, as one who vanished (dealerloop has no "disabled" status; re-enabled in
  WeCom, they are reactivated at the next sync). One invited but not yet activated (4) is staff;
- staff WeCom no longer lists (members who left are removed from the directory) are marked
  resigned — unless the directory came back empty, which is a permission problem, not an exodus,
  or their store's department is no longer listed either: a department taken out of the app's
  visible range (or reorganised) takes its members out of the listing without their leaving,
  so they are held (counted, logged) until an admin maps their department again or they are
  listed elsewhere.
Re-running it with an unchanged directory changes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.org.models import OrgKind, OrgUnit, Staff, StaffStatus
from backend.org.open_work import staff_departed, staff_moved
from backend.platform.actors import StaffActor
from backend.platform.db import DuplicateKey, unique_savepoint, utcnow
from backend.platform.errors import AppError, register_messages
from backend.wecom import service as svc
from backend.wecom.ops_models import WeComDepartment

log = logging.getLogger("dealerloop.wecom.directory")

SYNC_JOB = "wecom.directory.sync"

# `user/list`'s member `status`: 1 active, 2 disabled (已禁用), 4 not activated (未激活, invited),
# 5 left the corp (退出企业, still listed until an admin deletes them).
MEMBER_ACTIVE = 1
MEMBER_GONE = frozenset({2, 5})

register_messages(
    {
        "wecom.department_not_found": ("企业微信部门不存在", "WeCom department not found"),
        "wecom.org_unit_not_found": ("组织节点不存在", "Org unit not found"),
        "wecom.department_ambiguous": (
            "多个企业有此部门，请指定企业",
            "Several corps have this department: name the corp",
        ),
    }
)


def sync_directory(session: Session, corp_id: str) -> dict[str, int]:
    # Read under the corp's lock: of two syncs (the nightly one, a manager's), the later read
    # is written last.
    svc.lock_sync(session, corp_id, "directory").fetched_at = utcnow()
    gateway = svc.gateway_for(corp_id)
    departments = gateway.get("department/list").get("department") or []
    ids = {int(d["id"]) for d in departments}
    roots = sorted(int(d["id"]) for d in departments if int(d.get("parentid") or 0) not in ids)
    users: dict[str, dict[str, Any]] = {}
    for root in roots:
        listed = gateway.get("user/list", {"department_id": root, "fetch_child": 1})
        for user in listed.get("userlist") or []:
            users.setdefault(str(user["userid"]).casefold(), user)
    # Everything is read before anything is written: a failed call changes nothing.
    stats = {"departments": len(departments), "users": len(users)}
    mapping, vanished = _sync_departments(session, corp_id, departments)
    stats.update(_sync_staff(session, corp_id, users, mapping, vanished))
    session.flush()
    log.info("directory sync %s: %s", corp_id, stats)
    return stats


def _sync_departments(
    session: Session, corp_id: str, departments: list[dict[str, Any]]
) -> tuple[dict[int, int | None], set[int]]:
    """(the listed departments' org nodes, the org nodes whose departments are no longer listed)."""
    now = utcnow()
    existing = {
        d.department_id: d for d in session.scalars(select(WeComDepartment).where(WeComDepartment.corp_id == corp_id))
    }
    stores_by_name: dict[str, list[int]] = {}
    for unit_id, name in session.execute(select(OrgUnit.id, OrgUnit.name).where(OrgUnit.kind == OrgKind.STORE)):
        stores_by_name.setdefault(name, []).append(unit_id)
    seen = set()
    for d in departments:
        department_id = int(d["id"])
        seen.add(department_id)
        row = existing.get(department_id)
        if row is None:
            row = WeComDepartment(corp_id=corp_id, department_id=department_id, name="", present=True, manual=False)
            try:
                with unique_savepoint(session):
                    session.add(row)
            except DuplicateKey:
                row = session.scalars(
                    select(WeComDepartment).where(
                        WeComDepartment.corp_id == corp_id, WeComDepartment.department_id == department_id
                    )
                ).one()
            existing[department_id] = row
        name = str(d.get("name") or "")[:64]
        parent = int(d.get("parentid") or 0) or None
        if (row.name, row.parent_id, row.present) != (name, parent, True):
            row.name, row.parent_id, row.present = name, parent, True
            row.synced_at = now
        if row.org_unit_id is None and not row.manual and len(stores_by_name.get(name, [])) == 1:
            row.org_unit_id = stores_by_name[name][0]
    for department_id, row in existing.items():
        if department_id not in seen and row.present:
            row.present = False
            row.synced_at = now
    mapping = {k: v.org_unit_id for k, v in existing.items() if v.present}
    listed_units = {unit for unit in mapping.values() if unit}
    vanished = {v.org_unit_id for v in existing.values() if not v.present and v.org_unit_id} - listed_units
    return mapping, vanished


def _target_unit(user: dict[str, Any], mapping: dict[int, int | None]) -> int | None:
    main = user.get("main_department")
    if main is not None and mapping.get(int(main)):
        return mapping[int(main)]
    for department_id in user.get("department") or []:
        if mapping.get(int(department_id)):
            return mapping[int(department_id)]
    return None


def _is_gone(user: dict[str, Any]) -> bool:
    # A member without `status` is taken as active: WeCom's `user/list` always answers it.
    return int(user.get("status") or MEMBER_ACTIVE) in MEMBER_GONE


def _sync_staff(
    session: Session,
    corp_id: str,
    users: dict[str, dict[str, Any]],
    mapping: dict[int, int | None],
    vanished: set[int],
) -> dict[str, int]:
    """`users`: the listed members by casefolded userid."""
    stats = {"created": 0, "updated": 0, "reactivated": 0, "deactivated": 0, "unmapped": 0, "held": 0}
    staff_by_key = {
        s.wecom_userid.casefold(): s for s in session.scalars(select(Staff).where(Staff.corp_id == corp_id))
    }
    for key, user in sorted(users.items()):
        if _is_gone(user):
            continue  # not created, nor reactivated; the loop below marks their staff row resigned
        userid = str(user["userid"])
        name = str(user.get("name") or userid)[:64]
        target = _target_unit(user, mapping)
        staff = staff_by_key.get(key)
        if staff is None:
            if target is None:
                stats["unmapped"] += 1
                continue
            staff = Staff(
                corp_id=corp_id, wecom_userid=userid, name=name, org_unit_id=target, status=StaffStatus.ACTIVE
            )
            try:
                with unique_savepoint(session):
                    session.add(staff)
                stats["created"] += 1
            except DuplicateKey:  # a concurrent sync created it
                continue
            svc.adopt_relations(session, staff)
            continue
        changed = False
        if staff.wecom_userid != userid:
            # WeCom's spelling: the one its callbacks and lists carry, which other rows are written with.
            staff.wecom_userid, changed = userid, True
        if staff.name != name:
            staff.name, changed = name, True
        if target is not None and staff.org_unit_id != target:
            staff.org_unit_id, changed = target, True
            if staff.status == StaffStatus.ACTIVE:
                staff_moved(session, staff, utcnow())  # the old store's open work goes back to it
        if staff.status != StaffStatus.ACTIVE:
            staff.status, staff.resigned_at = StaffStatus.ACTIVE, None
            stats["reactivated"] += 1
        elif changed:
            stats["updated"] += 1
    if not users:
        log.warning("directory sync %s: WeCom listed no members; nobody is deactivated", corp_id)
        return stats
    now = utcnow()
    for key, staff in staff_by_key.items():
        if staff.status != StaffStatus.ACTIVE:
            continue
        user = users.get(key)
        if user is not None and not _is_gone(user):
            continue
        # Listed as gone is certain; only the unlisted may be out of sight with their department.
        if user is None and staff.org_unit_id in vanished:
            stats["held"] += 1
            continue
        staff.status, staff.resigned_at = StaffStatus.RESIGNED, now
        session.flush()
        staff_departed(session, staff, now)
        stats["deactivated"] += 1
    if stats["held"]:
        log.warning(
            "directory sync %s: %s staff of departments WeCom no longer lists are kept active", corp_id, stats["held"]
        )
    return stats


def list_departments(session: Session, corp_id: str | None = None) -> list[WeComDepartment]:
    """The departments every corp's sync has read (or one corp's); each names its corp, as
    department ids repeat across corps."""
    stmt = select(WeComDepartment)
    if corp_id:
        stmt = stmt.where(WeComDepartment.corp_id == corp_id)
    return list(session.scalars(stmt.order_by(WeComDepartment.corp_id, WeComDepartment.department_id)))


def map_department(
    session: Session, actor: StaffActor, corp_id: str | None, department_id: int, org_unit_id: int | None
) -> WeComDepartment:
    """A group admin maps a department of a configured corp to an org node (None: unmapped, and
    stays so). Applied at the next sync.

    Without `corp_id`: the primary corp's department of that id, else the one other corp's that
    has it (a client from before several corps, or one corp's own department id); when several
    other corps have it, the caller must say which (department ids repeat across corps)."""
    corps = svc.corp_ids()
    if corp_id is not None and corp_id not in corps:
        # Told apart from an unknown department: the corp itself is not one dealerloop serves.
        raise svc.corp_not_configured(corp_id)
    rows = {
        row.corp_id: row
        for row in session.scalars(
            select(WeComDepartment).where(
                WeComDepartment.corp_id.in_([corp_id] if corp_id else corps),
                WeComDepartment.department_id == department_id,
            )
        )
    }
    row = rows.get(corp_id or svc.current_corp_id())
    if row is None and corp_id is None and rows:
        if len(rows) > 1:
            raise AppError(
                "wecom.department_ambiguous",
                422,
                errors={"corp_id": [f"several corps have department {department_id}"]},
            )
        (row,) = rows.values()
    if row is None:
        raise AppError("wecom.department_not_found", 404)
    if org_unit_id is not None and session.get(OrgUnit, org_unit_id) is None:
        raise AppError("wecom.org_unit_not_found", 422)
    row.org_unit_id = org_unit_id
    row.manual = True
    session.flush()
    return row
