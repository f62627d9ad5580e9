"""Campaigns: states through the periodic job, the dry run on current data, results
(participants, points, revenue attributed, new WeCom friends through the campaign's channel)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from freezegun import freeze_time

from backend.campaigns.service import advance_states, on_action
from backend.platform.db import utcnow
from backend.touchpoints.service import record
from tests.campaigns.conftest import WB, iso, linkable, make_campaign, make_rule


def test_states_follow_the_clock_and_the_job(
    client: Any, db_session: Any, tree: Any, marketing: Any, app_ctx: Any
) -> None:
    t0 = utcnow()
    events = linkable(db_session, tree.stores[0], events=2)["event"]
    campaign = make_campaign(
        client, marketing, schedule=False, starts_at=iso(t0 + timedelta(days=1)), ends_at=iso(t0 + timedelta(days=3))
    )
    cid = campaign["id"]
    assert campaign["state"] == "draft"
    patched = client.patch(
        f"{WB}/campaigns/{cid}", json={"goal": "老客召回", "links": {"event": events}}, headers=marketing
    )
    assert patched.status_code == 200 and patched.get_json()["links"] == {"coupon_template": [], "event": events}
    assert client.post(f"{WB}/campaigns/{cid}/end", headers=marketing).status_code == 409  # a draft cannot end
    assert client.post(f"{WB}/campaigns/{cid}/schedule", headers=marketing).get_json()["state"] == "scheduled"
    again = client.post(f"{WB}/campaigns/{cid}/schedule", headers=marketing)
    assert again.status_code == 409 and again.get_json()["code"] == "campaigns.state_invalid"

    def state() -> str:
        return client.get(f"{WB}/campaigns/{cid}", headers=marketing).get_json()["state"]

    with freeze_time(t0 + timedelta(days=1, minutes=1)):
        assert advance_states(db_session) == 1
        db_session.commit()
    assert state() == "running"
    bad = client.patch(f"{WB}/campaigns/{cid}", json={"name": "改名"}, headers=marketing)
    assert bad.status_code == 409 and bad.get_json()["code"] == "campaigns.not_editable"
    with freeze_time(t0 + timedelta(days=3, minutes=1)):
        assert advance_states(db_session) == 1
        assert advance_states(db_session) == 0  # re-run: nothing
        db_session.commit()
    assert state() == "ended"
    listed = client.get(f"{WB}/campaigns?state=ended", headers=marketing).get_json()["items"]
    assert [c["id"] for c in listed] == [cid]


def test_a_campaign_that_is_over_cannot_be_scheduled(client: Any, marketing: Any) -> None:
    t0 = utcnow()
    campaign = make_campaign(
        client, marketing, schedule=False, starts_at=iso(t0 - timedelta(days=3)), ends_at=iso(t0 - timedelta(days=1))
    )
    resp = client.post(f"{WB}/campaigns/{campaign['id']}/schedule", headers=marketing)
    assert resp.status_code == 422 and resp.get_json()["code"] == "campaigns.window_invalid"


def test_dry_run_estimates_reach_and_cost_on_current_data(
    client: Any, db_session: Any, tree: Any, make_customer: Any, marketing: Any, app_ctx: Any
) -> None:
    from backend.payments.models import PaymentOrder

    now = utcnow()
    gold = [make_customer(tree.stores[0]) for _ in range(4)]
    standard = [make_customer(tree.stores[1]) for _ in range(6)]
    for c in gold:
        c.tier = "gold"
    db_session.commit()
    # The last 30 days: 3 gold and 4 standard members bound a car; 2 gold members paid.
    for i, c in enumerate(gold[:3] + standard[:4]):
        record(
            db_session,
            customer_id=c.id,
            kind="car_bound",
            channel="miniprogram",
            source="t",
            source_ref=f"dry:{i}",
            occurred_at=now - timedelta(days=3),
        )
    for i, c in enumerate(gold[:2]):
        db_session.add(
            PaymentOrder(
                out_trade_no=f"DLDRY{i:021d}",
                customer_id=c.id,
                business_type="service_package",
                business_id=str(i),
                description="t",
                amount_fen=200_00,
                openid="o",
                expires_at=now,
                paid_at=now - timedelta(days=2),
            )
        )
    db_session.commit()
    seg = client.post(f"{WB}/segments", json={"name": "金卡", "filters": {"tiers": ["gold"]}}, headers=marketing)
    campaign = make_campaign(
        client,
        marketing,
        schedule=False,
        starts_at=iso(now + timedelta(days=1)),
        ends_at=iso(now + timedelta(days=16)),  # 15 days: half the lookback
        segment_id=seg.get_json()["id"],
        budget_points=5000,
    )
    bind = make_rule(client, marketing, campaign_id=campaign["id"], name="绑车", points=100)
    spend = make_rule(
        client, marketing, campaign_id=campaign["id"], name="保养", kind="spend", trigger="spend", points=None,
        points_per_yuan=3,
    )  # fmt: skip
    double = make_rule(
        client, marketing, campaign_id=campaign["id"], name="双倍", kind="multiplier", trigger="*", points=None,
        multiplier_pct=200,
    )  # fmt: skip
    resp = client.post(f"{WB}/campaigns/{campaign['id']}/dry-run", json={}, headers=marketing)
    assert resp.status_code == 200, resp.get_json()
    dry = resp.get_json()
    assert dry["reach"] == 4  # the segment: gold members only
    by_rule = {r["rule_id"]: r for r in dry["rules"]}
    assert by_rule[bind["id"]]["events_in_lookback"] == 3
    assert by_rule[bind["id"]]["estimated_points"] == 150  # 3 × 100 over 30 days → 15 days
    assert by_rule[spend["id"]]["events_in_lookback"] == 2
    assert by_rule[spend["id"]]["estimated_points"] == 600  # 2 × 200 yuan × 3 → half
    # The multiplier doubles what the policy (1 point per yuan) and the granting rules give:
    # orders 2 × (200 + 600), car bindings 3 × 100, all over half the lookback.
    assert by_rule[double["id"]]["events_in_lookback"] == 5
    assert by_rule[double["id"]]["estimated_points"] == (2 * 800 + 3 * 100) // 2
    assert dry["estimated_points"] == 750 + 950
    # The dry run writes nothing.
    assert client.get(f"{WB}/campaigns/{campaign['id']}/results", headers=marketing).get_json()["grants"] == 0


def test_results_count_participants_points_revenue_and_new_friends(
    client: Any, db_session: Any, tree: Any, make_customer: Any, marketing: Any, app_ctx: Any
) -> None:
    from backend.payments.models import PaymentOrder
    from backend.points import earning
    from backend.wecom.models import ChannelFactKind, FriendStatus, WeComChannel, WeComChannelFact, WeComFriend

    now = utcnow()
    channel = WeComChannel(corp_id="c", name="活动码", kind="campaign", state="cmp-1", store_id=tree.stores[0].id)
    db_session.add(channel)
    db_session.commit()
    campaign = make_campaign(client, marketing, schedule=False, wecom_channel_id=channel.id, budget_points=10_000)
    bind = make_rule(client, marketing, campaign_id=campaign["id"], name="绑车", points=20)
    spend = make_rule(
        client, marketing, campaign_id=campaign["id"], name="消费", kind="spend", trigger="spend", points=None,
        points_per_yuan=1,
    )  # fmt: skip
    assert client.post(f"{WB}/campaigns/{campaign['id']}/schedule", headers=marketing).get_json()["state"] == "running"
    members = [make_customer(tree.stores[0]) for _ in range(3)]
    for i, c in enumerate(members):
        on_action(db_session, c.id, "car_bound", ref=f"car:R{i}")
    order = PaymentOrder(
        out_trade_no="DLRESULT000000000000000001",
        customer_id=members[0].id,
        business_type="service_package",
        business_id="1",
        description="t",
        amount_fen=300_00,
        openid="o",
        expires_at=now,
        paid_at=now,
        refunded_fen=50_00,
    )
    db_session.add(order)
    db_session.flush()
    earning.on_paid(db_session, order.id)
    for i, c in enumerate(members[:2]):
        friend = WeComFriend(
            corp_id="c", userid="adv", external_userid=f"wm-r{i}", customer_id=c.id, status=FriendStatus.ACTIVE
        )
        db_session.add(friend)
        db_session.flush()
        for n, at in enumerate((now + timedelta(minutes=5), now - timedelta(days=2))):  # the second: before it
            db_session.add(
                WeComChannelFact(
                    source_ref=f"fact:{i}:{n}",
                    friend_id=friend.id,
                    channel_id=channel.id,
                    userid="adv",
                    kind=ChannelFactKind.ADDED,
                    day=at.date(),
                    occurred_at=at,
                )
            )
    db_session.commit()
    res = client.get(f"{WB}/campaigns/{campaign['id']}/results", headers=marketing).get_json()
    assert res["participants"] == 3
    assert res["grants"] == 4
    assert res["points_granted"] == 3 * 20 + 300
    assert res["budget_used"] == 360
    assert {r["rule_id"]: r["points"] for r in res["by_rule"]} == {bind["id"]: 60, spend["id"]: 300}
    assert res["revenue_attributed_fen"] == 250_00  # the order that earned a spend grant, less its refund
    assert res["new_wecom_friends"] == 2
    assert res["coupons_used"] == 0
    # Coupons pushed for the campaign count once used; unused ones and others' do not.
    from backend.offers.models import Coupon, CouponKind, CouponStatus, CouponTemplate

    template = CouponTemplate(
        name="活动券", kind=CouponKind.FIXED, value_fen=100, stock=3, issued=3, claim_starts_at=now,
        claim_ends_at=now + timedelta(days=1), use_days=1,
    )  # fmt: skip
    db_session.add(template)
    db_session.flush()
    for i, (status, campaign_id) in enumerate(
        [(CouponStatus.USED, campaign["id"]), (CouponStatus.UNUSED, campaign["id"]), (CouponStatus.USED, None)]
    ):
        db_session.add(
            Coupon(
                template_id=template.id, customer_id=members[i].id, code=f"{i:012d}", status=status, source="push",
                issue_key=f"results:{i}", valid_from=now, valid_until=now + timedelta(days=1), campaign_id=campaign_id,
                used_at=now if status == CouponStatus.USED else None,
            )
        )  # fmt: skip
    db_session.commit()
    res = client.get(f"{WB}/campaigns/{campaign['id']}/results", headers=marketing).get_json()
    assert res["coupons_used"] == 1


def test_lists_make_the_same_queries_for_2_or_20_items(client: Any, db_session: Any, tree: Any, marketing: Any) -> None:
    from sqlalchemy import event

    from backend.platform.db import db

    links = linkable(db_session, tree.stores[0], events=18)

    def count_queries(n: int, url: str) -> int:
        for i in range(n):
            make_campaign(
                client,
                marketing,
                schedule=False,
                links={"event": [links["event"][i]], "coupon_template": links["coupon_template"]},
            )
            client.post(f"{WB}/segments", json={"name": f"s{i}", "filters": {"has_car": True}}, headers=marketing)
            make_rule(client, marketing, name=f"r{i}")
        statements: list[str] = []
        listener = lambda *a, **k: statements.append(a[2])  # noqa: E731
        bind = db.session().get_bind()
        event.listen(bind, "before_cursor_execute", listener)
        try:
            resp = client.get(url, headers=marketing)
            assert resp.status_code == 200 and resp.get_json()["items"]
        finally:
            event.remove(bind, "before_cursor_execute", listener)
        return len(statements)

    for url in (f"{WB}/campaigns", f"{WB}/segments", f"{WB}/earning-rules"):
        assert count_queries(2, url) == count_queries(18, url), url
