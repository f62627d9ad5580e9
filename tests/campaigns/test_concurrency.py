"""Caps and budgets under real concurrency (threads, MariaDB, committed transactions): no
concurrent burst of qualifying events can pass a campaign budget, a rule budget or a member's
cap, and the same ref granted from many threads at once is granted once."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.campaigns.models import Campaign, CampaignGrant, EarningRule
from backend.customers.models import Car, Customer
from backend.platform.db import db
from backend.points.models import PointsLedger
from tests.campaigns.conftest import APP, WB, make_campaign, make_rule, vin
from tests.threads import run_threads

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def _scalar(app: Any, stmt: Any) -> Any:
    with app.app_context():
        return db.session().scalar(stmt)


def test_budget_of_1000_points_under_300_concurrent_events_grants_exactly_100(
    app: Any, client: Any, tree: Any, marketing: Any, member_headers: Any, db_session: Any
) -> None:
    campaign = make_campaign(client, marketing, schedule=False, budget_points=1000)
    rule = make_rule(client, marketing, campaign_id=campaign["id"], name="绑车送10分", points=10)
    assert client.post(f"{WB}/campaigns/{campaign['id']}/schedule", headers=marketing).get_json()["state"] == "running"
    members = [Customer(name=f"并发{i}", home_store_id=tree.stores[i % 4].id) for i in range(300)]
    db_session.add_all(members)
    db_session.commit()
    headers = [member_headers(m) for m in members]

    started = time.perf_counter()
    results = run_threads(
        300, lambda i: client.post(f"{APP}/me/cars", json={"vin": vin(10_000 + i)}, headers=headers[i])
    )
    elapsed = time.perf_counter() - started
    failed = [r.get_json() if hasattr(r, "get_json") else r for r in results if getattr(r, "status_code", 0) != 201]
    assert not failed, failed[:3]

    assert _scalar(app, select(func.count()).select_from(Car)) == 300  # every car bound
    assert _scalar(app, select(func.count()).select_from(CampaignGrant)) == 100
    assert _scalar(app, select(func.sum(CampaignGrant.points))) == 1000
    assert _scalar(app, select(func.count(func.distinct(CampaignGrant.customer_id)))) == 100
    assert _scalar(app, select(Campaign.budget_used).where(Campaign.id == campaign["id"])) == 1000
    assert _scalar(app, select(Campaign.budget_exhausted_at).where(Campaign.id == campaign["id"])) is not None
    from backend.wecom.models import AppMessage

    alerts = select(func.count()).select_from(AppMessage).where(AppMessage.kind == "campaign_budget")
    assert _scalar(app, alerts) == 1  # the creator is told once that the budget ran out
    paid = select(func.sum(PointsLedger.delta)).where(PointsLedger.idempotency_key.like(f"campaign:{rule['id']}:%"))
    assert _scalar(app, paid) == 1000  # the ledger paid exactly the budget
    print(f"\n300 concurrent car bindings against a 1,000-point budget: {elapsed:.2f} s")


def test_per_member_caps_and_rule_budget_hold_under_concurrency(
    app: Any, client: Any, tree: Any, marketing: Any, member_headers: Any, make_customer: Any
) -> None:
    daily = make_rule(client, marketing, name="每日上限50", trigger="review", points=10, cap_day=50)
    total = make_rule(client, marketing, name="累计上限30", trigger="review", points=10, cap_total=30)
    budget = make_rule(client, marketing, name="规则预算70", trigger="review", points=7, budget_points=70)
    member = make_customer(tree.stores[0])
    others = [make_customer(tree.stores[1]) for _ in range(2)]
    cid, other_ids = member.id, [o.id for o in others]

    def review(i: int) -> None:
        from backend.campaigns.service import on_action

        with app.app_context():
            s = db.session()
            who = cid if i < 40 else other_ids[i % 2]
            on_action(s, who, "review", ref=f"review:{i}")
            s.commit()

    errors = [r for r in run_threads(60, review) if r is not None]
    assert not errors, errors

    def grants(rule_id: int, customer_id: int | None = None) -> int:
        where = [CampaignGrant.rule_id == rule_id]
        if customer_id is not None:
            where.append(CampaignGrant.customer_id == customer_id)
        return _scalar(app, select(func.count()).select_from(CampaignGrant).where(*where))

    assert grants(daily["id"], cid) == 5  # 50 points a day, 10 each
    assert grants(total["id"], cid) == 3  # 30 in total
    assert grants(daily["id"], other_ids[0]) == 5 and grants(daily["id"], other_ids[1]) == 5
    assert grants(budget["id"]) == 10  # 70 points of budget, 7 each, across members
    assert _scalar(app, select(EarningRule.budget_used).where(EarningRule.id == budget["id"])) == 70


def test_the_same_ref_from_many_threads_is_granted_once(
    app: Any, client: Any, tree: Any, marketing: Any, make_customer: Any
) -> None:
    rule = make_rule(client, marketing, name="推荐购车", trigger="referral", points=500)
    cid = make_customer(tree.stores[0]).id

    def refer(i: int) -> list[str]:
        from backend.campaigns.service import on_action

        with app.app_context():
            s = db.session()
            outcomes = on_action(s, cid, "referral", ref="lead:77")
            s.commit()
            return [o.status for o in outcomes]

    results = run_threads(12, refer)
    assert sorted(r[0] for r in results) == ["granted"] + ["replayed"] * 11, results
    assert _scalar(app, select(func.count()).select_from(CampaignGrant).where(CampaignGrant.rule_id == rule["id"])) == 1
    assert _scalar(app, select(func.sum(PointsLedger.delta)).where(PointsLedger.customer_id == cid)) == 500
