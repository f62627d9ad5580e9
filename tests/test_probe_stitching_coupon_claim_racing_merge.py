"""Probe: a coupon claim of a member whom staff are merging into one who holds that coupon."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import Customer
from backend.platform.db import db, utcnow
from tests.threads import attempt, held_merge

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def test_claim_racing_a_merge_keeps_the_survivors_per_member_limit(app: Any) -> None:
    from backend.offers.models import Coupon, CouponKind, CouponTemplate
    from backend.offers.service import claim

    with app.app_context():
        s = db.session()
        a, b = Customer(name="甲"), Customer(name="乙")
        now = utcnow()
        template = CouponTemplate(
            name="洗车券",
            kind=CouponKind.VOUCHER,
            service_type="wash",
            stock=10,
            per_member_limit=1,
            claim_starts_at=now - timedelta(hours=1),
            claim_ends_at=now + timedelta(days=1),
            use_days=30,
        )
        s.add_all([a, b, template])
        s.flush()
        claim(s, b, template.id)
        s.commit()
        sid, tid, template_id = a.id, b.id, template.id
        db.session.remove()
    with held_merge(app, sid, tid):
        # the member's request resolved them before the merge committed
        outcome = attempt(app, lambda s: claim(s, s.get(Customer, sid), template_id))
    with app.app_context():
        s = db.session()
        holders = s.scalars(select(Coupon.customer_id)).all()
        db.session.remove()
    assert sid not in holders, holders
    assert (outcome, holders) == ("coupon.limit_reached", [tid])
