"""Points campaigns and earning rules (marketing): the action hook other features call, the
rule and campaign lifecycle, the dry run and the results.

The hook — call it in your own transaction when the action happens:

    from backend.campaigns.service import on_action
    on_action(session, customer_id, "booking_completed", ref=f"booking:{booking.id}", store_id=...)

It is idempotent per rule and `ref` (the same ref never grants twice), grants only through
the points ledger, and writes a `campaign_points_granted` touchpoint per grant. Spend is
reported by the payments listener (`backend/points/earning.py` → `on_spend`). How rules are
evaluated (order, stop flag, multipliers, caps, budgets) is documented in
`backend/campaigns/engine.py`.

Campaign states: draft → scheduled (`schedule`) → running (at `starts_at`, by the periodic
job) → ended (at `ends_at`, or `end` by staff). Rules of a campaign grant only while it is
scheduled or running and the time is inside its period; an ended campaign grants nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, distinct, exists, false, func, select, true, update
from sqlalchemy.orm import Session, aliased

from backend.campaigns import engine
from backend.campaigns.engine import ACTIONS, BUSINESS_LINES, SPEND, TRIGGERS, Event, Outcome
from backend.campaigns.models import Campaign, CampaignGrant, CampaignLink, CampaignState, EarningRule, RuleKind
from backend.org.models import OrgKind, OrgUnit
from backend.org.scope import get_scoped_or_404, register_scope, scope_query
from backend.platform.actors import StaffActor
from backend.platform.audit import write_audit
from backend.platform.db import utcnow
from backend.platform.errors import AppError, register_messages

register_messages(
    {
        "campaigns.not_found": ("营销活动不存在", "Campaign not found"),
        "campaigns.rule_not_found": ("积分规则不存在", "Earning rule not found"),
        "campaigns.window_invalid": (
            "时间范围无效：结束时间必须晚于开始时间",
            "Invalid window: the end must be after the start",
        ),
        "campaigns.points_invalid": ("积分数值必须为正整数", "Points must be a positive integer"),
        "campaigns.limit_invalid": ("上限和预算必须为正整数", "Caps and budgets must be positive integers"),
        "campaigns.multiplier_invalid": ("倍数必须大于100%", "A multiplier must be above 100 %"),
        "campaigns.trigger_invalid": ("不支持的触发行为", "Unknown trigger for this kind of rule"),
        "campaigns.rule_invalid": ("积分规则配置无效", "Invalid earning rule"),
        "campaigns.store_out_of_scope": ("门店不在该规则的适用范围内", "A store is outside the rule's owner unit"),
        "campaigns.owner_out_of_scope": ("只能在自己的管理范围内创建", "The owner unit is outside your scope"),
        "campaigns.segment_invalid": ("客户分群不存在或不可用", "The segment does not exist or is not usable"),
        "campaigns.channel_invalid": ("渠道活码不存在或不可用", "The WeCom channel does not exist or is not usable"),
        "campaigns.not_editable": ("活动已开始或已结束，不能修改", "The campaign can no longer be changed"),
        "campaigns.state_invalid": ("活动当前状态不允许该操作", "Not allowed in the campaign's current state"),
    }
)

TIER_CODES = ("standard", "silver", "gold", "platinum")
LINK_KINDS = ("coupon_template", "event")
EDITABLE = (CampaignState.DRAFT, CampaignState.SCHEDULED)


# ---------------------------------------------------------------------------------------------
# The hook


def on_action(
    session: Session,
    customer_id: int,
    action: str,
    ref: str,
    store_id: int | None = None,
    occurred_at: datetime | None = None,
) -> list[Outcome]:
    """Report that `action` (one of `engine.ACTIONS`) happened for the member. `ref` names the
    occurrence (`car:17`, `booking:42`): each rule grants at most once per ref."""
    if action not in ACTIONS:
        raise ValueError(f"unknown campaign action {action!r}; known: {ACTIONS}")
    event = Event(customer_id, action, ref[:128], occurred_at or utcnow(), store_id)
    return engine.evaluate(session, event)


def on_spend(
    session: Session,
    customer_id: int,
    ref: str,
    *,
    business_type: str | None,
    amount_fen: int,
    store_id: int | None = None,
    occurred_at: datetime | None = None,
    base_points: int = 0,
    amounts: dict[str, int] | None = None,
) -> list[Outcome]:
    """A paid order: spend rules by business line (the whole amount counts for the order's line
    unless `amounts` splits it), multipliers on `base_points` plus the spend rules' points."""
    split = amounts if amounts is not None else {engine.line_of(business_type): amount_fen}
    event = Event(
        customer_id,
        SPEND,
        ref[:128],
        occurred_at or utcnow(),
        store_id,
        amounts={k: v for k, v in split.items() if v > 0},
        business_type=business_type,
        base_points=base_points,
    )
    return engine.evaluate(session, event)


# ---------------------------------------------------------------------------------------------
# Scopes: by owner unit — staff see campaigns and rules owned by units in their subtree; group
# admins all; advisors none.


def _owner_rule(model: Any) -> Any:
    def rule(actor: StaffActor) -> ColumnElement[bool]:
        if actor.scope.store_ids is None:
            return true()
        if actor.scope.own_customers_only or not actor.scope.store_ids:
            return false()
        owner, me = aliased(OrgUnit), aliased(OrgUnit)
        return exists().where(
            owner.id == model.owner_unit_id, me.id == actor.org_unit_id, owner.path.startswith(me.path)
        )

    return rule


register_scope("campaign", Campaign, _owner_rule(Campaign), "campaigns.not_found")
register_scope("earning_rule", EarningRule, _owner_rule(EarningRule), "campaigns.rule_not_found")


def check_owner_unit(session: Session, actor: StaffActor, owner_unit_id: int | None) -> OrgUnit:
    unit = session.get(OrgUnit, owner_unit_id if owner_unit_id is not None else actor.org_unit_id)
    mine = session.get(OrgUnit, actor.org_unit_id)
    ok = unit is not None and (
        actor.scope.store_ids is None
        or (not actor.scope.own_customers_only and mine is not None and unit.path.startswith(mine.path))
    )
    if not ok:
        raise AppError(
            "campaigns.owner_out_of_scope", 422, errors={"json": {"owner_unit_id": ["a unit in your scope"]}}
        )
    assert unit is not None
    return unit


def _invalid(code: str, field: str, message: str) -> AppError:
    return AppError(code, 422, errors={"json": {field: [message]}})


def _check_window(start: datetime | None, end: datetime | None, start_name: str, end_name: str) -> None:
    if start is None:
        raise _invalid("campaigns.window_invalid", start_name, "required")
    if end is not None and end <= start:
        raise _invalid("campaigns.window_invalid", end_name, f"must be after {start_name}")


def _check_positive(data: dict[str, Any], names: tuple[str, ...], code: str) -> None:
    for name in names:
        value = data.get(name)
        if value is not None and (type(value) is not int or value <= 0):
            raise _invalid(code, name, "must be a positive integer")


def _check_segment(session: Session, actor: StaffActor, segment_id: int | None, field: str) -> None:
    from backend.segments.service import check_segment_in_scope

    check_segment_in_scope(session, actor, segment_id, field, "campaigns.segment_invalid")


def _check_stores(session: Session, owner: OrgUnit, store_ids: list[int]) -> None:
    if not store_ids:
        return
    stmt = select(OrgUnit.id).where(OrgUnit.id.in_(store_ids), OrgUnit.kind == OrgKind.STORE)
    if owner.kind != OrgKind.GROUP:
        stmt = stmt.where(OrgUnit.path.startswith(owner.path, autoescape=True))
    found = set(session.scalars(stmt))
    missing = sorted(set(store_ids) - found)
    if missing:
        raise _invalid("campaigns.store_out_of_scope", "store_ids", f"not stores of the owner unit: {missing}")


# ---------------------------------------------------------------------------------------------
# Earning rules

RULE_FIELDS = (
    "name",
    "trigger",
    "points",
    "points_per_yuan",
    "rounding",
    "business_lines",
    "exclude_business_types",
    "multiplier_pct",
    "priority",
    "stop_processing",
    "valid_from",
    "valid_to",
    "store_ids",
    "target_tiers",
    "target_segment_id",
    "cap_day",
    "cap_week",
    "cap_month",
    "cap_total",
    "budget_points",
    "active",
)


def _validate_rule(session: Session, actor: StaffActor, rule: EarningRule, owner: OrgUnit) -> None:
    data = {f: getattr(rule, f) for f in RULE_FIELDS}
    _check_window(rule.valid_from, rule.valid_to, "valid_from", "valid_to")
    _check_positive(data, ("cap_day", "cap_week", "cap_month", "cap_total", "budget_points"), "campaigns.limit_invalid")
    kind = rule.kind
    if kind == RuleKind.ACTION:
        if rule.trigger not in ACTIONS:
            raise _invalid("campaigns.trigger_invalid", "trigger", f"one of {', '.join(ACTIONS)}")
        if type(rule.points) is not int or rule.points <= 0:
            raise _invalid("campaigns.points_invalid", "points", "must be a positive integer")
    elif kind == RuleKind.SPEND:
        if rule.trigger != SPEND:
            raise _invalid("campaigns.trigger_invalid", "trigger", "spend rules have the trigger 'spend'")
        if type(rule.points_per_yuan) is not int or rule.points_per_yuan <= 0:
            raise _invalid("campaigns.points_invalid", "points_per_yuan", "must be a positive integer")
        if rule.rounding not in ("floor", "round", "ceil"):
            raise _invalid("campaigns.rule_invalid", "rounding", "floor, round or ceil")
        bad = [line for line in rule.business_lines if line not in BUSINESS_LINES]
        if bad:
            raise _invalid("campaigns.rule_invalid", "business_lines", f"one of {', '.join(BUSINESS_LINES)}")
    else:
        if rule.trigger not in (*TRIGGERS, "*"):
            raise _invalid("campaigns.trigger_invalid", "trigger", "spend, an action, or *")
        if type(rule.multiplier_pct) is not int or rule.multiplier_pct <= 100 or rule.multiplier_pct > 1000:
            raise _invalid("campaigns.multiplier_invalid", "multiplier_pct", "101..1000 (200 = double)")
    if kind != RuleKind.ACTION and rule.points is not None:
        raise _invalid("campaigns.rule_invalid", "points", "only action rules grant fixed points")
    bad_tiers = [t for t in rule.target_tiers if t not in TIER_CODES]
    if bad_tiers:
        raise _invalid("campaigns.rule_invalid", "target_tiers", f"one of {', '.join(TIER_CODES)}")
    _check_stores(session, owner, rule.store_ids)
    _check_segment(session, actor, rule.target_segment_id, "target_segment_id")


def create_rule(session: Session, actor: StaffActor, data: dict[str, Any]) -> EarningRule:
    campaign = None
    if data.get("campaign_id") is not None:
        campaign = get_scoped_or_404(session, actor, "campaign", data["campaign_id"])
        if campaign.state not in EDITABLE:
            raise AppError("campaigns.not_editable", 409)
        owner = session.get(OrgUnit, campaign.owner_unit_id)
    else:
        owner = check_owner_unit(session, actor, data.get("owner_unit_id"))
    assert owner is not None
    rule = EarningRule(
        campaign_id=campaign.id if campaign else None,
        owner_unit_id=owner.id,
        kind=RuleKind(data["kind"]),
        created_by=actor.staff_id,
        **{f: data[f] for f in RULE_FIELDS if f in data},
    )
    if rule.kind == RuleKind.SPEND and "trigger" not in data:
        rule.trigger = SPEND
    for list_field in ("business_lines", "exclude_business_types", "store_ids", "target_tiers"):
        if getattr(rule, list_field) is None:
            setattr(rule, list_field, [])
    rule.rounding = rule.rounding or "floor"
    rule.priority = rule.priority or 0
    rule.stop_processing = bool(rule.stop_processing)
    rule.active = True if rule.active is None else rule.active
    _validate_rule(session, actor, rule, owner)
    session.add(rule)
    session.flush()
    write_audit(session, actor, "earning_rule.created", "earning_rule", rule.id, {"kind": rule.kind.value})
    return rule


def update_rule(session: Session, actor: StaffActor, rule: EarningRule, data: dict[str, Any]) -> EarningRule:
    if rule.campaign_id is not None:
        campaign = session.get(Campaign, rule.campaign_id)
        if campaign is not None and campaign.state not in EDITABLE and set(data) - {"active"}:
            raise AppError("campaigns.not_editable", 409)
    owner = session.get(OrgUnit, rule.owner_unit_id)
    assert owner is not None
    with session.no_autoflush:
        for key, value in data.items():
            setattr(rule, key, value)
        try:
            _validate_rule(session, actor, rule, owner)
        except AppError:
            session.expire(rule)  # nothing half-applied
            raise
    session.flush()
    write_audit(session, actor, "earning_rule.updated", "earning_rule", rule.id, _jsonable(data))
    return rule


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()}


# ---------------------------------------------------------------------------------------------
# Campaigns

CAMPAIGN_FIELDS = ("name", "goal", "starts_at", "ends_at", "budget_points", "segment_id", "wecom_channel_id")


def _check_channel(session: Session, owner: OrgUnit, channel_id: int | None) -> None:
    if channel_id is None:
        return
    from backend.wecom.models import WeComChannel

    channel = session.get(WeComChannel, channel_id)
    ok = channel is not None
    if ok and owner.kind != OrgKind.GROUP:
        store = session.get(OrgUnit, channel.store_id) if channel.store_id else None
        ok = store is not None and store.path.startswith(owner.path)
    if not ok:
        raise _invalid("campaigns.channel_invalid", "wecom_channel_id", "a WeCom channel of the owner unit")


def _validate_campaign(session: Session, actor: StaffActor, campaign: Campaign, owner: OrgUnit) -> None:
    _check_window(campaign.starts_at, campaign.ends_at, "starts_at", "ends_at")
    if campaign.ends_at is None:
        raise _invalid("campaigns.window_invalid", "ends_at", "required")
    _check_positive({"budget_points": campaign.budget_points}, ("budget_points",), "campaigns.limit_invalid")
    _check_segment(session, actor, campaign.segment_id, "segment_id")
    _check_channel(session, owner, campaign.wecom_channel_id)


def _set_links(session: Session, actor: StaffActor, campaign: Campaign, links: dict[str, list[int]] | None) -> None:
    """The coupon templates and events the campaign reports on: each one in the actor's scope
    (the results count a linked template's used coupons), like an id in a path."""
    if links is None:
        return
    from backend.events.models import Event
    from backend.offers.models import CouponTemplate

    for kind, ids in links.items():
        if kind not in LINK_KINDS or any(type(i) is not int or i <= 0 for i in ids):
            raise _invalid("campaigns.rule_invalid", "links", "coupon_template / event: lists of ids")
        model = CouponTemplate if kind == "coupon_template" else Event
        wanted = set(ids)
        found = set(session.scalars(scope_query(select(model.id).where(model.id.in_(wanted)), actor, kind)))
        if found != wanted:
            raise _invalid("campaigns.rule_invalid", "links", f"{kind}: not in your scope: {sorted(wanted - found)}")
    session.execute(CampaignLink.__table__.delete().where(CampaignLink.campaign_id == campaign.id))
    session.add_all(
        CampaignLink(campaign_id=campaign.id, kind=kind, ref_id=i) for kind, ids in links.items() for i in set(ids)
    )
    session.flush()


def links_of(session: Session, campaign_id: int) -> dict[str, list[int]]:
    return links_of_many(session, [campaign_id])[campaign_id]


def links_of_many(session: Session, campaign_ids: list[int]) -> dict[int, dict[str, list[int]]]:
    """The coupon templates and events of several campaigns in one query (list views)."""
    out: dict[int, dict[str, list[int]]] = {cid: {k: [] for k in LINK_KINDS} for cid in campaign_ids}
    if not campaign_ids:
        return out
    rows = session.execute(
        select(CampaignLink.campaign_id, CampaignLink.kind, CampaignLink.ref_id)
        .where(CampaignLink.campaign_id.in_(campaign_ids))
        .order_by(CampaignLink.id)
    )
    for campaign_id, kind, ref_id in rows:
        out[campaign_id].setdefault(kind, []).append(ref_id)
    return out


def create_campaign(session: Session, actor: StaffActor, data: dict[str, Any]) -> Campaign:
    owner = check_owner_unit(session, actor, data.get("owner_unit_id"))
    campaign = Campaign(
        owner_unit_id=owner.id,
        state=CampaignState.DRAFT,
        created_by=actor.staff_id,
        budget_used=0,
        **{f: data.get(f) for f in CAMPAIGN_FIELDS},
    )
    _validate_campaign(session, actor, campaign, owner)
    session.add(campaign)
    session.flush()
    _set_links(session, actor, campaign, data.get("links"))
    write_audit(session, actor, "campaign.created", "campaign", campaign.id)
    return campaign


def update_campaign(session: Session, actor: StaffActor, campaign: Campaign, data: dict[str, Any]) -> Campaign:
    if campaign.state not in EDITABLE:
        raise AppError("campaigns.not_editable", 409)
    owner = session.get(OrgUnit, campaign.owner_unit_id)
    assert owner is not None
    with session.no_autoflush:
        for key in CAMPAIGN_FIELDS:
            if key in data:
                setattr(campaign, key, data[key])
        try:
            _validate_campaign(session, actor, campaign, owner)
        except AppError:
            session.expire(campaign)
            raise
    _set_links(session, actor, campaign, data.get("links"))
    session.flush()
    write_audit(session, actor, "campaign.updated", "campaign", campaign.id, _jsonable(data))
    return campaign


def _transition(
    session: Session, campaign_id: int, frm: tuple[CampaignState, ...], to: CampaignState, **values: Any
) -> bool:
    """A conditional update: of two concurrent transitions only one happens."""
    done = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.state.in_(frm))
        .values(state=to, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    return done == 1


def schedule(session: Session, actor: StaffActor, campaign: Campaign, now: datetime | None = None) -> Campaign:
    """draft → scheduled (or straight to running when its period has begun)."""
    now = now or utcnow()
    if campaign.ends_at <= now:
        raise AppError("campaigns.window_invalid", 422, errors={"json": {"ends_at": ["already past"]}})
    to = CampaignState.RUNNING if campaign.starts_at <= now else CampaignState.SCHEDULED
    extra = {"started_at": now} if to == CampaignState.RUNNING else {}
    if not _transition(session, campaign.id, (CampaignState.DRAFT,), to, scheduled_at=now, **extra):
        raise AppError("campaigns.state_invalid", 409)
    write_audit(session, actor, "campaign.scheduled", "campaign", campaign.id, {"state": to.value})
    session.refresh(campaign)
    return campaign


def end(session: Session, actor: StaffActor, campaign: Campaign, now: datetime | None = None) -> Campaign:
    """Stop a campaign now (scheduled or running → ended): its rules grant nothing more."""
    now = now or utcnow()
    if not _transition(
        session, campaign.id, (CampaignState.SCHEDULED, CampaignState.RUNNING), CampaignState.ENDED, ended_at=now
    ):
        raise AppError("campaigns.state_invalid", 409)
    write_audit(session, actor, "campaign.ended", "campaign", campaign.id)
    session.refresh(campaign)
    return campaign


def advance_states(session: Session, now: datetime | None = None) -> int:
    """The periodic job: scheduled → running at `starts_at`, running/scheduled → ended at `ends_at`."""
    now = now or utcnow()
    ended = session.execute(
        update(Campaign)
        .where(Campaign.state.in_((CampaignState.SCHEDULED, CampaignState.RUNNING)), Campaign.ends_at <= now)
        .values(state=CampaignState.ENDED, ended_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    started = session.execute(
        update(Campaign)
        .where(Campaign.state == CampaignState.SCHEDULED, Campaign.starts_at <= now)
        .values(state=CampaignState.RUNNING, started_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    return ended + started


# ---------------------------------------------------------------------------------------------
# Dry run and results


ACTION_TOUCH_KIND = {
    "registration": "member_registered",
    "car_bound": "car_bound",
    "booking_completed": "service_completed",
    "event_attended": "event_checked_in",
    "content_referral": "content_opened",
}


def _reach_stmt(session: Session, campaign: Campaign, rule: EarningRule | None = None) -> Any:
    from backend.customers.models import Customer
    from backend.segments.service import filter_customer_ids, segment_customer_ids

    stmt = filter_customer_ids(session, campaign.owner_unit_id, {})
    if campaign.segment_id is not None:
        stmt = stmt.where(Customer.id.in_(segment_customer_ids(session, campaign.segment_id)))
    if rule is not None:
        if rule.target_segment_id is not None:
            stmt = stmt.where(Customer.id.in_(segment_customer_ids(session, rule.target_segment_id)))
        if rule.target_tiers:
            stmt = stmt.where(Customer.tier.in_(rule.target_tiers))
        if rule.store_ids:
            stmt = stmt.where(Customer.home_store_id.in_(rule.store_ids))
    return stmt


def dry_run(session: Session, campaign: Campaign, now: datetime | None = None, lookback_days: int = 30) -> dict:
    """Estimate reach and cost on current data: the members the campaign can reach, and for each
    rule what the last `lookback_days` of the same events (touchpoints, paid orders) among them
    would have earned, scaled to the campaign's length, capped by the rule's total cap per member
    and by the budgets. An estimate, not a promise: it writes nothing."""
    from backend.segments.service import count

    now = now or utcnow()
    since = now - timedelta(days=lookback_days)
    scale = max((campaign.ends_at - campaign.starts_at).total_seconds(), 0) / (lookback_days * 86400)
    reach = count(session, _reach_stmt(session, campaign))
    rules = list(
        session.scalars(select(EarningRule).where(EarningRule.campaign_id == campaign.id).order_by(EarningRule.id))
    )
    per_rule = []
    total = 0
    for rule in rules:
        members = _reach_stmt(session, campaign, rule)
        rule_reach = count(session, members)
        events, points = _history(session, rule, members.subquery(), since, now, rules)
        est_events = int(events * scale)
        est_points = int(points * scale)
        if rule.cap_total is not None:
            est_points = min(est_points, rule.cap_total * rule_reach)
        if rule.budget_points is not None:
            est_points = min(est_points, rule.budget_points - rule.budget_used)
        per_rule.append(
            {
                "rule_id": rule.id,
                "name": rule.name,
                "kind": rule.kind.value,
                "trigger": rule.trigger,
                "reach": rule_reach,
                "events_in_lookback": events,
                "estimated_events": est_events,
                "estimated_points": max(est_points, 0),
            }
        )
        total += max(est_points, 0)
    if campaign.budget_points is not None:
        total = min(total, campaign.budget_points - campaign.budget_used)
    return {
        "campaign_id": campaign.id,
        "reach": reach,
        "lookback_days": lookback_days,
        "rules": per_rule,
        "estimated_points": total,
        "budget_points": campaign.budget_points,
    }


def _history(
    session: Session, rule: EarningRule, members: Any, since: datetime, now: datetime, rules: list[EarningRule]
) -> tuple[int, int]:
    """(events, points) the rule would have granted over the lookback among `members`. A
    multiplier's base is what the points policy and the campaign's granting rules give."""
    from backend.points.service import policy
    from backend.touchpoints.models import Touchpoint

    multiplier = rule.kind == RuleKind.MULTIPLIER
    triggers = [rule.trigger] if rule.trigger != "*" else list(TRIGGERS)
    granting = [r for r in rules if r.kind != RuleKind.MULTIPLIER]
    events = points = 0
    for trigger in triggers:
        if multiplier:
            bonus_pct = (rule.multiplier_pct or 100) - 100
        if trigger == SPEND:
            if not multiplier and rule.kind != RuleKind.SPEND:
                continue
            from backend.payments.models import PaymentOrder

            orders = session.execute(
                select(PaymentOrder.business_type, PaymentOrder.amount_fen).where(
                    PaymentOrder.paid_at.is_not(None),
                    PaymentOrder.paid_at >= since,
                    PaymentOrder.paid_at < now,
                    PaymentOrder.customer_id.in_(select(members.c.id)),
                    PaymentOrder.business_type != "mall_order",
                )
            ).all()
            for business_type, amount in orders:
                ev = Event(
                    0, SPEND, "", now, amounts={engine.line_of(business_type): amount}, business_type=business_type
                )
                if multiplier:
                    base = amount // 100 * policy().points_per_yuan
                    base += sum(engine.rule_points(r, ev) for r in granting if r.kind == RuleKind.SPEND)
                    p = base * bonus_pct // 100
                else:
                    p = engine.rule_points(rule, ev)
                if p > 0:
                    events += 1
                    points += p
            continue
        if not multiplier and rule.trigger != trigger:
            continue
        kind = ACTION_TOUCH_KIND.get(trigger)
        if kind is None:
            continue
        n = int(
            session.scalar(
                select(func.count())
                .select_from(Touchpoint)
                .where(
                    Touchpoint.kind == kind,
                    Touchpoint.occurred_at >= since,
                    Touchpoint.occurred_at < now,
                    Touchpoint.customer_id.in_(select(members.c.id)),
                )
            )
            or 0
        )
        if multiplier:
            per_event = sum(r.points or 0 for r in granting if r.trigger == trigger) * bonus_pct // 100
        else:
            per_event = rule.points or 0
        if per_event > 0:
            events += n
            points += n * per_event
    return events, points


def results(session: Session, campaign: Campaign) -> dict[str, Any]:
    """Participants, points granted, revenue attributed and new WeCom friends of the campaign.

    - revenue attributed: paid orders that earned one of the campaign's spend grants, less
      their refunds (direct attribution; an order counts once);
    - new WeCom friends: adds through the campaign's 「联系我」 channel during its period;
    - coupons used: coupons of the campaign's linked templates used (at a store or on a paid
      order) during its period, plus those pushed for the campaign whenever used."""
    G = CampaignGrant
    row = session.execute(
        select(func.count(), func.count(distinct(G.customer_id)), func.coalesce(func.sum(G.points), 0)).where(
            G.campaign_id == campaign.id
        )
    ).one()
    grants, participants, points = int(row[0]), int(row[1]), int(row[2])
    by_rule = [
        {"rule_id": rid, "grants": int(n), "points": int(p)}
        for rid, n, p in session.execute(
            select(G.rule_id, func.count(), func.coalesce(func.sum(G.points), 0))
            .where(G.campaign_id == campaign.id)
            .group_by(G.rule_id)
            .order_by(G.rule_id)
        )
    ]
    revenue = _revenue(session, campaign.id)
    return {
        "campaign_id": campaign.id,
        "state": campaign.state.value,
        "participants": participants,
        "grants": grants,
        "points_granted": points,
        "budget_points": campaign.budget_points,
        "budget_used": campaign.budget_used,
        "by_rule": by_rule,
        "revenue_attributed_fen": revenue,
        "new_wecom_friends": _new_friends(session, campaign),
        "coupons_used": _coupons_used(session, campaign),
        "links": links_of(session, campaign.id),
    }


def _coupons_used(session: Session, campaign: Campaign) -> int:
    from backend.offers.models import Coupon, CouponStatus

    templates = links_of(session, campaign.id).get("coupon_template", [])
    in_period = (
        Coupon.template_id.in_(templates) & (Coupon.used_at >= campaign.starts_at) & (Coupon.used_at < campaign.ends_at)
    )
    return int(
        session.scalar(
            select(func.count())
            .select_from(Coupon)
            .where(Coupon.status == CouponStatus.USED, in_period | (Coupon.campaign_id == campaign.id))
        )
        or 0
    )


def _revenue(session: Session, campaign_id: int) -> int:
    from backend.payments.models import PaymentOrder

    refs = set(
        session.scalars(
            select(CampaignGrant.ref).where(CampaignGrant.campaign_id == campaign_id, CampaignGrant.trigger == SPEND)
        )
    )
    ids = [int(r.removeprefix("pay:")) for r in refs if r.startswith("pay:") and r[4:].isdigit()]
    if not ids:
        return 0
    total = 0
    for chunk in range(0, len(ids), 500):
        total += int(
            session.scalar(
                select(func.coalesce(func.sum(PaymentOrder.amount_fen - PaymentOrder.refunded_fen), 0)).where(
                    PaymentOrder.id.in_(ids[chunk : chunk + 500])
                )
            )
            or 0
        )
    return total


def _new_friends(session: Session, campaign: Campaign) -> int:
    if campaign.wecom_channel_id is None:
        return 0
    from backend.wecom.models import ChannelFactKind, WeComChannelFact

    F = WeComChannelFact
    return int(
        session.scalar(
            select(func.count(distinct(F.friend_id))).where(
                F.channel_id == campaign.wecom_channel_id,
                F.kind == ChannelFactKind.ADDED,
                F.occurred_at >= campaign.starts_at,
                F.occurred_at < (campaign.ended_at or campaign.ends_at),
            )
        )
        or 0
    )
