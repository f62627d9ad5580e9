"""Out-of-scope lead objects for tests/test_scope_enumeration.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any


def foreign_lead_ids(session: Any, store: Any, customer: Any, advisor: Any) -> dict[str, int]:
    """A lead and a withdrawn listing of another division's store (404 to the store-0 manager;
    the lead is another owner's and the listing is not for sale, so 404 to the owner too)."""
    from backend.leads.models import Lead, LeadType, Listing, ListingCondition, ListingStatus
    from backend.platform.db import utcnow

    listing = Listing(
        store_id=store.id,
        condition=ListingCondition.USED,
        title="scope",
        brand="scope",
        price_fen=1,
        status=ListingStatus.WITHDRAWN,
    )
    session.add(listing)
    session.flush()
    lead = Lead(
        customer_id=customer.id,
        store_id=store.id,
        type=LeadType.NEW_CAR,
        advisor_id=advisor.id,
        routed_role="sales_advisor",
        routed_by="round_robin",
        subject="model:scope",
        contact_due_at=utcnow() + timedelta(hours=1),
    )
    session.add(lead)
    session.flush()
    return {"lead_id": lead.id, "listing_id": listing.id}
