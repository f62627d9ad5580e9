"""Shared helpers for the campaigns and segments tests (and the scope-enumeration world)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any


def foreign_campaign_ids(session: Any, store: Any) -> dict[str, int]:
    """Objects owned by `store` (outside store 0's scope), one per path parameter."""
    from backend.campaigns.models import Campaign, EarningRule, RuleKind
    from backend.platform.db import utcnow
    from backend.segments.models import Segment

    now = utcnow()
    segment = Segment(name="外店分群", owner_unit_id=store.id, filters={})
    campaign = Campaign(name="外店活动", owner_unit_id=store.id, starts_at=now, ends_at=now + timedelta(days=1))
    session.add_all([segment, campaign])
    session.flush()
    rule = EarningRule(
        name="外店规则",
        owner_unit_id=store.id,
        campaign_id=campaign.id,
        kind=RuleKind.ACTION,
        trigger="review",
        points=1,
        valid_from=now,
    )
    session.add(rule)
    session.flush()
    return {"segment_id": segment.id, "campaign_id": campaign.id, "rule_id": rule.id}
