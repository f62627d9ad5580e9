"""Workbench API of the WeCom operations room (/api/workbench/v1/wecom/...): directory sync and
department mapping (group admins), customer handovers (managers within their scope), behaviour
figures (pull and read, in scope) and the friend-relation reconciliation (group admins)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.org.scope import get_scoped_or_404, scope_query
from backend.platform.api import Blueprint, current_staff, role_required, scoped
from backend.platform.db import db, utcnow
from backend.platform.jobs import enqueue
from backend.wecom import behaviour, directory, handover, notify, reconcile
from backend.wecom import service as svc
from backend.wecom.ops_models import WeComHandover
from backend.wecom.ops_schemas import (
    AcceptedJobsSchema,
    AppMessageQuerySchema,
    AppMessageSchema,
    BehaviourDaySchema,
    BehaviourRangeSchema,
    DepartmentMapInSchema,
    DepartmentQuerySchema,
    DepartmentSchema,
    EmptySchema,
    HandoverInSchema,
    HandoverListItemSchema,
    HandoverQuerySchema,
    HandoverSchema,
)

blp = Blueprint("wb_wecom_ops", __name__, url_prefix="/api/workbench/v1", audience="staff", description="wecom ops")

MANAGERS = ("group_admin", "store_manager", "region_manager", "division_manager")


@blp.route("/wecom/directory/sync", methods=["POST"])
@scoped("staff")
@role_required("group_admin")
@blp.arguments(EmptySchema)
@blp.response(202, AcceptedJobsSchema)
def sync_directory(_data: dict[str, Any]) -> dict[str, int]:
    """Read every configured corp's WeCom member directory into staff (one job per corp, so
    that one corp's failure is retried on its own)."""
    corps = svc.corp_ids()
    for corp_id in corps:
        enqueue(db.session(), directory.SYNC_JOB, {"corp_id": corp_id})
    return {"enqueued": len(corps)}


@blp.route("/wecom/departments")
@scoped("org_unit")
@role_required("group_admin")
@blp.arguments(DepartmentQuerySchema, location="query")
@blp.response(200, DepartmentSchema(many=True))
def list_departments(args: dict[str, Any]) -> Any:
    """Every corp's departments (or `corp_id`'s), each with its corp."""
    return directory.list_departments(db.session(), args.get("corp_id"))


@blp.route("/wecom/departments/map", methods=["POST"])
@scoped("org_unit")
@role_required("group_admin")
@blp.arguments(DepartmentMapInSchema)
@blp.response(200, DepartmentSchema)
def map_department(data: dict[str, Any]) -> Any:
    """Map a WeCom department (of `corp_id`; omitted, see directory.map_department) to an org node
    (its members become staff there at the next sync)."""
    return directory.map_department(
        db.session(), current_staff(), data["corp_id"], data["department_id"], data["org_unit_id"]
    )


@blp.route("/wecom/handovers", methods=["POST"])
@scoped("wecom_handover")
@role_required(*MANAGERS)
@blp.arguments(HandoverInSchema)
@blp.response(202, HandoverSchema)
def start_handover(data: dict[str, Any]) -> Any:
    """Hand an advisor's customers over (resigned inheritance or on-duty transfer): at most
    5,000 per handover; `left_over` says how many are left for the next request. A resigned
    advisor's long unassigned list is read in the background (`collecting`)."""
    session = db.session()
    created = handover.start_handover(session, current_staff(), **data)
    return handover.handover_view(session, created)


@blp.route("/wecom/handovers")
@scoped("wecom_handover")
@role_required(*MANAGERS)
@blp.arguments(HandoverQuerySchema, location="query")
@blp.response(200, HandoverListItemSchema(many=True))
def list_handovers(args: dict[str, Any]) -> Any:
    stmt = scope_query(select(WeComHandover), current_staff(), "wecom_handover")
    if args.get("status"):
        stmt = stmt.where(WeComHandover.status == args["status"])
    return db.session().scalars(stmt.order_by(WeComHandover.id.desc()).limit(args["limit"])).all()


@blp.route("/wecom/handovers/<int:handover_id>")
@scoped("wecom_handover")
@blp.response(200, HandoverSchema)
def get_handover(handover_id: int) -> Any:
    session = db.session()
    return handover.handover_view(session, get_scoped_or_404(session, current_staff(), "wecom_handover", handover_id))


@blp.route("/wecom/behaviour/pull", methods=["POST"])
@scoped("staff")
@role_required(*MANAGERS)
@blp.arguments(BehaviourRangeSchema)
@blp.response(202, AcceptedJobsSchema)
def pull_behaviour(data: dict[str, Any]) -> dict[str, int]:
    """Back-fill behaviour figures (≤ 180 days back) for one advisor or every advisor in scope."""
    n = behaviour.request_pull(db.session(), current_staff(), data["start_date"], data["end_date"], data["staff_id"])
    return {"enqueued": n}


@blp.route("/wecom/behaviour")
@scoped("staff")
@role_required(*MANAGERS)
@blp.arguments(BehaviourRangeSchema, location="query")
@blp.response(200, BehaviourDaySchema(many=True))
def list_behaviour(args: dict[str, Any]) -> Any:
    """Per advisor per day; reply_percentage / avg_reply_time are null on days without chats."""
    return behaviour.list_days(db.session(), current_staff(), args["start_date"], args["end_date"], args["staff_id"])


@blp.route("/wecom/friends/reconcile", methods=["POST"])
@scoped("staff")
@role_required("group_admin")
@blp.arguments(EmptySchema)
@blp.response(202, AcceptedJobsSchema)
def reconcile_friends(_data: dict[str, Any]) -> dict[str, int]:
    """Compare every active advisor's relations with WeCom now, in every configured corp (one
    job per advisor)."""
    session, run = db.session(), f"manual:{utcnow().isoformat()}"
    return {"enqueued": sum(reconcile.reconcile_all(session, corp_id, run=run) for corp_id in svc.corp_ids())}


@blp.route("/wecom/app-messages")
@scoped("staff")
@role_required("group_admin")
@blp.arguments(AppMessageQuerySchema, location="query")
@blp.response(200, AppMessageSchema(many=True))
def list_app_messages(args: dict[str, Any]) -> Any:
    """Every app message recorded for staff (alerts, notifications), with its delivery state and
    the corp whose app sent it (`corp_id` narrows to one corp)."""
    return notify.list_messages(db.session(), **args)
