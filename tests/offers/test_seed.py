"""The demo coupons: live offers of every kind, coupons in every state, the mall's coupon item
redeemable; a second seed run adds nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.offers.models import Coupon, CouponTemplate, CouponWriteOff
from backend.points.models import ItemKind, MallItem
from backend.seed import seed_demo

pytestmark = [pytest.mark.usefixtures("app_ctx")]


def test_seed_makes_live_offers_and_coupons_in_every_state_once(db_session: Any, client: Any) -> None:
    report = seed_demo(customers=12)
    assert "offers: 8 templates" in report
    kinds = {t.kind.value for t in db_session.scalars(select(CouponTemplate))}
    assert kinds == {"fixed", "threshold", "percent", "voucher", "gift"}
    statuses = {c.status.value for c in db_session.scalars(select(Coupon))}
    assert statuses == {"unused", "used", "expired"}
    used = db_session.scalar(select(func.count()).select_from(Coupon).where(Coupon.status == "used"))
    assert used == db_session.scalar(select(func.count()).select_from(CouponWriteOff)) > 0
    item = db_session.scalars(select(MallItem).where(MallItem.kind == ItemKind.COUPON)).one()
    assert item.coupon_template_id is not None

    counts = (
        db_session.scalar(select(func.count()).select_from(CouponTemplate)),
        db_session.scalar(select(func.count()).select_from(Coupon)),
    )
    again = seed_demo(customers=12)
    assert "offers: 0 templates, 0 coupons" in again
    assert counts == (
        db_session.scalar(select(func.count()).select_from(CouponTemplate)),
        db_session.scalar(select(func.count()).select_from(Coupon)),
    )
