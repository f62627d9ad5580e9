"""Owner API of leads (/api/app/v1/leads, /api/app/v1/me/leads) and vehicles for sale
(/api/app/v1/listings).

What each type of `POST /leads` needs is in that endpoint's description.
"""

from __future__ import annotations

from typing import Any

from backend.customers.service import member_customer
from backend.leads import service
from backend.leads.models import Lead, Listing
from backend.leads.schemas import (
    LeadInSchema,
    LeadListSchema,
    LeadSchema,
    ListingListSchema,
    ListingQuerySchema,
    ListingSchema,
)
from backend.platform.api import Blueprint, current_member, self_only
from backend.platform.db import db
from backend.platform.idempotency import idempotent

blp = Blueprint("owner_leads", __name__, url_prefix="/api/app/v1", audience="owner", description="线索 — leads")

# Examples in the OpenAPI document (the workbench reuses them). Requests may send local times
# (+08:00); answers carry UTC: 2026-12-03T01:00:00+00:00 is 09:00 in Guangzhou.
SCENE = {"address": "广州市天河区天河路385号", "latitude": 23.1322, "longitude": 113.3277}
EXAMPLES = {
    "accident": {
        "summary": "出险报案 with a tow and a repair booking",
        "value": {
            "type": "accident",
            "car_id": 12,
            "location": SCENE,
            "photos": ["https://cdn.example.com/u/7/a1.jpg", "https://cdn.example.com/u/7/a2.jpg"],
            "injuries": False,
            "drivable": False,
            "tow_requested": True,
            "repair_booking_requested": True,
            "preferred_time": "2026-12-03T09:00:00+08:00",
        },
    },
    "used_car": {"summary": "二手车意向", "value": {"type": "used_car", "listing_id": 3, "note": "周末可看车"}},
    "new_car": {
        "summary": "新车意向 by model",
        "value": {"type": "new_car", "brand": "一汽-大众", "series": "ID.4 CROZZ", "budget_fen": 20_000_000},
    },
    "trade_in": {
        "summary": "置换估价",
        "value": {
            "type": "trade_in",
            "car_id": 12,
            "mileage_km": 56000,
            "condition": "左后门小刮蹭",
            "photos": ["https://cdn.example.com/u/7/t1.jpg"],
            "target_series": "ID.4 CROZZ",
        },
    },
    "loan": {
        "summary": "分期贷款",
        "value": {"type": "loan", "listing_id": 3, "amount_fen": 8_000_000, "term_months": 36},
    },
    "insurance": {
        "summary": "续保报价",
        "value": {
            "type": "insurance",
            "car_id": 12,
            "insurance_kind": "renewal",
            "current_insurer": "中国人保",
            "expires_on": "2027-01-15",
        },
    },
}
LEAD_EXAMPLE = {
    "id": 41,
    "type": "accident",
    "status": "new",
    "priority": "high",
    "customer_id": 7,
    "store_id": 3,
    "advisor_id": 15,
    "car_id": 12,
    "listing_id": None,
    "note": None,
    "details": {},
    "photos": ["https://cdn.example.com/u/7/a1.jpg", "https://cdn.example.com/u/7/a2.jpg"],
    "location": SCENE,
    "injuries": False,
    "drivable": False,
    "tow_requested": True,
    "repair_booking_requested": True,
    "preferred_time": "2026-12-03T01:00:00+00:00",
    "contact_due_at": "2026-12-02T08:15:00+00:00",
    "contacted_at": None,
    "appointment_at": None,
    "closed_at": None,
    "lost_reason": None,
    "created_at": "2026-12-02T08:00:00+00:00",
    "updated_at": "2026-12-02T08:00:00+00:00",
}
TRADE_IN_LEAD_EXAMPLE = {
    **LEAD_EXAMPLE,
    "id": 36,
    "type": "trade_in",
    "status": "appointment",
    "priority": "normal",
    "advisor_id": 13,
    "details": {"mileage_km": 56000, "condition": "左后门小刮蹭", "target_series": "ID.4 CROZZ"},
    "photos": ["https://cdn.example.com/u/7/t1.jpg"],
    "location": None,
    "injuries": None,
    "drivable": None,
    "tow_requested": False,
    "repair_booking_requested": False,
    "preferred_time": None,
    "contact_due_at": "2026-11-28T04:00:00+00:00",
    "contacted_at": "2026-11-28T02:30:00+00:00",
    "appointment_at": "2026-12-05T02:00:00+00:00",
    "created_at": "2026-11-28T02:00:00+00:00",
    "updated_at": "2026-11-28T02:40:00+00:00",
}
LISTING_EXAMPLE = {
    "id": 3,
    "store_id": 3,
    "condition": "used",
    "title": "2021款 迈腾 380TSI 豪华型",
    "brand": "一汽-大众",
    "series": "迈腾",
    "model": "380TSI DSG 豪华型",
    "year": 2021,
    "mileage_km": 48000,
    "price_fen": 15_300_000,
    "photos": ["https://cdn.example.com/listings/3/1.jpg", "https://cdn.example.com/listings/3/2.jpg"],
    "description": "一手车，全程4S店保养，无事故无泡水",
    "status": "on_sale",
    "created_at": "2026-11-15T02:00:00+00:00",
    "updated_at": "2026-11-15T02:00:00+00:00",
}
NEW_LISTING_EXAMPLE = {
    "id": 1,
    "store_id": 3,
    "condition": "new",
    "title": "2026款 ID.4 CROZZ 长续航 PRO",
    "brand": "一汽-大众",
    "series": "ID.4 CROZZ",
    "model": "长续航 PRO",
    "year": 2026,
    "mileage_km": 0,
    "price_fen": 19_988_000,
    "photos": ["https://cdn.example.com/listings/1/1.jpg"],
    "description": "现车，可试驾",
    "status": "on_sale",
    "created_at": "2026-11-10T02:00:00+00:00",
    "updated_at": "2026-11-10T02:00:00+00:00",
}


@blp.route("/leads", methods=["POST"])
@self_only
@idempotent
@blp.arguments(LeadInSchema, examples=EXAMPLES)
@blp.response(201, LeadSchema, example=LEAD_EXAMPLE)
def submit_lead(data: dict[str, Any]) -> Lead:
    """Submit an enquiry: new/used car, trade-in, loan, insurance, accident report.

    Routed at once to an advisor of the store, who is notified in WeCom. Send an
    Idempotency-Key: a retried tap answers the same lead.

    `POST /leads` takes one body for every type; what each type needs:

    | type | needs | optional |
    |---|---|---|
    | new_car | `listing_id`, or `brand`/`series` | `budget_fen` |
    | used_car | `listing_id` (on sale or reserved) | `budget_fen` |
    | trade_in | `car_id` (mine), `mileage_km`, `photos` | `condition`, `target_series` |
    | loan | — | `listing_id` or `car_id`, `amount_fen`, `down_payment_fen`, `term_months` |
    | insurance | `car_id`, `insurance_kind` (quote, renewal) | `current_insurer`, `expires_on` |
    | accident | `car_id`, `location`, `photos`, `injuries`, `drivable` | `tow_requested`, `repair_booking_requested` |

    An accident's `location` is an address or coordinates; a repair booking request needs the
    owner's `preferred_time` (recorded on the lead for the advisor, who books it).

    A second submit of the same enquiry (owner, type, car/listing/model) within 30 minutes while
    the first is open is refused: 409 `lead.duplicate`, `errors.lead_id` naming the first. The same
    Idempotency-Key replays the first answer instead.
    """
    return service.submit(db.session(), member_customer(db.session(), current_member()), data)


@blp.route("/me/leads")
@self_only
@blp.response(200, LeadListSchema, example={"items": [LEAD_EXAMPLE, TRADE_IN_LEAD_EXAMPLE]})
def my_leads() -> dict[str, Any]:
    """My enquiries, newest first, with their status."""
    return {"items": service.member_leads(db.session(), current_member().customer_id)}


@blp.route("/me/leads/<int:lead_id>")
@self_only
@blp.response(200, LeadSchema, example=TRADE_IN_LEAD_EXAMPLE)
def my_lead(lead_id: int) -> Lead:
    return service.member_lead(db.session(), current_member().customer_id, lead_id)


@blp.route("/listings")
@self_only
@blp.arguments(ListingQuerySchema, location="query")
@blp.response(200, ListingListSchema, example={"items": [LISTING_EXAMPLE, NEW_LISTING_EXAMPLE]})
def listings(args: dict[str, Any]) -> dict[str, Any]:
    """Vehicles for sale (on sale or reserved), newest first."""
    return {
        "items": service.listings_for_owner(
            db.session(), store_id=args.get("store_id"), condition=args.get("condition")
        )
    }


@blp.route("/listings/<int:listing_id>")
@self_only
@blp.response(200, ListingSchema, example=LISTING_EXAMPLE)
def listing(listing_id: int) -> Listing:
    """One vehicle for sale; a sold or withdrawn one answers 404."""
    return service.listing_for_owner(db.session(), listing_id)
