"""Schemas of earning rules and campaigns (workbench). Value checks that have their own error
codes (windows, points, caps, triggers) are made by the service, not here."""

from __future__ import annotations

from marshmallow import fields, validate

from backend.campaigns.models import CampaignState, RuleKind
from backend.platform.api import OutputSchema, Schema
from backend.touchpoints.schemas import SANE_TIME

_INT = {"strict": True, "allow_none": True}


class _RuleFields(Schema):
    name = fields.String(validate=validate.Length(min=1, max=64))
    trigger = fields.String(
        validate=validate.Length(min=1, max=32),
        metadata={"description": "spend | an action (registration, car_bound, ...) | * (multipliers)"},
    )
    points = fields.Integer(**_INT, metadata={"description": "action rules: fixed points"})
    points_per_yuan = fields.Integer(**_INT, metadata={"description": "spend rules"})
    rounding = fields.String(metadata={"description": "spend: floor | round | ceil"})
    business_lines = fields.List(fields.String(), metadata={"description": "service, parts, accessories, other"})
    exclude_business_types = fields.List(fields.String(validate=validate.Length(max=32)))
    multiplier_pct = fields.Integer(**_INT, metadata={"description": "multipliers: 200 = double"})
    priority = fields.Integer(strict=True, validate=validate.Range(min=-10_000, max=10_000))
    stop_processing = fields.Boolean()
    valid_from = fields.AwareDateTime(validate=SANE_TIME)
    valid_to = fields.AwareDateTime(allow_none=True, validate=SANE_TIME)
    store_ids = fields.List(fields.Integer(strict=True))
    target_tiers = fields.List(fields.String())
    target_segment_id = fields.Integer(**_INT)
    cap_day = fields.Integer(**_INT)
    cap_week = fields.Integer(**_INT)
    cap_month = fields.Integer(**_INT)
    cap_total = fields.Integer(**_INT)
    budget_points = fields.Integer(**_INT)
    active = fields.Boolean()


class RuleInSchema(_RuleFields):
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in RuleKind]))
    campaign_id = fields.Integer(strict=True, allow_none=True)
    owner_unit_id = fields.Integer(strict=True, allow_none=True, metadata={"description": "default: my unit"})
    valid_from = fields.AwareDateTime(required=True, validate=SANE_TIME)


class RulePatchSchema(_RuleFields):
    pass


class RuleSchema(OutputSchema):
    id = fields.Integer()
    name = fields.String()
    campaign_id = fields.Integer(allow_none=True)
    owner_unit_id = fields.Integer()
    kind = fields.Enum(RuleKind, by_value=True)
    trigger = fields.String()
    points = fields.Integer(allow_none=True)
    points_per_yuan = fields.Integer(allow_none=True)
    rounding = fields.String()
    business_lines = fields.List(fields.String())
    exclude_business_types = fields.List(fields.String())
    multiplier_pct = fields.Integer(allow_none=True)
    priority = fields.Integer()
    stop_processing = fields.Boolean()
    valid_from = fields.DateTime()
    valid_to = fields.DateTime(allow_none=True)
    store_ids = fields.List(fields.Integer())
    target_tiers = fields.List(fields.String())
    target_segment_id = fields.Integer(allow_none=True)
    cap_day = fields.Integer(allow_none=True)
    cap_week = fields.Integer(allow_none=True)
    cap_month = fields.Integer(allow_none=True)
    cap_total = fields.Integer(allow_none=True)
    budget_points = fields.Integer(allow_none=True)
    budget_used = fields.Integer()
    budget_exhausted_at = fields.DateTime(allow_none=True)
    active = fields.Boolean()
    created_at = fields.DateTime()


class RuleListSchema(OutputSchema):
    items = fields.List(fields.Nested(RuleSchema))


class RuleListQuerySchema(Schema):
    campaign_id = fields.Integer()
    standalone = fields.Boolean(metadata={"description": "only rules outside any campaign"})


_LINKS = fields.Dict(
    keys=fields.String(),
    values=fields.List(fields.Integer(strict=True)),
    metadata={"description": '{"coupon_template": [ids], "event": [ids]}'},
)


class CampaignPatchSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=64))
    goal = fields.String(allow_none=True, validate=validate.Length(max=255))
    starts_at = fields.AwareDateTime(validate=SANE_TIME)
    ends_at = fields.AwareDateTime(validate=SANE_TIME)
    budget_points = fields.Integer(**_INT)
    segment_id = fields.Integer(**_INT)
    wecom_channel_id = fields.Integer(**_INT)
    links = _LINKS


class CampaignInSchema(CampaignPatchSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    owner_unit_id = fields.Integer(strict=True, allow_none=True, metadata={"description": "default: my unit"})
    starts_at = fields.AwareDateTime(required=True, validate=SANE_TIME)
    ends_at = fields.AwareDateTime(required=True, validate=SANE_TIME)


class CampaignSchema(OutputSchema):
    id = fields.Integer()
    name = fields.String()
    goal = fields.String(allow_none=True)
    owner_unit_id = fields.Integer()
    state = fields.Enum(CampaignState, by_value=True)
    starts_at = fields.DateTime()
    ends_at = fields.DateTime()
    budget_points = fields.Integer(allow_none=True)
    budget_used = fields.Integer()
    budget_exhausted_at = fields.DateTime(allow_none=True)
    segment_id = fields.Integer(allow_none=True)
    wecom_channel_id = fields.Integer(allow_none=True)
    links = fields.Dict()
    scheduled_at = fields.DateTime(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    ended_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class CampaignListSchema(OutputSchema):
    items = fields.List(fields.Nested(CampaignSchema))


class CampaignListQuerySchema(Schema):
    state = fields.String(validate=validate.OneOf([s.value for s in CampaignState]))


class TransitionInSchema(Schema):
    """No fields: the state change is the request."""


class DryRunInSchema(Schema):
    lookback_days = fields.Integer(load_default=30, strict=True, validate=validate.Range(min=1, max=365))


class DryRunRuleSchema(OutputSchema):
    rule_id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    trigger = fields.String()
    reach = fields.Integer()
    events_in_lookback = fields.Integer()
    estimated_events = fields.Integer()
    estimated_points = fields.Integer()


class DryRunSchema(OutputSchema):
    campaign_id = fields.Integer()
    reach = fields.Integer()
    lookback_days = fields.Integer()
    rules = fields.List(fields.Nested(DryRunRuleSchema))
    estimated_points = fields.Integer()
    budget_points = fields.Integer(allow_none=True)


class ResultRuleSchema(OutputSchema):
    rule_id = fields.Integer()
    grants = fields.Integer()
    points = fields.Integer()


class ResultsSchema(OutputSchema):
    campaign_id = fields.Integer()
    state = fields.String()
    participants = fields.Integer()
    grants = fields.Integer()
    points_granted = fields.Integer()
    budget_points = fields.Integer(allow_none=True)
    budget_used = fields.Integer()
    by_rule = fields.List(fields.Nested(ResultRuleSchema))
    revenue_attributed_fen = fields.Integer()
    new_wecom_friends = fields.Integer()
    coupons_used = fields.Integer(
        metadata={"description": "coupons of its templates used in its period, or pushed for it and used"}
    )
    links = fields.Dict()
