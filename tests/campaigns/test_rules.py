"""Earning rules: the documented evaluation order (priority, stop flag, overlapping windows,
multipliers, caps that do not stop), targeting, idempotency per rule + ref, the wired actions
(registration, car bound, spend) and bad input."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from freezegun import freeze_time
from sqlalchemy import func, select

from backend.campaigns.models import CampaignGrant
from backend.campaigns.service import on_action
from backend.platform.db import utcnow
from backend.points import service as points
from backend.points.models import PointsLedger
from backend.touchpoints.models import Touchpoint
from tests.campaigns.conftest import APP, WB, iso, make_campaign, make_rule, vin


def _grants(db_session: Any, customer_id: int) -> dict[int, int]:
    rows = db_session.execute(
        select(CampaignGrant.rule_id, func.sum(CampaignGrant.points))
        .where(CampaignGrant.customer_id == customer_id)
        .group_by(CampaignGrant.rule_id)
    ).all()
    return {r: int(p) for r, p in rows}


def _bind(client: Any, headers: dict, n: int) -> None:
    resp = client.post(f"{APP}/me/cars", json={"vin": vin(n), "brand": "大众"}, headers=headers)
    assert resp.status_code == 201, resp.get_json()


def test_evaluation_order_with_overlapping_windows_priorities_stop_caps_and_multipliers(
    client: Any, db_session: Any, tree: Any, make_customer: Any, member_headers: Any, marketing: Any, app_ctx: Any
) -> None:
    t0 = utcnow()
    # Standing rules for binding a car (owner: the group). R1 stops lower granting rules once it
    # grants; its total cap per member is 50, so it grants only once. R3's window opens later.
    r1 = make_rule(client, marketing, name="R1", points=50, priority=10, stop_processing=True, cap_total=50)
    r2 = make_rule(client, marketing, name="R2", points=30, priority=5)
    r3 = make_rule(
        client,
        marketing,
        name="R3",
        points=20,
        priority=20,
        valid_from=iso(t0 + timedelta(days=5)),
        valid_to=iso(t0 + timedelta(days=10)),
    )
    m_any = make_rule(client, marketing, name="M*", kind="multiplier", trigger="*", points=None, multiplier_pct=150)
    m_car = make_rule(client, marketing, name="Mcar", kind="multiplier", multiplier_pct=200, points=None, priority=-1)
    # A rule for another action never runs on car_bound.
    make_rule(client, marketing, name="reg", trigger="registration", points=99, priority=100)
    owner = make_customer(tree.stores[0], openid="o-order")

    # Day 0: R3 not valid yet. R1 (priority 10) grants 50 and stops R2. Multipliers on base 50:
    # M* +25 (150 %), Mcar +50 (200 %): they add up on the same base, no compounding.
    _bind(client, member_headers(owner), 1)
    assert _grants(db_session, owner.id) == {r1["id"]: 50, m_any["id"]: 25, m_car["id"]: 50}

    # Day 6: R3 (priority 20) is valid and runs first: 20. R1 is capped (50 total already) —
    # a capped rule does not stop — so R2 grants 30. Base 50 → M* +25, Mcar +50.
    with freeze_time(t0 + timedelta(days=6)):
        _bind(client, member_headers(owner), 2)
        outcomes = on_action(db_session, owner.id, "car_bound", ref=f"car:{vin(2)}")  # a replay
    assert [(o.rule_id, o.status) for o in outcomes] == [
        (r3["id"], "replayed"),
        (r1["id"], "capped"),
        (r2["id"], "replayed"),
        (m_any["id"], "replayed"),
        (m_car["id"], "replayed"),
    ]
    assert _grants(db_session, owner.id) == {
        r1["id"]: 50,
        r2["id"]: 30,
        r3["id"]: 20,
        m_any["id"]: 50,
        m_car["id"]: 100,
    }
    # Day 11: R3's window is over; R1 still capped; R2 30; multipliers on 30.
    with freeze_time(t0 + timedelta(days=11)):
        _bind(client, member_headers(owner), 3)
    assert _grants(db_session, owner.id)[r2["id"]] == 60
    # Every grant went through the ledger (one row each, its key per rule + ref) and is a
    # touchpoint; the books balance.
    n_grants = db_session.scalar(select(func.count()).select_from(CampaignGrant))
    assert n_grants == 10
    ledger = db_session.scalar(
        select(func.count()).select_from(PointsLedger).where(PointsLedger.idempotency_key.like("campaign:%"))
    )
    assert ledger == n_grants
    touches = db_session.scalar(
        select(func.count()).select_from(Touchpoint).where(Touchpoint.kind == "campaign_points_granted")
    )
    assert touches == n_grants
    assert points.account(db_session, owner.id).available == sum(_grants(db_session, owner.id).values())
    assert points.check_drift(db_session, [owner.id]) == []


def test_registration_is_wired_and_granted_once(
    client: Any, db_session: Any, marketing: Any, sandbox_reset: Any, tree: Any
) -> None:
    rule = make_rule(client, marketing, name="注册礼", trigger="registration", points=100)
    code = sandbox_reset.state.issue_login_code("o-new-member", None)
    resp = client.post(f"{APP}/auth/login", json={"code": code})
    assert resp.status_code == 200, resp.get_json()
    cid = resp.get_json()["customer_id"]
    assert _grants(db_session, cid) == {rule["id"]: 100}
    # Logging in again is not a registration.
    client.post(f"{APP}/auth/login", json={"code": sandbox_reset.state.issue_login_code("o-new-member", None)})
    assert _grants(db_session, cid) == {rule["id"]: 100}
    tp = db_session.scalars(select(Touchpoint).where(Touchpoint.kind == "campaign_points_granted")).one()
    assert tp.customer_id == cid and tp.payload["rule_id"] == rule["id"] and tp.payload["points"] == 100


def test_targets_store_scope_tiers_and_segments(
    client: Any,
    db_session: Any,
    tree: Any,
    make_customer: Any,
    make_staff: Any,
    staff_headers: Any,
    marketing: Any,
    app_ctx: Any,
) -> None:
    s0, s1 = tree.stores[0], tree.stores[1]
    gold0, std0, gold1 = make_customer(s0), make_customer(s0), make_customer(s1)
    for c in (gold0, gold1):
        c.tier = "gold"
    db_session.commit()
    seg = client.post(
        f"{WB}/segments", json={"name": "金卡", "filters": {"tiers": ["gold"]}}, headers=marketing
    ).get_json()
    by_store = make_rule(client, marketing, name="store1", trigger="review", store_ids=[s1.id])
    by_tier = make_rule(client, marketing, name="gold", trigger="review", target_tiers=["gold"])
    by_segment = make_rule(client, marketing, name="seg", trigger="review", target_segment_id=seg["id"])
    # A store manager's rule applies at their store only.
    manager0 = staff_headers(make_staff(s0, "store_manager"))
    store_rule = make_rule(client, manager0, name="本店", trigger="review")
    for c in (gold0, std0, gold1):
        on_action(db_session, c.id, "review", ref=f"review:{c.id}")
    assert _grants(db_session, gold0.id).keys() == {by_tier["id"], by_segment["id"], store_rule["id"]}
    assert _grants(db_session, std0.id).keys() == {store_rule["id"]}
    assert _grants(db_session, gold1.id).keys() == {by_store["id"], by_tier["id"], by_segment["id"]}
    # The event's store decides over the home store.
    on_action(db_session, std0.id, "review", ref="review:at-store1", store_id=s1.id)
    assert _grants(db_session, std0.id).keys() == {store_rule["id"], by_store["id"]}


def test_campaign_rules_grant_only_while_it_runs(
    client: Any, db_session: Any, tree: Any, make_customer: Any, marketing: Any, app_ctx: Any
) -> None:
    t0 = utcnow()
    draft = make_campaign(client, marketing, schedule=False)
    rule = make_rule(client, marketing, campaign_id=draft["id"], trigger="referral", points=200)
    c = make_customer(tree.stores[0])
    assert on_action(db_session, c.id, "referral", ref="ref:1") == []  # draft: nothing
    later = make_campaign(client, marketing, starts_at=iso(t0 + timedelta(days=2)), ends_at=iso(t0 + timedelta(days=4)))
    assert later["state"] == "scheduled"
    later_rule = make_rule(client, marketing, campaign_id=later["id"], trigger="referral", points=7)
    assert client.post(f"{WB}/campaigns/{draft['id']}/schedule", headers=marketing).get_json()["state"] == "running"
    outcomes = on_action(db_session, c.id, "referral", ref="ref:2")
    assert [(o.rule_id, o.status, o.points) for o in outcomes] == [(rule["id"], "granted", 200)]
    with freeze_time(t0 + timedelta(days=3)):
        got = {o.rule_id for o in on_action(db_session, c.id, "referral", ref="ref:3")}
        assert got == {rule["id"], later_rule["id"]}
    ended = client.post(f"{WB}/campaigns/{draft['id']}/end", headers=marketing)
    assert ended.get_json()["state"] == "ended"
    assert client.post(f"{WB}/campaigns/{draft['id']}/end", headers=marketing).status_code == 409
    assert on_action(db_session, c.id, "referral", ref="ref:4") == []
    # Rules of a campaign that has started cannot be changed (only switched off).
    patch = client.patch(f"{WB}/earning-rules/{rule['id']}", json={"points": 1}, headers=marketing)
    assert patch.status_code == 409 and patch.get_json()["code"] == "campaigns.not_editable"
    assert (
        client.patch(f"{WB}/earning-rules/{rule['id']}", json={"active": False}, headers=marketing).status_code == 200
    )


def test_spend_rules_by_line_with_rounding_exclusions_and_refund_take_back(
    client: Any, db_session: Any, tree: Any, make_customer: Any, marketing: Any, app_ctx: Any
) -> None:
    from backend.payments.models import PaymentOrder, PaymentRefund, RefundState
    from backend.points import earning

    service_line = make_rule(
        client, marketing, name="保养双倍", kind="spend", trigger="spend", points=None, points_per_yuan=2,
        business_lines=["service"], rounding="ceil", exclude_business_types=["booking_deposit"],
    )  # fmt: skip
    parts_line = make_rule(
        client, marketing, name="配件", kind="spend", trigger="spend", points=None, points_per_yuan=1,
        business_lines=["parts"],
    )  # fmt: skip
    weekend = make_rule(client, marketing, name="消费翻倍", kind="multiplier", trigger="spend", points=None,
                        multiplier_pct=200)  # fmt: skip
    c = make_customer(tree.stores[0])

    def pay(amount: int, business_type: str, n: int) -> PaymentOrder:
        order = PaymentOrder(
            out_trade_no=f"DLCAMP{n:020d}",
            customer_id=c.id,
            business_type=business_type,
            business_id=str(n),
            description="t",
            amount_fen=amount,
            openid="o",
            expires_at=utcnow(),
            paid_at=utcnow(),
            refunded_fen=0,
        )
        db_session.add(order)
        db_session.flush()
        earning.on_paid(db_session, order.id)
        earning.on_paid(db_session, order.id)  # a duplicate: once
        return order

    order = pay(100_50, "service_package", 1)  # 100.50 yuan of service: ceil(201.0) = 201
    base = 100  # the policy's own 1 point per whole yuan (standard tier)
    assert _grants(db_session, c.id) == {service_line["id"]: 201, weekend["id"]: base + 201}
    acc = points.account(db_session, c.id)
    assert acc.pending == base + 201 + base + 201 and acc.available == 0  # pending in the return window
    pay(50_00, "parts_order", 2)
    assert _grants(db_session, c.id)[parts_line["id"]] == 50
    # A booking deposit is service spend, but the service rule excludes that business type: only
    # the multiplier runs, on the policy's own 20 points.
    before = _grants(db_session, c.id)
    pay(20_00, "booking_deposit", 3)
    after = _grants(db_session, c.id)
    assert after[service_line["id"]] == before[service_line["id"]]
    assert after[weekend["id"]] == before[weekend["id"]] + 20
    # A refund of half the first order takes back half of each of its pending grants.
    refund = PaymentRefund(
        order_id=order.id,
        out_refund_no="RCAMP-1",
        amount_fen=50_25,
        reason="退款",
        state=RefundState.SUCCEEDED,
        requested_by="staff:1",
    )
    db_session.add(refund)
    db_session.flush()
    earning.on_refunded(db_session, order.id, refund.id)
    earning.on_refunded(db_session, order.id, refund.id)  # once
    expected_pending = (base - 50) + (201 - 100) + (301 - 150) + (50 + 50 + 100) + (20 + 20)
    assert points.account(db_session, c.id).pending == expected_pending
    assert points.check_drift(db_session, [c.id]) == []


def test_bad_input_answers_422_with_stable_codes(
    client: Any, db_session: Any, tree: Any, make_staff: Any, staff_headers: Any, marketing: Any
) -> None:
    from backend.campaigns.models import Campaign, EarningRule

    now = utcnow()
    manager0 = staff_headers(make_staff(tree.stores[0], "store_manager"))
    store3 = tree.stores[3].id
    base = {"name": "x", "kind": "action", "trigger": "car_bound", "points": 10, "valid_from": iso(now)}
    cases = [
        ({"valid_to": iso(now - timedelta(days=1))}, "campaigns.window_invalid"),
        ({"valid_to": iso(now)}, "campaigns.window_invalid"),
        ({"points": -5}, "campaigns.points_invalid"),
        ({"points": 0}, "campaigns.points_invalid"),
        ({"points": None}, "campaigns.points_invalid"),
        ({"cap_day": -1}, "campaigns.limit_invalid"),
        ({"budget_points": 0}, "campaigns.limit_invalid"),
        ({"trigger": "birthday"}, "campaigns.trigger_invalid"),
        ({"kind": "multiplier", "points": None, "multiplier_pct": 50}, "campaigns.multiplier_invalid"),
        ({"kind": "spend", "trigger": "spend", "points": None, "points_per_yuan": -1}, "campaigns.points_invalid"),
        (
            {"kind": "spend", "trigger": "spend", "points": None, "points_per_yuan": 1, "business_lines": ["food"]},
            "campaigns.rule_invalid",
        ),  # fmt: skip
        ({"target_tiers": ["diamond"]}, "campaigns.rule_invalid"),
        ({"target_segment_id": 999999}, "campaigns.segment_invalid"),
        ({"kind": "bonus"}, "request.invalid"),
        ({"valid_from": "2026-12-01T00:00:00"}, "request.invalid"),  # no offset: refused, not guessed
        ({"colour": "red"}, "request.invalid"),
    ]
    for change, code in cases:
        resp = client.post(f"{WB}/earning-rules", json=base | change, headers=marketing)
        assert resp.status_code == 422 and resp.get_json()["code"] == code, (change, resp.get_json())
    other_store = client.post(f"{WB}/earning-rules", json=base | {"store_ids": [store3]}, headers=manager0)
    assert other_store.status_code == 422 and other_store.get_json()["code"] == "campaigns.store_out_of_scope"
    window = {"name": "c", "starts_at": iso(now), "ends_at": iso(now - timedelta(hours=1))}
    resp = client.post(f"{WB}/campaigns", json=window, headers=marketing)
    assert resp.status_code == 422 and resp.get_json()["code"] == "campaigns.window_invalid"
    resp = client.post(
        f"{WB}/campaigns", json=window | {"ends_at": iso(now + timedelta(days=1)), "budget_points": -10},
        headers=marketing,
    )  # fmt: skip
    assert resp.status_code == 422 and resp.get_json()["code"] == "campaigns.limit_invalid"
    assert db_session.scalar(select(func.count()).select_from(EarningRule)) == 0
    assert db_session.scalar(select(func.count()).select_from(Campaign)) == 0
    # A valid rule, then a bad patch: refused, nothing changed.
    rule = make_rule(client, marketing)
    bad = client.patch(f"{WB}/earning-rules/{rule['id']}", json={"valid_to": iso(now - timedelta(days=9))},
                       headers=marketing)  # fmt: skip
    assert bad.status_code == 422 and bad.get_json()["code"] == "campaigns.window_invalid"
    assert client.get(f"{WB}/earning-rules/{rule['id']}", headers=marketing).get_json()["valid_to"] is None
