"""Workbench API of segments (/api/workbench/v1/segments): saved customer filters with a count
preview, for marketing staff and managers. Coupon pushes, campaign targets and event
eligibility refer to a segment by id."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import select

from backend.org.scope import get_scoped_or_404, scope_query
from backend.platform.api import Blueprint, current_staff, role_required, scoped
from backend.platform.db import db
from backend.platform.idempotency import idempotent
from backend.segments import service
from backend.segments.models import Segment
from backend.segments.schemas import (
    CountSchema,
    MemberPageSchema,
    MembersQuerySchema,
    PreviewInSchema,
    SegmentInSchema,
    SegmentListSchema,
    SegmentPatchSchema,
    SegmentSchema,
)
from workbench.scoping import scope_first

blp = Blueprint(
    "wb_segments", __name__, url_prefix="/api/workbench/v1", audience="staff", description="客户分群 — segments"
)

MANAGERS = ("store_manager", "region_manager", "division_manager", "group_admin", "marketing")


@blp.route("/segments")
class Segments(MethodView):
    @scoped("segment")
    @blp.response(200, SegmentListSchema)
    def get(self) -> dict[str, Any]:
        """Segments owned by units in my scope (archived ones left out)."""
        stmt = scope_query(select(Segment).where(Segment.archived.is_(False)), current_staff(), "segment")
        return {"items": db.session().scalars(stmt.order_by(Segment.id.desc()).limit(500)).all()}

    @scoped("segment")
    @role_required(*MANAGERS)
    @idempotent
    @blp.arguments(SegmentInSchema)
    @blp.response(201, SegmentSchema)
    def post(self, data: dict[str, Any]) -> Segment:
        """Save a filter as a segment (send an Idempotency-Key)."""
        return service.create(db.session(), current_staff(), data)


@blp.route("/segments/preview", methods=["POST"])
@scoped("segment")
@role_required(*MANAGERS)
@blp.arguments(PreviewInSchema)
@blp.response(200, CountSchema)
def preview(data: dict[str, Any]) -> dict[str, int]:
    """How many customers a filter selects now (before saving it)."""
    return {"count": service.preview_count(db.session(), current_staff(), data.get("owner_unit_id"), data["filters"])}


@blp.route("/segments/<int:segment_id>")
class SegmentItem(MethodView):
    @scoped("segment")
    @blp.response(200, SegmentSchema)
    def get(self, segment_id: int) -> Segment:
        return get_scoped_or_404(db.session(), current_staff(), "segment", segment_id)

    @scoped("segment")
    @scope_first("segment", "segment_id")
    @role_required(*MANAGERS)
    @blp.arguments(SegmentPatchSchema)
    @blp.response(200, SegmentSchema)
    def patch(self, data: dict[str, Any], segment_id: int) -> Segment:
        session = db.session()
        segment = get_scoped_or_404(session, current_staff(), "segment", segment_id)
        return service.update_segment(session, current_staff(), segment, data)

    @scoped("segment")
    @scope_first("segment", "segment_id")
    @role_required(*MANAGERS)
    @blp.response(200, SegmentSchema)
    def delete(self, segment_id: int) -> Segment:
        """Archive (segments in use by campaigns and pushes are never deleted)."""
        session = db.session()
        segment = get_scoped_or_404(session, current_staff(), "segment", segment_id)
        return service.archive(session, current_staff(), segment)


@blp.route("/segments/<int:segment_id>/count")
@scoped("segment")
@blp.response(200, CountSchema)
def segment_count(segment_id: int) -> dict[str, int]:
    """How many customers the segment selects now."""
    session = db.session()
    segment = get_scoped_or_404(session, current_staff(), "segment", segment_id)
    return {"count": service.count(session, service.segment_customer_ids(session, segment.id))}


@blp.route("/segments/<int:segment_id>/customers")
@scoped("segment")
@blp.arguments(MembersQuerySchema, location="query")
@blp.response(200, MemberPageSchema)
def segment_members(args: dict[str, Any], segment_id: int) -> dict[str, Any]:
    """The segment's customers that are also in my own customer scope, newest first."""
    from sqlalchemy import func

    from backend.customers.models import Customer

    session = db.session()
    actor = current_staff()
    segment = get_scoped_or_404(session, actor, "segment", segment_id)
    stmt = scope_query(
        select(Customer).where(Customer.id.in_(service.segment_customer_ids(session, segment.id))), actor, "customer"
    )
    total = session.scalar(select(func.count()).select_from(stmt.subquery()))
    page, size = args["page"], args["page_size"]
    rows = session.scalars(stmt.order_by(Customer.id.desc()).limit(size).offset((page - 1) * size)).all()
    return {"items": rows, "total": total, "page": page, "page_size": size}
