"""Customers in the workbench: list, 360 view, phone reveal (audited), timeline, merges."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from backend.customers import service
from backend.customers.models import Car, Customer
from backend.customers.schemas import (
    CustomerDetailSchema,
    CustomerListQuerySchema,
    CustomerPageSchema,
    CustomerSummarySchema,
    MergeInSchema,
    MergeSchema,
    PhoneRevealSchema,
    PhoneSearchSchema,
    TextRevealSchema,
)
from backend.org.scope import ensure_in_scope, get_scoped_or_404, scope_query
from backend.platform.api import Blueprint, current_staff, role_required, scoped
from backend.platform.db import db
from backend.touchpoints.schemas import TimelinePageSchema, TimelineQuerySchema
from backend.touchpoints.service import TimelineFilter, profile_of, timeline
from backend.wecom import service as wecom_service

blp = Blueprint(
    "wb_customers", __name__, url_prefix="/api/workbench/v1", audience="staff", description="客户 — customers"
)


def _summary(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "name": customer.name,
        "gender": customer.gender,
        "phone": service.masked_phone(customer),
        "home_store_id": customer.home_store_id,
        "lifecycle_stage": customer.lifecycle_stage,
        "tier": customer.tier,
        "acquisition_channel": customer.acquisition_channel,
        "advisors": [{"role": a.role, "staff_id": a.staff_id} for a in customer.advisors],
    }


@blp.route("/customers")
@scoped("customer")
@blp.arguments(CustomerListQuerySchema, location="query")
@blp.response(200, CustomerPageSchema)
def list_customers(args: dict[str, Any]) -> dict[str, Any]:
    """Customers in my scope, newest first."""
    session = db.session()
    stmt = scope_query(select(Customer).options(selectinload(Customer.advisors)), current_staff(), "customer")
    if args.get("q"):
        stmt = stmt.where(Customer.name.contains(args["q"], autoescape=True))
    if args.get("store_id"):
        stmt = stmt.where(Customer.home_store_id == args["store_id"])
    if args.get("stage"):
        stmt = stmt.where(Customer.lifecycle_stage == args["stage"])
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    page, size = args["page"], args["page_size"]
    items = session.scalars(stmt.order_by(Customer.id.desc()).limit(size).offset((page - 1) * size)).all()
    phone_vault = service.vault()
    return {
        "items": [{**_summary(c), "phone": service.masked_phone(c, phone_vault)} for c in items],
        "total": total,
        "page": page,
        "page_size": size,
    }


@blp.route("/customers/search-by-phone", methods=["POST"])
@scoped("customer")
@blp.arguments(PhoneSearchSchema)
@blp.response(200, CustomerSummarySchema(many=True))
def search_by_phone(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Exact phone lookup (blind index) within my scope: the customers whose own number it is
    and those on whose WeCom contact an advisor noted it. The number travels in the body, never
    in a URL, and each search is audited: a search confirms a full number, so it needs the same
    right as revealing one."""
    session = db.session()
    actor = current_staff()
    phone_vault = service.vault()
    customers = service.search_by_phone(session, actor, phone_vault, data["phone"])
    customers += wecom_service.customers_noted_with_phone(session, phone_vault.blind_index(data["phone"]))
    stmt = scope_query(select(Customer).options(selectinload(Customer.advisors)), actor, "customer")
    found = session.scalars(stmt.where(Customer.id.in_([c for c in customers]))).all() if customers else []
    return [_summary(c) for c in found]


@blp.route("/customers/<int:customer_id>")
@scoped("customer")
@blp.response(200, CustomerDetailSchema)
def get_customer(customer_id: int) -> dict[str, Any]:
    """Customer 360: profile, cars, linked identities, the touchpoint projection."""
    session = db.session()
    customer = get_scoped_or_404(session, current_staff(), "customer", customer_id)
    cars = session.scalars(
        select(Car).where(Car.customer_id == customer.id, Car.removed_at.is_(None)).order_by(Car.id)
    ).all()
    return {
        **_summary(customer),
        "birthday": customer.birthday,
        "cars": cars,
        "identities": sorted({i.kind.value for i in customer.identities}),
        "profile": profile_of(session, customer.id),
        "wecom_relations": wecom_service.relations_view(session, customer.id),
    }


@blp.route("/customers/<int:customer_id>/phone")
@scoped("customer")
@blp.response(200, PhoneRevealSchema)
def reveal_phone(customer_id: int) -> dict[str, Any]:
    """The full phone number, for the customer's advisors and managers; the access is audited."""
    session = db.session()
    actor = current_staff()
    customer = get_scoped_or_404(session, actor, "customer", customer_id)
    return {"phone": service.reveal_phone(session, actor, customer, service.vault())}


# Free text with phone numbers in it (stored and shown masked, see backend/platform/pii): the
# text as typed, for the staff who may call the customer, audited. One service for every such
# column; the routes only name the object.
TEXT_REVEAL_EXAMPLE = {"text": "我的电话 138 1234 5678，下午回我"}


def _revealed_text(kind: str, object_id: int) -> dict[str, Any]:
    text = service.reveal_sealed_text(db.session(), current_staff(), kind, object_id, service.vault())
    return {"text": text}


@blp.route("/consult/messages/<int:message_id>/text")
@scoped("consult_message")
@blp.response(200, TextRevealSchema, example=TEXT_REVEAL_EXAMPLE)
def reveal_message_text(message_id: int) -> dict[str, Any]:
    """A consultation message as typed (numbers in full); the access is audited."""
    return _revealed_text("consult_message.text", message_id)


@blp.route("/leads/<int:lead_id>/note")
@scoped("lead")
@blp.response(200, TextRevealSchema, example=TEXT_REVEAL_EXAMPLE)
def reveal_lead_note(lead_id: int) -> dict[str, Any]:
    """A lead's note as the owner typed it (numbers in full); the access is audited."""
    return _revealed_text("lead.note", lead_id)


@blp.route("/bookings/<int:booking_id>/note")
@scoped("booking")
@blp.response(200, TextRevealSchema, example=TEXT_REVEAL_EXAMPLE)
def reveal_booking_note(booking_id: int) -> dict[str, Any]:
    """A booking's remark as the owner typed it (numbers in full); the access is audited."""
    return _revealed_text("booking.note", booking_id)


@blp.route("/bookings/<int:booking_id>/cancel-reason")
@scoped("booking")
@blp.response(200, TextRevealSchema, example=TEXT_REVEAL_EXAMPLE)
def reveal_booking_cancel_reason(booking_id: int) -> dict[str, Any]:
    """Why a booking was cancelled, as typed (numbers in full); the access is audited."""
    return _revealed_text("booking.cancel_reason", booking_id)


@blp.route("/points/mall/redemptions/<int:redemption_id>/cancel-reason")
@scoped("mall_order")
@blp.response(200, TextRevealSchema, example=TEXT_REVEAL_EXAMPLE)
def reveal_redemption_cancel_reason(redemption_id: int) -> dict[str, Any]:
    """Why a redemption was cancelled, as typed (numbers in full); the access is audited."""
    return _revealed_text("mall_order.cancel_reason", redemption_id)


@blp.route("/customers/<int:customer_id>/timeline")
@scoped("customer")
@blp.arguments(TimelineQuerySchema, location="query")
@blp.response(200, TimelinePageSchema)
def customer_timeline(args: dict[str, Any], customer_id: int) -> dict[str, Any]:
    """Every touchpoint of the customer, newest first; filter by kind, channel, advisor, time."""
    session = db.session()
    ensure_in_scope(session, current_staff(), "customer", customer_id)
    flt = TimelineFilter(
        kinds=frozenset(k.value for k in args["kind"]) if args.get("kind") else None,
        channels=frozenset(c.value for c in args["channel"]) if args.get("channel") else None,
        advisor_id=args.get("advisor_id"),
        since=args.get("since"),
        until=args.get("until"),
    )
    items, next_cursor = timeline(session, customer_id, flt, limit=args["limit"], cursor=args.get("cursor"))
    return {"items": items, "next_cursor": next_cursor}


@blp.route("/customer-merges", methods=["POST"])
@scoped("customer")
@role_required("store_manager", "region_manager", "division_manager", "group_admin")
@blp.arguments(MergeInSchema)
@blp.response(201, MergeSchema)
def merge(data: dict[str, Any]) -> Any:
    """Merge two records of the same person (managers); reversible."""
    session = db.session()
    actor = current_staff()
    # Both customers must be in the actor's scope.
    get_scoped_or_404(session, actor, "customer", data["source_id"])
    get_scoped_or_404(session, actor, "customer", data["target_id"])
    return service.merge_customers(session, actor, data["source_id"], data["target_id"], data["reason"])


@blp.route("/customer-merges/<int:merge_id>/reverse", methods=["POST"])
@scoped("customer_merge")
@role_required("store_manager", "region_manager", "division_manager", "group_admin")
@blp.response(200, MergeSchema)
def reverse(merge_id: int) -> Any:
    """Undo a merge: every moved row goes back."""
    session = db.session()
    actor = current_staff()
    merge_row = get_scoped_or_404(session, actor, "customer_merge", merge_id)
    return service.reverse_merge(session, actor, merge_row)
