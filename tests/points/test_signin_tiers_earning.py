"""Daily sign-in, tiers, and points earned on spend (payments hooks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from backend.customers.models import Customer
from backend.notices.models import SubscribeNotice
from backend.platform.db import utcnow
from backend.points import earning, service, tiers
from backend.touchpoints.models import Touchpoint

# The services send notices through the outbox, which needs the app.
pytestmark = [pytest.mark.usefixtures("app_ctx")]


def test_sign_in_once_per_shanghai_day_with_streak_and_cycle(
    client: Any, make_customer: Any, member_headers: Any
) -> None:
    c = make_customer()
    start = datetime(2026, 5, 1, 15, 59, tzinfo=UTC)  # 23:59 in Shanghai
    points = []
    with freeze_time(start) as frozen:
        h = member_headers(c)
        r = client.post("/api/app/v1/points/sign-in", headers=h)
        assert r.status_code == 201 and r.get_json()["streak"] == 1
        again = client.post("/api/app/v1/points/sign-in", headers=h)
        assert again.status_code == 409 and again.get_json()["code"] == "signin.already_signed"
        points.append(r.get_json()["points"])
        for _ in range(7):  # 8 consecutive days: cycle 1..7, then day 1 again
            frozen.tick(timedelta(days=1))
            h = member_headers(c)
            body = client.post("/api/app/v1/points/sign-in", headers=h).get_json()
            points.append(body["points"])
        assert body["streak"] == 8 and body["cycle_day"] == 1
        frozen.tick(timedelta(days=2))  # a missed day resets the streak
        h = member_headers(c)
        body = client.post("/api/app/v1/points/sign-in", headers=h).get_json()
        assert body["streak"] == 1
        status = client.get("/api/app/v1/points/sign-in", headers=h).get_json()
        assert status["signed_today"] is True
        assert client.get("/api/app/v1/points/account", headers=h).get_json()["available"] == sum(points) + 5
    assert points == [5, 5, 10, 5, 5, 5, 25, 5]


def test_upgrade_is_immediate_and_uses_growth_not_balance(db_session: Any, make_customer: Any) -> None:
    c = make_customer()
    now = utcnow()
    service.earn(db_session, c.id, 900, key="g1", reason_code="t", operator="system:t", now=now)
    service.spend(db_session, c.id, 900, key="s1", reason_code="t", operator="member:1", now=now)
    service.earn(db_session, c.id, 100, key="g2", reason_code="t", operator="system:t", now=now)  # growth 1000
    assert db_session.scalar(select(Customer.tier).where(Customer.id == c.id)) == "silver"
    tp = db_session.scalars(
        select(Touchpoint).where(Touchpoint.customer_id == c.id, Touchpoint.kind == "tier_changed")
    ).one()
    assert tp.payload["to"] == "silver"
    notice = db_session.scalars(
        select(SubscribeNotice).where(SubscribeNotice.template_setting == "SUBSCRIBE_TEMPLATE_TIER_CHANGED")
    ).one()
    assert notice.customer_id == c.id
    # staff grants do not count toward tiers (growth, not balance)
    service.bulk_grant(db_session, "b1", [c.id], 10_000, "活动", staff_id=0)
    assert tiers.growth_value(db_session, c.id) == 1000
    assert db_session.scalar(select(Customer.tier).where(Customer.id == c.id)) == "silver"
    assert tiers.tier_for_growth(4999).code == "silver" and tiers.tier_for_growth(5000).code == "gold"


def test_downgrade_only_on_the_review_cycle(db_session: Any, make_customer: Any) -> None:
    c = make_customer()
    t0 = utcnow() - timedelta(days=800)
    service.earn(db_session, c.id, 5000, key="g", reason_code="t", operator="system:t", now=t0)
    assert db_session.scalar(select(Customer.tier).where(Customer.id == c.id)) == "gold"
    # 400 days later the growth has left the window: the review downgrades
    result = tiers.review_tiers(db_session, now=t0 + timedelta(days=400))
    assert result["downgraded"] == 1
    db_session.expire_all()
    assert db_session.get(Customer, c.id).tier == "standard"
    assert tiers.review_tiers(db_session, now=t0 + timedelta(days=401)) == {"downgraded": 0, "kept": 0}


def _payment(db_session: Any, customer_id: int, amount_fen: int, business_type: str = "service_package") -> Any:
    from backend.payments.models import PaymentOrder

    po = PaymentOrder(
        out_trade_no=f"DLEARN{utcnow().timestamp():.6f}".replace(".", ""),
        customer_id=customer_id,
        business_type=business_type,
        business_id="1",
        description="保养套餐",
        amount_fen=amount_fen,
        openid="o-earn",
        expires_at=utcnow(),
    )
    db_session.add(po)
    db_session.flush()
    return po


def _refund(db_session: Any, order: Any, amount: int, n: int) -> Any:
    from backend.payments.models import PaymentRefund, RefundState

    r = PaymentRefund(
        order_id=order.id,
        out_refund_no=f"R{order.id}-{n}",
        amount_fen=amount,
        reason="退款",
        state=RefundState.SUCCEEDED,
        requested_by="staff:1",
    )
    db_session.add(r)
    db_session.flush()
    return r


def test_points_earned_on_spend_pending_then_reversed_on_refund(
    db_session: Any, make_customer: Any, app_ctx: Any
) -> None:
    c = make_customer()
    db_session.execute(Customer.__table__.update().where(Customer.id == c.id).values(tier="gold"))
    order = _payment(db_session, c.id, 100_00)  # 100 yuan, gold ×1.5
    earning.on_paid(db_session, order.id)
    earning.on_paid(db_session, order.id)  # duplicate notify: once
    acc = service.account(db_session, c.id)
    assert (acc.pending, acc.available) == (150, 0)
    # partial refund inside the window cancels pending points
    earning.on_refunded(db_session, order.id, _refund(db_session, order, 40_00, 1).id)
    assert service.account(db_session, c.id).pending == 90
    service.activate_due(db_session, now=utcnow() + timedelta(days=8))
    acc = service.account(db_session, c.id)
    assert (acc.pending, acc.available) == (0, 90)
    # spend it all, then the rest is refunded: a debt, not a clamp
    service.spend(db_session, c.id, 90, key="s", reason_code="t", operator="member:1")
    r2 = _refund(db_session, order, 60_00, 2)
    earning.on_refunded(db_session, order.id, r2.id)
    earning.on_refunded(db_session, order.id, r2.id)
    assert service.account(db_session, c.id).available == -90
    assert service.check_drift(db_session, [c.id]) == []


def test_mall_cash_earns_nothing(db_session: Any, make_customer: Any, app_ctx: Any) -> None:
    c = make_customer()
    order = _payment(db_session, c.id, 50_00, business_type="mall_order")
    earning.on_paid(db_session, order.id)
    assert service.account(db_session, c.id).pending == 0
