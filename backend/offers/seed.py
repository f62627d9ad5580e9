"""Demo coupons: live offers of every kind (group-wide and a store's), an exchange code, automatic
birthday and first-car templates, the mall's coupon item wired to a template, and for the first
demo owners coupons that are unused, used at the store and expired.

Called by `backend.seed.seed_demo` after the customers and the mall exist. Safe to run again:
templates are found by name and coupons by their issue key (`seed:...`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.customers.models import CustomerIdentity, IdentityKind
from backend.offers.models import AutoIssue, CouponKind, CouponStatus, CouponTemplate, CouponWriteOff
from backend.offers.service import issue_once
from backend.points.models import ItemKind, MallItem

MALL_COUPON = "¥50 保养代金券"


def _templates(store_id: int | None) -> list[dict[str, Any]]:
    return [
        {"name": "保养满500减100", "kind": CouponKind.THRESHOLD, "value_fen": 10000, "threshold_fen": 50000}
        | {"stock": 1000, "use_days": 30},
        {"name": "精品附件85折(最高减300)", "kind": CouponKind.PERCENT, "percent_off": 15, "cap_fen": 30000}
        | {"stock": 500, "use_days": 14, "business_types": ["accessories_order", "mall_order"]},
        {"name": "免费精洗一次", "kind": CouponKind.VOUCHER, "service_type": "wash", "store_id": store_id}
        | {"stock": 200, "use_days": 30},
        {"name": "到店礼: 车载香薰", "kind": CouponKind.GIFT, "gift_name": "车载香薰", "store_id": store_id}
        | {"stock": 100, "use_days": 30, "new_members_only": True},
        {"name": "春季焕新立减200", "kind": CouponKind.FIXED, "value_fen": 20000, "exchange_code": "SPRING2027"}
        | {"stock": 300, "use_days": 30},
        {"name": "生日礼: 基础保养工时免费", "kind": CouponKind.VOUCHER, "service_type": "basic_maintenance"}
        | {"stock": 10_000, "use_days": 30, "per_member_limit": 5, "auto_issue_on": AutoIssue.BIRTHDAY},
        {"name": "绑车礼: 立减50", "kind": CouponKind.FIXED, "value_fen": 5000, "auto_issue_on": AutoIssue.CAR_BOUND}
        | {"stock": 10_000, "use_days": 30},
        {"name": MALL_COUPON, "kind": CouponKind.FIXED, "value_fen": 5000, "stock": 100, "use_days": 90},
    ]


def seed_offers(session: Session, openids: list[str], store_id: int | None, staff_id: int | None, now: datetime) -> str:
    by_name = {t.name: t for t in session.scalars(select(CouponTemplate))}
    made = 0
    for spec in _templates(store_id):
        if spec["name"] in by_name:
            continue
        template = CouponTemplate(
            **spec, claim_starts_at=now - timedelta(days=3), claim_ends_at=now + timedelta(days=60)
        )
        session.add(template)
        session.flush()
        by_name[template.name] = template
        made += 1
    item = session.scalars(
        select(MallItem).where(MallItem.name == MALL_COUPON, MallItem.kind == ItemKind.COUPON)
    ).first()
    if item is not None and item.coupon_template_id is None:
        item.coupon_template_id = by_name[MALL_COUPON].id

    customer_ids = session.scalars(
        select(CustomerIdentity.customer_id).where(
            CustomerIdentity.kind == IdentityKind.OPENID, CustomerIdentity.value.in_(openids)
        )
    ).all()
    wash, threshold = by_name["免费精洗一次"], by_name["保养满500减100"]
    coupons = 0
    for i, customer_id in enumerate(sorted(customer_ids)):
        coupon, claimed_now = issue_once(session, threshold, customer_id, "claim", f"seed:claim:{customer_id}", now)
        coupons += claimed_now
        if i % 3 == 1 and store_id is not None and staff_id is not None:  # a wash used at the store
            used, new = issue_once(session, wash, customer_id, "claim", f"seed:wash:{customer_id}", now)
            if new:
                used.status, used.used_at = CouponStatus.USED, now - timedelta(days=1)
                session.add(
                    CouponWriteOff(
                        coupon_id=used.id,
                        nonce=f"seed-{used.id}",
                        store_id=store_id,
                        staff_id=staff_id,
                        used_at=used.used_at,
                    )
                )
                coupons += 1
        if i % 3 == 2 and claimed_now:  # this one ran out unused
            coupon.valid_until = now - timedelta(days=1)
            coupon.status = CouponStatus.EXPIRED
    session.flush()
    return f"offers: {made} templates, {coupons} coupons"
