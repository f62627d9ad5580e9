"""Out-of-scope coupon objects for tests/test_scope_enumeration.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any


def foreign_offer_ids(session: Any, store: Any, customer: Any, staff: Any) -> dict[str, int]:
    """A template of another division's store, taken off (404 to the store-0 manager, and not
    claimable, so 404 to the owner too), another owner's coupon and its write-off there."""
    from backend.offers.models import Coupon, CouponKind, CouponStatus, CouponTemplate, CouponWriteOff
    from backend.platform.db import utcnow

    now = utcnow()
    template = CouponTemplate(
        name="scope",
        kind=CouponKind.FIXED,
        value_fen=100,
        store_id=store.id,
        stock=1,
        issued=1,
        claim_starts_at=now - timedelta(days=1),
        claim_ends_at=now + timedelta(days=1),
        use_days=1,
        active=False,
    )
    session.add(template)
    session.flush()
    coupon = Coupon(
        template_id=template.id,
        customer_id=customer.id,
        code="900000000001",
        status=CouponStatus.USED,
        source="claim",
        issue_key="scope:1",
        valid_from=now,
        valid_until=now + timedelta(days=1),
    )
    session.add(coupon)
    session.flush()
    row = CouponWriteOff(coupon_id=coupon.id, nonce="scope-nonce", store_id=store.id, staff_id=staff.id, used_at=now)
    session.add(row)
    session.flush()
    return {"coupon_template_id": template.id, "offer_id": template.id, "coupon_id": coupon.id, "write_off_id": row.id}
