"""Workbench API of leads (/api/workbench/v1/leads...) and vehicle listings (/listings...).

Advisors see and work the leads assigned to them; managers see their stores' leads, and
reassign them. An id outside the caller's scope answers 404.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import func, select

from backend.customers.models import Customer
from backend.leads import service
from backend.leads.api import LEAD_EXAMPLE, LISTING_EXAMPLE, NEW_LISTING_EXAMPLE, TRADE_IN_LEAD_EXAMPLE
from backend.leads.models import Lead, Listing
from backend.leads.schemas import (
    LeadQuerySchema,
    ListingInSchema,
    ListingListSchema,
    ListingPatchSchema,
    ListingSchema,
    ReassignInSchema,
    StaffLeadDetailSchema,
    StaffLeadPageSchema,
    StaffLeadSchema,
    StaffListingQuerySchema,
    StatusInSchema,
)
from backend.org.scope import get_scoped_or_404, scope_query
from backend.platform.api import Blueprint, current_staff, scoped
from backend.platform.db import db
from backend.platform.idempotency import idempotent
from workbench.scoping import scope_first

blp = Blueprint("wb_leads", __name__, url_prefix="/api/workbench/v1", audience="staff", description="线索 — leads")

# Examples in the OpenAPI document. Requests may send local times (+08:00); answers carry UTC.
STATUS_EXAMPLES = {
    "contacted": {"summary": "已联系", "value": {"status": "contacted", "note": "已电话联系，安排拖车", "version": 2}},
    "appointment": {
        "summary": "约到店",
        "value": {"status": "appointment", "appointment_at": "2026-12-05T10:00:00+08:00", "version": 3},
    },
    "lost": {"summary": "战败", "value": {"status": "lost", "lost_reason": "已在别家购车", "version": 3}},
}
STAFF_LEAD_EXAMPLE = {
    **LEAD_EXAMPLE,
    "routed_role": "service_advisor",
    "routed_by": "assigned_advisor",
    "escalated_at": None,
    "overdue": False,
    "version": 2,
    "customer_name": "陈志强",
}
CONTACTED_EXAMPLE = {
    **STAFF_LEAD_EXAMPLE,
    "status": "contacted",
    "version": 3,
    "contacted_at": "2026-12-02T08:06:00+00:00",
    "updated_at": "2026-12-02T08:06:00+00:00",
}
REASSIGNED_EXAMPLE = {
    **STAFF_LEAD_EXAMPLE,
    "advisor_id": 16,
    "routed_by": "manual",
    "version": 3,
    "updated_at": "2026-12-02T08:05:00+00:00",
}
LEAD_PAGE_EXAMPLE = {
    "items": [
        STAFF_LEAD_EXAMPLE,
        {
            **TRADE_IN_LEAD_EXAMPLE,
            "routed_role": "sales_advisor",
            "routed_by": "round_robin",
            "escalated_at": None,
            "overdue": False,
            "version": 4,
            "customer_name": "陈志强",
        },
    ],
    "total": 2,
    "page": 1,
    "page_size": 20,
}
LEAD_DETAIL_EXAMPLE = {
    **STAFF_LEAD_EXAMPLE,
    "history": [
        {
            "kind": "lead_created",
            "occurred_at": "2026-12-02T08:00:00+00:00",
            "advisor_id": 15,
            "advisor_name": "王顾问",
            "previous_advisor_name": None,
            "payload": {"lead_id": 41, "type": "accident", "priority": "high"},
        },
        {
            "kind": "lead_assigned",
            "occurred_at": "2026-12-02T08:00:00+00:00",
            "advisor_id": 15,
            "advisor_name": "王顾问",
            "previous_advisor_name": None,
            "payload": {
                "lead_id": 41,
                "type": "accident",
                "advisor_id": 15,
                "previous_advisor_id": None,
                "by": "routing",
                "routed_by": "assigned_advisor",
            },
        },
    ],
}
# What a manager posts for the owners' example listing: its own fields, without id, store,
# status or times.
LISTING_IN_EXAMPLE = {
    k: LISTING_EXAMPLE[k]
    for k in (
        "condition",
        "title",
        "brand",
        "series",
        "model",
        "year",
        "mileage_km",
        "price_fen",
        "photos",
        "description",
    )
}
REPRICED_EXAMPLE = {
    **LISTING_EXAMPLE,
    "price_fen": 14_800_000,
    "status": "reserved",
    "updated_at": "2026-12-01T06:30:00+00:00",
}
WITHDRAWN_EXAMPLE = {**LISTING_EXAMPLE, "status": "withdrawn", "updated_at": "2026-12-02T03:00:00+00:00"}


def _view(session: Any, lead: Lead, names: dict[int, str | None] | None = None) -> dict[str, Any]:
    view = {c: getattr(lead, c) for c in StaffLeadSchema().fields if hasattr(lead, c)}
    view["overdue"] = service.is_overdue(lead)
    if names is None:
        customer = session.get(Customer, lead.customer_id)
        view["customer_name"] = customer.name if customer else None
    else:
        view["customer_name"] = names.get(lead.customer_id)
    return view


@blp.route("/leads")
@scoped("lead")
@blp.arguments(LeadQuerySchema, location="query")
@blp.response(200, StaffLeadPageSchema, example=LEAD_PAGE_EXAMPLE)
def list_leads(args: dict[str, Any]) -> dict[str, Any]:
    """My leads (advisors; `mine=true` for a manager's own) or my stores' leads (managers),
    filtered by type, status, priority, store and `overdue`; high priority and oldest due first."""
    session = db.session()
    stmt = service.staff_leads_query(current_staff(), args)
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    page, size = args["page"], args["page_size"]
    leads = session.scalars(
        stmt.order_by(Lead.priority.asc(), Lead.contact_due_at, Lead.id).limit(size).offset((page - 1) * size)
    ).all()
    ids = {lead.customer_id for lead in leads}
    names = dict(session.execute(select(Customer.id, Customer.name).where(Customer.id.in_(ids))).all()) if ids else {}
    return {"items": [_view(session, lead, names) for lead in leads], "total": total, "page": page, "page_size": size}


@blp.route("/leads/<int:lead_id>")
@scoped("lead")
@blp.response(200, StaffLeadDetailSchema, example=LEAD_DETAIL_EXAMPLE)
def get_lead(lead_id: int) -> dict[str, Any]:
    """A lead with its history (created, assigned, status changes, escalation)."""
    session = db.session()
    lead = get_scoped_or_404(session, current_staff(), "lead", lead_id)
    return {**_view(session, lead), "history": service.lead_history_view(session, lead.id)}


@blp.route("/leads/<int:lead_id>/status", methods=["POST"])
@scoped("lead")
@scope_first("lead", "lead_id")
@blp.arguments(StatusInSchema, examples=STATUS_EXAMPLES)
@blp.response(200, StaffLeadSchema, example=CONTACTED_EXAMPLE)
def change_status(data: dict[str, Any], lead_id: int) -> dict[str, Any]:
    """Move a lead: new → contacted / appointment / won / lost; contacted → appointment / won /
    lost; appointment → contacted / appointment (reschedule) / won / lost. Won and lost are
    final (409 `lead.invalid_transition`); lost needs `lost_reason`, appointment its time (422).
    The same status again changes nothing."""
    session = db.session()
    return _view(session, service.change_status(session, current_staff(), lead_id, data))


@blp.route("/leads/<int:lead_id>/reassign", methods=["POST"])
@scoped("lead")
@scope_first("lead", "lead_id")
@blp.arguments(ReassignInSchema, example={"advisor_id": 16})
@blp.response(200, StaffLeadSchema, example=REASSIGNED_EXAMPLE)
def reassign(data: dict[str, Any], lead_id: int) -> dict[str, Any]:
    """Managers: give the lead to another active staff member of its store (notified in WeCom)."""
    session = db.session()
    return _view(session, service.reassign(session, current_staff(), lead_id, data["advisor_id"]))


@blp.route("/listings")
class Listings(MethodView):
    @scoped("listing")
    @blp.arguments(StaffListingQuerySchema, location="query")
    @blp.response(200, ListingListSchema, example={"items": [WITHDRAWN_EXAMPLE, NEW_LISTING_EXAMPLE]})
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Vehicles for sale of my stores, every status unless filtered."""
        stmt = scope_query(select(Listing), current_staff(), "listing")
        if args.get("store_id"):
            stmt = stmt.where(Listing.store_id == args["store_id"])
        if args.get("condition"):
            stmt = stmt.where(Listing.condition == args["condition"])
        if args.get("status"):
            stmt = stmt.where(Listing.status.in_(args["status"]))
        return {"items": db.session().scalars(stmt.order_by(Listing.id.desc()).limit(500)).all()}

    @scoped("listing")
    @idempotent
    @blp.arguments(ListingInSchema, example=LISTING_IN_EXAMPLE)
    @blp.response(201, ListingSchema, example=LISTING_EXAMPLE)
    def post(self, data: dict[str, Any]) -> Listing:
        """List a vehicle for sale (sales advisors: at their store; managers: a store of theirs)."""
        return service.create_listing(db.session(), current_staff(), data)


@blp.route("/listings/<int:listing_id>")
class ListingItem(MethodView):
    @scoped("listing")
    @blp.response(200, ListingSchema, example=LISTING_EXAMPLE)
    def get(self, listing_id: int) -> Listing:
        return get_scoped_or_404(db.session(), current_staff(), "listing", listing_id)

    @scoped("listing")
    @scope_first("listing", "listing_id")
    @blp.arguments(ListingPatchSchema, example={"price_fen": 14_800_000, "status": "reserved"})
    @blp.response(200, ListingSchema, example=REPRICED_EXAMPLE)
    def patch(self, data: dict[str, Any], listing_id: int) -> Listing:
        """Edit, reprice, mark reserved / sold / withdrawn (a sold or withdrawn car takes no leads)."""
        session = db.session()
        listing = get_scoped_or_404(session, current_staff(), "listing", listing_id)
        return service.update_listing(session, current_staff(), listing, data)

    @scoped("listing")
    @blp.response(200, ListingSchema, example=WITHDRAWN_EXAMPLE)
    def delete(self, listing_id: int) -> Listing:
        """Withdraw the listing (kept for the leads that point at it)."""
        session = db.session()
        listing = get_scoped_or_404(session, current_staff(), "listing", listing_id)
        return service.withdraw_listing(session, current_staff(), listing)
