"""The earning-rule engine: which rules an event triggers, in what order, how many points each
grants, and how caps and budgets are enforced under concurrency. Points move only through the
points ledger (`backend.points.service.earn` / `earn_pending`).

An event is an action (`registration`, `car_bound`, ...) or a paid order (`spend`) of one
member, with a `ref` that identifies it (`car:17`, `pay:42`): each rule grants at most once per
ref (`campaign_grant` is unique on (rule, ref)), so a retried job or a replayed hook changes
nothing.

Evaluation order (documented, tested in tests/campaigns/test_rules.py):

1. Candidates: active rules whose trigger is the event's (multipliers also `*`), whose
   validity window contains `occurred_at` (`valid_from` ≤ t < `valid_to`), and — for rules of a
   campaign — whose campaign is scheduled or running with t inside its period. Then the rule's
   store scope (its `store_ids`, or else every store under its owner unit; the event's store,
   or the member's home store when the event has none), target tiers and target segment (and
   the campaign's segment) must match the member.
2. Two stages, in this order: **granting rules** (spend, action), then **multipliers**. Inside a
   stage rules run by `priority` (higher first), then by id (older first) — never by "last
   edited".
3. A granting rule grants its points (action: `points`; spend: eligible amount in yuan ×
   `points_per_yuan`, rounded by `rounding`). A multiplier grants a bonus of
   `base × (multiplier_pct − 100) / 100` (rounded down), where `base` is what the event earned
   before any multiplier: the points policy's own points-per-yuan (spend only) plus every
   granting rule's grant. Several multipliers add up (each on the same base, no compounding).
4. A grant is all or nothing: it must fit entirely under the campaign budget, the rule's
   budget and each of the rule's per-member caps (day / ISO week / month in Asia/Shanghai, and
   total), otherwise the rule is skipped (`budget_exhausted` / `capped`) and evaluation goes on.
   Caps count the points granted while the cap was set (a cap added later starts from zero).
5. `stop_processing` on a rule that granted (or had already granted this ref) ends its stage:
   lower rules of the same stage are `stopped`; a rule that was capped or out of budget does
   not stop anything. A stop among granting rules does not stop the multipliers.

Concurrency: every limit is a conditional UPDATE (`… SET used = used + n WHERE used + n <=
limit`) inside a SAVEPOINT per rule, so concurrent events can never exceed a cap or a budget.
Locks are taken in one fixed order — per rule in evaluation order: campaign budget row, rule
budget row, the member's counter rows, the grant's unique key; the points account last, after
every rule is decided — so two events cannot wait on each other in a cycle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.campaigns.models import (
    Campaign,
    CampaignGrant,
    CampaignState,
    EarningCounter,
    EarningRule,
    RuleKind,
)
from backend.platform.db import is_duplicate_key, utcnow
from backend.platform.upsert import upsert

log = logging.getLogger("dealerloop.campaigns")

SPEND = "spend"
# The actions other features report through `on_action`.
ACTIONS = (
    "registration",  # a new member (first mini-program login)
    "car_bound",  # a car bound to the member
    "booking_completed",  # a service booking completed
    "event_attended",  # checked in at an event
    "review",  # a review written
    "referral",  # a member referred a buyer
    "content_referral",  # content shared by the member brought a new member
)
TRIGGERS = (*ACTIONS, SPEND)
BUSINESS_LINES = ("service", "parts", "accessories", "other")
# Payment business types → business line (anything else is "other").
LINE_OF_BUSINESS_TYPE = {
    "service_package": "service",
    "booking_deposit": "service",
    "service_bill": "service",
    "parts_order": "parts",
    "accessories_order": "accessories",
}
OPERATOR = "system:campaigns"


@dataclass
class Event:
    customer_id: int
    trigger: str
    ref: str
    occurred_at: datetime
    store_id: int | None = None
    amounts: dict[str, int] = field(default_factory=dict)  # spend: fen by business line
    business_type: str | None = None
    base_points: int = 0  # spend: what the points policy itself grants (multipliers' base)


@dataclass
class Outcome:
    rule_id: int
    status: str  # granted | replayed | capped | budget_exhausted | stopped | zero
    points: int = 0
    grant_id: int | None = None


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def line_of(business_type: str | None) -> str:
    return LINE_OF_BUSINESS_TYPE.get(business_type or "", "other")


def round_points(fen: int, per_yuan: int, mode: str) -> int:
    raw = fen * per_yuan
    if mode == "ceil":
        return -(-raw // 100)
    if mode == "round":
        return (raw + 50) // 100
    return raw // 100


def period_keys(at: datetime) -> dict[str, str]:
    from backend.points.service import shanghai_date

    day = shanghai_date(at)
    year, week, _ = day.isocalendar()
    return {"day": day.isoformat(), "week": f"{year}-W{week:02d}", "month": day.strftime("%Y-%m"), "total": "all"}


# ---------------------------------------------------------------------------------------------
# Candidates


def _candidates(session: Session, event: Event) -> list[tuple[EarningRule, Campaign | None]]:
    at = event.occurred_at
    live_campaign = and_(
        Campaign.state.in_((CampaignState.SCHEDULED, CampaignState.RUNNING)),
        Campaign.starts_at <= at,
        Campaign.ends_at > at,
    )
    trigger = or_(
        EarningRule.trigger == event.trigger,
        and_(EarningRule.trigger == "*", EarningRule.kind == RuleKind.MULTIPLIER),
    )
    stmt = (
        select(EarningRule, Campaign)
        .outerjoin(Campaign, Campaign.id == EarningRule.campaign_id)
        .where(
            EarningRule.active.is_(True),
            trigger,
            EarningRule.valid_from <= at,
            or_(EarningRule.valid_to.is_(None), EarningRule.valid_to > at),
            or_(EarningRule.campaign_id.is_(None), live_campaign),
        )
    )
    rows = [(r, c) for r, c in session.execute(stmt)]
    stage = {RuleKind.SPEND: 0, RuleKind.ACTION: 0, RuleKind.MULTIPLIER: 1}
    rows.sort(key=lambda rc: (stage[rc[0].kind], -rc[0].priority, rc[0].id))
    return rows


class _Matcher:
    """Per-event checks of store scope, tier and segment (owner paths looked up once)."""

    def __init__(self, session: Session, event: Event) -> None:
        from backend.customers.models import Customer

        self.session = session
        self.event = event
        customer = session.get(Customer, event.customer_id)
        self.tier = customer.tier if customer else None
        self.store_id = event.store_id if event.store_id is not None else (customer.home_store_id if customer else None)
        self._paths: dict[int, tuple[str, str] | None] = {}

    def _unit(self, unit_id: int | None) -> tuple[str, str] | None:
        from backend.org.models import OrgUnit

        if unit_id is None:
            return None
        if unit_id not in self._paths:
            unit = self.session.get(OrgUnit, unit_id)
            self._paths[unit_id] = (unit.kind.value, unit.path) if unit else None
        return self._paths[unit_id]

    def store_ok(self, rule: EarningRule) -> bool:
        if rule.store_ids:
            return self.store_id in rule.store_ids
        owner = self._unit(rule.owner_unit_id)
        if owner is None:
            return False
        if owner[0] == "group":
            return True
        store = self._unit(self.store_id)
        return store is not None and store[1].startswith(owner[1])

    def matches(self, rule: EarningRule, campaign: Campaign | None) -> bool:
        from backend.segments.service import customer_in_segment

        if not self.store_ok(rule):
            return False
        if rule.target_tiers and self.tier not in rule.target_tiers:
            return False
        for segment_id in (rule.target_segment_id, campaign.segment_id if campaign else None):
            if segment_id is not None and not customer_in_segment(
                self.session, segment_id, self.event.customer_id, self.event.occurred_at
            ):
                return False
        return True


def rule_points(rule: EarningRule, event: Event) -> int:
    if rule.kind == RuleKind.ACTION:
        return rule.points or 0
    if rule.kind == RuleKind.SPEND:
        if event.business_type in (rule.exclude_business_types or []):
            return 0
        fen = sum(v for line, v in event.amounts.items() if not rule.business_lines or line in rule.business_lines)
        return round_points(fen, rule.points_per_yuan or 0, rule.rounding)
    return 0


# ---------------------------------------------------------------------------------------------
# Reservation: budgets, caps and the grant row, all or nothing, in one SAVEPOINT


def _take_budget(session: Session, model: Any, row_id: int, n: int) -> None:
    took = session.execute(
        update(model)
        .where(model.id == row_id, model.budget_points.is_not(None), model.budget_used + n <= model.budget_points)
        .values(budget_used=model.budget_used + n)
        .execution_options(synchronize_session=False)
    ).rowcount
    if took != 1:
        raise _Refused("budget_exhausted")


def _mark_exhausted(session: Session, model: Any, row: Any, now: datetime) -> None:
    """The first time a budget runs out: record it and alert whoever created it (WeCom app
    message through the outbox, once)."""
    marked = session.execute(
        update(model)
        .where(model.id == row.id, model.budget_exhausted_at.is_(None))
        .values(budget_exhausted_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if marked == 1 and row.created_by is not None:
        _alert_budget(session, model, row)


def _alert_budget(session: Session, model: Any, row: Any) -> None:
    from backend.org.models import Staff
    from backend.wecom.notify import NotifyKind, notify

    staff = session.get(Staff, row.created_by)
    if staff is None:
        return
    what = "营销活动" if model is Campaign else "积分规则"
    notify(
        session,
        staff.corp_id,
        NotifyKind.CAMPAIGN_BUDGET,
        f"{model.__tablename__}:{row.id}",
        [staff.wecom_userid],
        text=f"预算提醒：{what}「{row.name}」的积分预算 {row.budget_points} 已用完，后续不再发放。",
    )


def _caps(rule: EarningRule) -> list[tuple[str, int]]:
    caps = (("day", rule.cap_day), ("week", rule.cap_week), ("month", rule.cap_month), ("total", rule.cap_total))
    return [(p, c) for p, c in caps if c is not None]


def _take_caps(session: Session, rule: EarningRule, customer_id: int, n: int, at: datetime) -> None:
    C = EarningCounter.__table__.c
    keys = period_keys(at)
    for period, cap in _caps(rule):
        key = {"rule_id": rule.id, "customer_id": customer_id, "period": period, "period_key": keys[period]}
        upsert(session, EarningCounter, {**key, "points": 0}, list(key), lambda new: [("points", C.points)])
        took = session.execute(
            update(EarningCounter.__table__)
            .where(*(C[k] == v for k, v in key.items()), C.points + n <= cap)
            .values(points=C.points + n)
        ).rowcount
        if took != 1:
            raise _Refused("capped")


def _reserve(
    session: Session, rule: EarningRule, campaign: Campaign | None, event: Event, n: int
) -> CampaignGrant | None:
    """Take `n` points from every limit of the rule and write the grant row, or nothing.
    Returns None when this (rule, ref) was granted concurrently (the unique key decided)."""
    grant = CampaignGrant(
        rule_id=rule.id,
        campaign_id=rule.campaign_id,
        customer_id=event.customer_id,
        trigger=event.trigger,
        ref=event.ref,
        points=n,
        store_id=event.store_id,
        amount_fen=sum(event.amounts.values()) if event.trigger == SPEND else None,
        occurred_at=event.occurred_at,
    )
    try:
        with session.begin_nested():
            if campaign is not None and campaign.budget_points is not None:
                _take_budget(session, Campaign, campaign.id, n)
            if rule.budget_points is not None:
                _take_budget(session, EarningRule, rule.id, n)
            _take_caps(session, rule, event.customer_id, n, event.occurred_at)
            session.add(grant)
            session.flush()
    except IntegrityError as exc:
        if not is_duplicate_key(exc):
            raise
        return None
    return grant


def _existing_grant(session: Session, rule_id: int, ref: str) -> CampaignGrant | None:
    return session.scalars(
        select(CampaignGrant).where(CampaignGrant.rule_id == rule_id, CampaignGrant.ref == ref)
    ).one_or_none()


def _after_budget(session: Session, rule: EarningRule, campaign: Campaign | None, now: datetime) -> None:
    """Record when a budget ran out (the campaign list shows it; marketing is alerted)."""
    for model, row in ((Campaign, campaign), (EarningRule, rule)):
        if row is None or row.budget_points is None:
            continue
        left = session.scalar(select(model.budget_points - model.budget_used).where(model.id == row.id))
        if left is not None and left <= 0:
            _mark_exhausted(session, model, row, now)


# ---------------------------------------------------------------------------------------------
# Paying the grants through the points ledger


def _pay(session: Session, grant: CampaignGrant, rule: EarningRule) -> None:
    from backend.points import service as points
    from backend.touchpoints.models import Channel, Kind
    from backend.touchpoints.service import record

    key = f"campaign:{rule.id}:{grant.ref}"
    common: dict[str, Any] = {
        "key": key,
        "reason_code": f"campaign_{grant.trigger}"[:48],
        "operator": OPERATOR,
        "ref_type": "campaign_grant",
        "ref_id": str(grant.id),
    }
    if grant.trigger == SPEND:
        # Like the points for the spend itself: pending during the return window, so a refund
        # inside it simply cancels them (backend/points/earning.py takes them back).
        from datetime import timedelta

        row = points.earn_pending(
            session,
            grant.customer_id,
            grant.points,
            activates_at=utcnow() + timedelta(days=points.policy().return_window_days),
            **common,
        )
    else:
        row = points.earn(session, grant.customer_id, grant.points, note=rule.name[:255], **common)
    grant.ledger_id = row.id
    record(
        session,
        customer_id=grant.customer_id,
        kind=Kind.CAMPAIGN_POINTS_GRANTED,
        channel=Channel.SYSTEM,
        source="campaigns",
        source_ref=f"campaign_grant:{grant.id}",
        occurred_at=grant.occurred_at,
        store_id=grant.store_id,
        payload={
            "campaign_id": grant.campaign_id,
            "rule_id": grant.rule_id,
            "rule": rule.name,
            "trigger": grant.trigger,
            "ref": grant.ref,
            "points": grant.points,
            "ledger_id": row.id,
        },
    )


# ---------------------------------------------------------------------------------------------
# The entry point


def evaluate(session: Session, event: Event) -> list[Outcome]:
    """Apply every rule the event triggers (see the module docstring). Returns one outcome per
    candidate rule that matched the member, in evaluation order."""
    now = utcnow()
    matcher = _Matcher(session, event)
    outcomes: list[Outcome] = []
    to_pay: list[tuple[CampaignGrant, EarningRule]] = []
    base = event.base_points
    stopped_stage: set[int] = set()
    for rule, campaign in _candidates(session, event):
        if not matcher.matches(rule, campaign):
            continue
        stage = 1 if rule.kind == RuleKind.MULTIPLIER else 0
        if stage in stopped_stage:
            outcomes.append(Outcome(rule.id, "stopped"))
            continue
        existing = _existing_grant(session, rule.id, event.ref)
        if existing is not None:
            outcomes.append(Outcome(rule.id, "replayed", existing.points, existing.id))
            if stage == 0:
                base += existing.points
            if rule.stop_processing:
                stopped_stage.add(stage)
            continue
        if rule.kind == RuleKind.MULTIPLIER:
            n = base * ((rule.multiplier_pct or 100) - 100) // 100
        else:
            n = rule_points(rule, event)
        if n <= 0:
            outcomes.append(Outcome(rule.id, "zero"))
            continue
        try:
            grant = _reserve(session, rule, campaign, event, n)
        except _Refused as refused:
            outcomes.append(Outcome(rule.id, refused.reason))
            if refused.reason == "budget_exhausted":
                _after_budget(session, rule, campaign, now)
            continue
        if grant is None:  # the same ref, granted by a concurrent call: that one pays it
            existing = _existing_grant(session, rule.id, event.ref)
            outcomes.append(Outcome(rule.id, "replayed", existing.points if existing else 0))
            continue
        outcomes.append(Outcome(rule.id, "granted", n, grant.id))
        to_pay.append((grant, rule))
        if stage == 0:
            base += n
        if rule.stop_processing:
            stopped_stage.add(stage)
        _after_budget(session, rule, campaign, now)
    for grant, rule in to_pay:  # the points account is locked last, after every limit
        _pay(session, grant, rule)
    return outcomes
