"""Models of points campaigns (营销活动) and earning rules (积分规则).

- `campaign`: a goal and a period, a state (draft → scheduled → running → ended), an optional
  points budget shared by its rules, a target segment, the WeCom 「联系我」 channel whose new
  friends count as its result, and links to coupon templates and events (`campaign_link`, plain
  ids: those tables belong to other features).
- `earning_rule`: how points are earned — per yuan spent, fixed points for an action, or a
  multiplier — with priority, stop flag, validity window, store scope, target tier/segment,
  per-member caps and an optional budget of its own. A rule may stand alone (no campaign).
- `earning_counter`: what a member has received from a rule per day / week / month / in total
  (Asia/Shanghai calendar), one row per period, raised by conditional updates so concurrent
  grants can never pass a cap. No foreign key to the customer on purpose: a customer merge
  would otherwise move two members' counters onto one unique key; the surviving member simply
  keeps its own counters.
- `campaign_grant`: one row per (rule, ref) — the idempotency of the action hook — pointing at
  the points ledger row that paid it.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.platform.db import Base, BigId, StrEnumType, TimestampMixin, utcnow


class CampaignState(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    ENDED = "ended"


class RuleKind(enum.StrEnum):
    SPEND = "spend"  # points per yuan of a paid order, by business line
    ACTION = "action"  # fixed points for an action (registration, car bound, ...)
    MULTIPLIER = "multiplier"  # a bonus of (pct - 100) % on what the event earned


class Campaign(Base, TimestampMixin):
    __tablename__ = "campaign"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    goal: Mapped[str | None] = mapped_column(String(255), default=None)
    owner_unit_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"), index=True)
    state: Mapped[CampaignState] = mapped_column(StrEnumType(CampaignState, 16), default=CampaignState.DRAFT)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    budget_points: Mapped[int | None] = mapped_column(default=None)  # None: no campaign-wide budget
    budget_used: Mapped[int] = mapped_column(default=0)
    budget_exhausted_at: Mapped[datetime | None] = mapped_column(default=None)
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segment.id"), default=None)
    wecom_channel_id: Mapped[int | None] = mapped_column(ForeignKey("wecom_channel.id"), default=None)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
    scheduled_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)


class CampaignLink(Base):
    """A coupon template or an event that belongs to a campaign (ids of other features' tables)."""

    __tablename__ = "campaign_link"
    __table_args__ = (UniqueConstraint("campaign_id", "kind", "ref_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id"))
    kind: Mapped[str] = mapped_column(String(24))  # coupon_template | event
    ref_id: Mapped[int]


class EarningRule(Base, TimestampMixin):
    __tablename__ = "earning_rule"
    __table_args__ = (Index("ix_earning_rule_trigger_active", "trigger", "active"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id"), index=True, default=None)
    owner_unit_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"), index=True)
    kind: Mapped[RuleKind] = mapped_column(StrEnumType(RuleKind, 16))
    # spend rules: "spend"; action rules: the action; multipliers: "spend", an action, or "*"
    trigger: Mapped[str] = mapped_column(String(32))
    points: Mapped[int | None] = mapped_column(default=None)  # action rules
    points_per_yuan: Mapped[int | None] = mapped_column(default=None)  # spend rules
    rounding: Mapped[str] = mapped_column(String(8), default="floor")  # floor | round | ceil (spend)
    business_lines: Mapped[list] = mapped_column(default=list)  # spend: [] = every line
    exclude_business_types: Mapped[list] = mapped_column(default=list)  # spend: payment business types
    multiplier_pct: Mapped[int | None] = mapped_column(default=None)  # multipliers: 200 = double
    priority: Mapped[int] = mapped_column(default=0)
    stop_processing: Mapped[bool] = mapped_column(default=False)
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime | None] = mapped_column(default=None)
    store_ids: Mapped[list] = mapped_column(default=list)  # [] = every store of the owner unit
    target_tiers: Mapped[list] = mapped_column(default=list)  # [] = every tier
    target_segment_id: Mapped[int | None] = mapped_column(ForeignKey("segment.id"), default=None)
    cap_day: Mapped[int | None] = mapped_column(default=None)  # points per member, Asia/Shanghai day
    cap_week: Mapped[int | None] = mapped_column(default=None)  # ISO week
    cap_month: Mapped[int | None] = mapped_column(default=None)
    cap_total: Mapped[int | None] = mapped_column(default=None)
    budget_points: Mapped[int | None] = mapped_column(default=None)
    budget_used: Mapped[int] = mapped_column(default=0)
    budget_exhausted_at: Mapped[datetime | None] = mapped_column(default=None)
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)


class EarningCounter(Base):
    __tablename__ = "earning_counter"
    __table_args__ = (UniqueConstraint("rule_id", "customer_id", "period", "period_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("earning_rule.id"))
    customer_id: Mapped[int]  # no foreign key: see the module docstring
    period: Mapped[str] = mapped_column(String(8))  # day | week | month | total
    period_key: Mapped[str] = mapped_column(String(16))  # 2026-12-02 | 2026-W49 | 2026-12 | all
    points: Mapped[int] = mapped_column(default=0)


class CampaignGrant(Base):
    __tablename__ = "campaign_grant"
    __table_args__ = (
        UniqueConstraint("rule_id", "ref"),
        Index("ix_campaign_grant_campaign_customer", "campaign_id", "customer_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("earning_rule.id"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id"), default=None)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    trigger: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(128))
    points: Mapped[int]
    ledger_id: Mapped[int | None] = mapped_column(ForeignKey("points_ledger.id"), default=None)
    store_id: Mapped[int | None] = mapped_column(default=None)
    amount_fen: Mapped[int | None] = mapped_column(default=None)  # spend: the amount that earned it
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
