"""Demo campaigns data: a segment, two standing earning rules (registration, car bound) and a
running campaign with a budget — double points on service spend, a review bonus capped per
member per day — plus a few grants so that its results are not empty.

Called by `backend.seed.seed_demo` after the customers and the loyalty data. Safe to run again:
everything is found by name first, and the grants are idempotent per rule and ref. It all goes
through the services (as the marketing demo user), so the points ledger, budgets and
touchpoints agree as they would in production.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.campaigns import service
from backend.campaigns.models import Campaign, EarningRule
from backend.org.models import Staff
from backend.org.service import load_staff_actor
from backend.segments import service as segments
from backend.segments.models import Segment

DEMO_MARKETING = "demo-marketing-01"
CAMPAIGN_NAME = "冬季保养季·积分翻倍"
SEGMENT_NAME = "有车的金卡及以上会员"


def _demo_owner_ids(session: Session, n: int) -> list[int]:
    from backend.customers.models import CustomerIdentity, IdentityKind

    stmt = (
        select(CustomerIdentity.customer_id)
        .where(CustomerIdentity.kind == IdentityKind.OPENID, CustomerIdentity.value.startswith("demo-owner-openid-"))
        .order_by(CustomerIdentity.value)
        .limit(n)
    )
    return list(session.scalars(stmt))


def seed_campaigns(session: Session, now: datetime) -> str:
    staff_id = session.scalar(select(Staff.id).where(Staff.wecom_userid == DEMO_MARKETING))
    if staff_id is None:
        return "campaigns: no marketing demo user, nothing seeded"
    actor = load_staff_actor(session, staff_id)
    segment = session.scalars(select(Segment).where(Segment.name == SEGMENT_NAME)).first()
    if segment is None:
        segment = segments.create(
            session,
            actor,
            {"name": SEGMENT_NAME, "filters": {"tiers": ["gold", "platinum"], "has_car": True}},
        )
    for name, trigger, points, cap in (
        ("新会员注册礼", "registration", 100, None),
        ("绑定爱车送积分", "car_bound", 50, 150),
    ):
        if session.scalar(select(EarningRule.id).where(EarningRule.name == name)) is None:
            service.create_rule(
                session,
                actor,
                {"name": name, "kind": "action", "trigger": trigger, "points": points, "cap_total": cap,
                 "valid_from": now - timedelta(days=365)},
            )  # fmt: skip
    campaign = session.scalars(select(Campaign).where(Campaign.name == CAMPAIGN_NAME)).first()
    if campaign is None:
        campaign = service.create_campaign(
            session,
            actor,
            {
                "name": CAMPAIGN_NAME,
                "goal": "冬季保养到店率提升 10%",
                "starts_at": now - timedelta(days=3),
                "ends_at": now + timedelta(days=27),
                "budget_points": 50_000,
            },
        )
        window = {"valid_from": now - timedelta(days=3)}
        service.create_rule(
            session,
            actor,
            {"name": "保养消费每元加赠1分", "kind": "spend", "trigger": "spend", "points_per_yuan": 1,
             "business_lines": ["service"], "campaign_id": campaign.id, "priority": 10, **window},
        )  # fmt: skip
        service.create_rule(
            session,
            actor,
            {"name": "金卡会员消费双倍", "kind": "multiplier", "trigger": "spend", "multiplier_pct": 200,
             "target_segment_id": segment.id, "campaign_id": campaign.id, **window},
        )  # fmt: skip
        service.create_rule(
            session,
            actor,
            {"name": "保养评价奖励", "kind": "action", "trigger": "review", "points": 30, "cap_day": 30,
             "campaign_id": campaign.id, **window},
        )  # fmt: skip
        service.schedule(session, actor, campaign, now=now)
    granted = 0
    for cid in _demo_owner_ids(session, 20):
        outcomes = service.on_action(
            session, cid, "review", ref=f"seed:review:{cid}", occurred_at=now - timedelta(days=1)
        )
        granted += sum(1 for o in outcomes if o.status == "granted")
    return f"campaign {campaign.name!r} ({campaign.state.value}), {granted} new grants"
