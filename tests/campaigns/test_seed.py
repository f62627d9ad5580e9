"""The campaigns demo data: a running campaign with rules, a segment and grants; idempotent."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.campaigns.models import Campaign, CampaignGrant, CampaignState, EarningRule
from backend.seed import seed_demo

pytestmark = [pytest.mark.usefixtures("app_ctx")]


def test_seed_has_a_running_campaign_with_results_and_is_idempotent(db_session: Any, client: Any) -> None:
    summary = seed_demo(customers=25)
    assert "campaign '冬季保养季·积分翻倍' (running), 20 new grants" in summary
    campaign = db_session.scalars(select(Campaign)).one()
    assert campaign.state == CampaignState.RUNNING and campaign.budget_used == 20 * 30
    assert db_session.scalar(select(func.count()).select_from(EarningRule)) == 5
    grants = db_session.scalar(select(func.count()).select_from(CampaignGrant))
    again = seed_demo(customers=25)
    assert "0 new grants" in again
    assert db_session.scalar(select(func.count()).select_from(CampaignGrant)) == grants
    assert db_session.scalar(select(func.count()).select_from(Campaign)) == 1
    from backend.points import service

    assert service.check_drift(db_session) == []
