"""Org tree and staff: lookups, the staff actor, and the CSV import."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.org.models import OrgUnit, Role, Staff, StaffRole, StaffStatus
from backend.org.scope import compute_scope
from backend.platform.actors import StaffActor
from backend.platform.errors import AppError
from backend.platform.ports import UpstreamError, WeComGateway


def staff_actor(session: Session, staff: Staff) -> StaffActor:
    return StaffActor(
        staff_id=staff.id,
        roles=frozenset(r.value for r in staff.roles),
        org_unit_id=staff.org_unit_id,
        scope=compute_scope(session, staff.roles, staff.org_unit_id, staff.org_unit.kind, staff.org_unit.path),
    )


def load_staff_actor(session: Session, staff_id: int) -> StaffActor:
    """Re-read on every request, so that a resigned advisor's token stops working at once and a
    role change applies immediately — status and roles in one query (this is on every
    workbench request's path), plus the subtree for managers."""
    rows = session.execute(
        select(Staff.status, Staff.org_unit_id, OrgUnit.kind, OrgUnit.path, StaffRole.role)
        .join(OrgUnit, OrgUnit.id == Staff.org_unit_id)
        .outerjoin(StaffRole, StaffRole.staff_id == Staff.id)
        .where(Staff.id == staff_id)
    ).all()
    if not rows:
        raise AppError("auth.token_invalid", 401)
    status, org_unit_id, unit_kind, unit_path = rows[0][:4]
    if status != StaffStatus.ACTIVE:
        raise AppError("auth.staff_inactive", 401)
    roles = frozenset(Role(r[4]) for r in rows if r[4] is not None)
    return StaffActor(
        staff_id=staff_id,
        roles=frozenset(r.value for r in roles),
        org_unit_id=org_unit_id,
        scope=compute_scope(session, roles, org_unit_id, unit_kind, unit_path),
    )


def active_staff_with_role(session: Session, unit_id: int, role: str) -> list[Staff]:
    """Active staff of one org unit holding `role`, in a stable order."""
    stmt = (
        select(Staff)
        .join(StaffRole, StaffRole.staff_id == Staff.id)
        .where(Staff.org_unit_id == unit_id, Staff.status == StaffStatus.ACTIVE, StaffRole.role == role)
        .order_by(Staff.id)
    )
    return list(session.scalars(stmt).unique())


def managers_of_store(session: Session, store_id: int) -> list[Staff]:
    """Who answers for a store: its store managers; a store without one escalates to the
    nearest managers above it (region, then division, then group admins)."""
    managers = active_staff_with_role(session, store_id, Role.STORE_MANAGER.value)
    if managers:
        return managers
    store = session.get(OrgUnit, store_id)
    ancestors = [int(x) for x in (store.path if store else "").strip("/").split("/") if x][:-1]
    upper = (Role.REGION_MANAGER, Role.DIVISION_MANAGER, Role.GROUP_ADMIN)
    for unit_id in reversed(ancestors):
        found = [m for role in upper for m in active_staff_with_role(session, unit_id, role.value)]
        if found:
            return list({m.id: m for m in found}.values())
    return []


def find_staff_by_userid(session: Session, corp_id: str, userid: str) -> Staff | None:
    return session.scalars(select(Staff).where(Staff.corp_id == corp_id, Staff.wecom_userid == userid)).one_or_none()


def org_path(parent: OrgUnit | None, unit_id: int) -> str:
    return f"{parent.path if parent else '/'}{unit_id}/"


def staff_claims(actor: StaffActor) -> dict:
    scope = actor.scope
    if scope.store_ids is None:
        scope_claim = {"kind": "all"}
    elif scope.own_customers_only:
        scope_claim = {"kind": "own_customers"}
    else:
        scope_claim = {"kind": "stores", "store_ids": ",".join(str(i) for i in sorted(scope.store_ids))}
    return {"roles": sorted(actor.roles), "scope": scope_claim}


def login_staff(session: Session, gateway: WeComGateway, code: str) -> tuple[Staff, StaffActor]:
    from backend.customers.service import login_code_error

    try:
        user = gateway.get_user_info(code)
    except UpstreamError as exc:
        raise login_code_error(exc, "auth.login_code_invalid") from exc
    if not user.userid:
        raise AppError("auth.not_a_member", 403)
    staff = find_staff_by_userid(session, gateway.corp_id, user.userid)
    if staff is None:
        raise AppError("auth.staff_unknown", 403)
    if staff.status != StaffStatus.ACTIVE:
        raise AppError("auth.staff_inactive", 403)
    return staff, staff_actor(session, staff)
