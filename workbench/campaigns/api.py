"""Workbench API of points campaigns and earning rules (/api/workbench/v1/campaigns,
/api/workbench/v1/earning-rules), for marketing staff and managers: rules with caps and
budgets, campaigns through draft → scheduled → running → ended, a dry run on current data, and
the results."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import select

from backend.campaigns import service
from backend.campaigns.models import Campaign, CampaignState, EarningRule
from backend.campaigns.schemas import (
    CampaignInSchema,
    CampaignListQuerySchema,
    CampaignListSchema,
    CampaignPatchSchema,
    CampaignSchema,
    DryRunInSchema,
    DryRunSchema,
    ResultsSchema,
    RuleInSchema,
    RuleListQuerySchema,
    RuleListSchema,
    RulePatchSchema,
    RuleSchema,
    TransitionInSchema,
)
from backend.org.scope import get_scoped_or_404, scope_query
from backend.platform.api import Blueprint, current_staff, role_required, scoped
from backend.platform.db import db
from backend.platform.idempotency import idempotent
from workbench.scoping import scope_first

blp = Blueprint(
    "wb_campaigns", __name__, url_prefix="/api/workbench/v1", audience="staff", description="营销活动 — campaigns"
)

MANAGERS = ("store_manager", "region_manager", "division_manager", "group_admin", "marketing")


def campaign_view(campaign: Campaign, links: dict[str, list[int]] | None = None) -> dict[str, Any]:
    view = {c: getattr(campaign, c) for c in CampaignSchema().fields if hasattr(campaign, c)}
    view["links"] = links if links is not None else service.links_of(db.session(), campaign.id)
    return view


# ---------------------------------------------------------------------------------------------
# Earning rules


@blp.route("/earning-rules")
class Rules(MethodView):
    @scoped("earning_rule")
    @blp.arguments(RuleListQuerySchema, location="query")
    @blp.response(200, RuleListSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Rules owned by units in my scope, in evaluation order (priority, then id)."""
        stmt = scope_query(select(EarningRule), current_staff(), "earning_rule")
        if "campaign_id" in query:
            stmt = stmt.where(EarningRule.campaign_id == query["campaign_id"])
        if query.get("standalone"):
            stmt = stmt.where(EarningRule.campaign_id.is_(None))
        stmt = stmt.order_by(EarningRule.priority.desc(), EarningRule.id).limit(500)
        return {"items": db.session().scalars(stmt).all()}

    @scoped("earning_rule")
    @role_required(*MANAGERS)
    @idempotent
    @blp.arguments(RuleInSchema)
    @blp.response(201, RuleSchema)
    def post(self, data: dict[str, Any]) -> EarningRule:
        """Create a rule, standing alone or in a draft/scheduled campaign (send an Idempotency-Key)."""
        return service.create_rule(db.session(), current_staff(), data)


@blp.route("/earning-rules/<int:rule_id>")
class RuleItem(MethodView):
    @scoped("earning_rule")
    @blp.response(200, RuleSchema)
    def get(self, rule_id: int) -> EarningRule:
        return get_scoped_or_404(db.session(), current_staff(), "earning_rule", rule_id)

    @scoped("earning_rule")
    @scope_first("earning_rule", "rule_id")
    @role_required(*MANAGERS)
    @blp.arguments(RulePatchSchema)
    @blp.response(200, RuleSchema)
    def patch(self, data: dict[str, Any], rule_id: int) -> EarningRule:
        """Change a rule (a rule of a running or ended campaign: only `active`)."""
        session = db.session()
        rule = get_scoped_or_404(session, current_staff(), "earning_rule", rule_id)
        return service.update_rule(session, current_staff(), rule, data)


# ---------------------------------------------------------------------------------------------
# Campaigns


@blp.route("/campaigns")
class Campaigns(MethodView):
    @scoped("campaign")
    @blp.arguments(CampaignListQuerySchema, location="query")
    @blp.response(200, CampaignListSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        stmt = scope_query(select(Campaign), current_staff(), "campaign")
        if "state" in query:
            stmt = stmt.where(Campaign.state == CampaignState(query["state"]))
        rows = db.session().scalars(stmt.order_by(Campaign.id.desc()).limit(200)).all()
        links = service.links_of_many(db.session(), [c.id for c in rows])
        return {"items": [campaign_view(c, links[c.id]) for c in rows]}

    @scoped("campaign")
    @role_required(*MANAGERS)
    @idempotent
    @blp.arguments(CampaignInSchema)
    @blp.response(201, CampaignSchema)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a draft campaign (send an Idempotency-Key)."""
        return campaign_view(service.create_campaign(db.session(), current_staff(), data))


@blp.route("/campaigns/<int:campaign_id>")
class CampaignItem(MethodView):
    @scoped("campaign")
    @blp.response(200, CampaignSchema)
    def get(self, campaign_id: int) -> dict[str, Any]:
        return campaign_view(get_scoped_or_404(db.session(), current_staff(), "campaign", campaign_id))

    @scoped("campaign")
    @scope_first("campaign", "campaign_id")
    @role_required(*MANAGERS)
    @blp.arguments(CampaignPatchSchema)
    @blp.response(200, CampaignSchema)
    def patch(self, data: dict[str, Any], campaign_id: int) -> dict[str, Any]:
        """Change a draft or scheduled campaign."""
        session = db.session()
        campaign = get_scoped_or_404(session, current_staff(), "campaign", campaign_id)
        return campaign_view(service.update_campaign(session, current_staff(), campaign, data))


@blp.route("/campaigns/<int:campaign_id>/schedule", methods=["POST"])
@scoped("campaign")
@scope_first("campaign", "campaign_id")
@role_required(*MANAGERS)
@blp.arguments(TransitionInSchema)
@blp.response(200, CampaignSchema)
def schedule(_body: dict[str, Any], campaign_id: int) -> dict[str, Any]:
    """draft → scheduled (running at once if its period has begun)."""
    session = db.session()
    campaign = get_scoped_or_404(session, current_staff(), "campaign", campaign_id)
    return campaign_view(service.schedule(session, current_staff(), campaign))


@blp.route("/campaigns/<int:campaign_id>/end", methods=["POST"])
@scoped("campaign")
@scope_first("campaign", "campaign_id")
@role_required(*MANAGERS)
@blp.arguments(TransitionInSchema)
@blp.response(200, CampaignSchema)
def end(_body: dict[str, Any], campaign_id: int) -> dict[str, Any]:
    """Stop a scheduled or running campaign now."""
    session = db.session()
    campaign = get_scoped_or_404(session, current_staff(), "campaign", campaign_id)
    return campaign_view(service.end(session, current_staff(), campaign))


@blp.route("/campaigns/<int:campaign_id>/dry-run", methods=["POST"])
@scoped("campaign")
@scope_first("campaign", "campaign_id")
@blp.arguments(DryRunInSchema)
@blp.response(200, DryRunSchema)
def dry_run(data: dict[str, Any], campaign_id: int) -> dict[str, Any]:
    """Estimated reach and points cost on current data (writes nothing)."""
    session = db.session()
    campaign = get_scoped_or_404(session, current_staff(), "campaign", campaign_id)
    return service.dry_run(session, campaign, lookback_days=data["lookback_days"])


@blp.route("/campaigns/<int:campaign_id>/results")
@scoped("campaign")
@blp.response(200, ResultsSchema)
def results(campaign_id: int) -> dict[str, Any]:
    session = db.session()
    campaign = get_scoped_or_404(session, current_staff(), "campaign", campaign_id)
    return service.results(session, campaign)
