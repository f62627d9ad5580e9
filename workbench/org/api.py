"""Org units and staff, as far as the actor's scope reaches."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.org.models import OrgUnit, Staff, StaffRole
from backend.org.scope import get_scoped_or_404, scope_query
from backend.platform.api import Blueprint, current_staff, scoped
from backend.platform.db import db
from workbench.org.schemas import OrgUnitSchema, StaffQuerySchema, StaffSchema

blp = Blueprint("wb_org", __name__, url_prefix="/api/workbench/v1", audience="staff", description="Org tree and staff")


def _staff_out(staff: Staff) -> dict[str, Any]:
    return {
        "id": staff.id,
        "name": staff.name,
        "wecom_userid": staff.wecom_userid,
        "org_unit_id": staff.org_unit_id,
        "status": staff.status.value,
        "roles": sorted(r.value for r in staff.roles),
    }


@blp.route("/org-units")
@scoped("org_unit")
@blp.response(200, OrgUnitSchema(many=True))
def list_org_units() -> list[Any]:
    """The stores in my scope (all units for group admins)."""
    stmt = scope_query(select(OrgUnit).order_by(OrgUnit.path), current_staff(), "org_unit")
    return list(db.session().scalars(stmt))


@blp.route("/org-units/<int:org_unit_id>")
@scoped("org_unit")
@blp.response(200, OrgUnitSchema)
def get_org_unit(org_unit_id: int) -> Any:
    return get_scoped_or_404(db.session(), current_staff(), "org_unit", org_unit_id)


@blp.route("/staff")
@scoped("staff")
@blp.arguments(StaffQuerySchema, location="query")
@blp.response(200, StaffSchema(many=True))
def list_staff(args: dict[str, Any]) -> list[dict[str, Any]]:
    """Staff in my scope."""
    stmt = scope_query(select(Staff).order_by(Staff.id), current_staff(), "staff")
    if "org_unit_id" in args:
        stmt = stmt.where(Staff.org_unit_id == args["org_unit_id"])
    if "role" in args:
        stmt = stmt.where(Staff.id.in_(select(StaffRole.staff_id).where(StaffRole.role == args["role"])))
    return [_staff_out(s) for s in db.session().scalars(stmt.limit(500))]


@blp.route("/staff/<int:staff_id>")
@scoped("staff")
@blp.response(200, StaffSchema)
def get_staff(staff_id: int) -> dict[str, Any]:
    return _staff_out(get_scoped_or_404(db.session(), current_staff(), "staff", staff_id))
