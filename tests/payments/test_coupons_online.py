"""A coupon on a payment order: off the price, locked at creation, used when paid, released when
the order closes or is refunded in full; one coupon never discounts two orders."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.offers.models import Coupon, CouponKind, CouponStatus, CouponTemplate
from backend.payments import service
from backend.payments.models import PaymentOrder
from backend.platform.db import commit, db, utcnow
from backend.touchpoints.models import Touchpoint
from integrations.sandbox.wechatpay_ledger import notify_paid, notify_refund
from tests.payments.conftest import BUSINESS_TYPE
from tests.threads import run_threads

APP = "/api/app/v1"


def _coupon(session: Any, customer_id: int, store_id: int | None, **template: Any) -> int:
    now = utcnow()
    fields = {"name": "满200减50", "kind": CouponKind.THRESHOLD, "value_fen": 5000, "threshold_fen": 20000}
    row = CouponTemplate(
        **(fields | template),
        store_id=store_id,
        stock=10,
        claim_starts_at=now - timedelta(days=1),
        claim_ends_at=now + timedelta(days=1),
        use_days=30,
    )
    session.add(row)
    session.flush()
    coupon = Coupon(
        template_id=row.id,
        customer_id=customer_id,
        code=f"{row.id:012d}",
        source="staff",
        issue_key=f"test:{row.id}",
        valid_from=now - timedelta(hours=1),
        valid_until=now + timedelta(days=30),
    )
    session.add(coupon)
    session.commit()
    return coupon.id


def _order(client: Any, owner: Any, pay_effects: Any, business_id: str, amount: int, *coupon_ids: int) -> Any:
    pay_effects.prices[business_id] = amount
    pay_effects.store_ids[business_id] = owner.store_id
    body = {"business_type": BUSINESS_TYPE, "business_id": business_id, "coupon_ids": list(coupon_ids)}
    return client.post(f"{APP}/payments/orders", json=body, headers=owner.headers)


def _state(session: Any, coupon_id: int) -> tuple[str, int | None]:
    session.expire_all()
    coupon = session.get(Coupon, coupon_id)
    return str(coupon.status), coupon.locked_order_id


def test_discount_lock_use_and_refund_release(
    client: Any,
    db_session: Any,
    owner: Any,
    pay_effects: Any,
    sandbox_reset: Any,
    deliver_to_app: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
) -> None:
    manager = staff_headers(make_staff(tree.stores[0], "store_manager"))
    coupon_id = _coupon(db_session, owner.id, owner.store_id)
    low = _order(client, owner, pay_effects, "sku-low", 19999, coupon_id)
    assert low.status_code == 409 and low.get_json()["code"] == "coupon.threshold_not_met"
    assert db_session.scalar(select(func.count()).select_from(PaymentOrder)) == 0  # nothing half-written

    resp = _order(client, owner, pay_effects, "sku-1", 30000, coupon_id)
    assert resp.status_code == 201, resp.get_json()
    order = resp.get_json()["order"]
    assert order["amount_fen"] == 25000
    assert _state(db_session, coupon_id) == ("locked", order["id"])
    # Asking again for the same object with the same coupon is the same order.
    again = _order(client, owner, pay_effects, "sku-1", 30000, coupon_id)
    assert again.status_code == 201 and again.get_json()["order"]["id"] == order["id"]
    # The coupon cannot go on a second order, nor be used at the store, while this one holds it.
    other = _order(client, owner, pay_effects, "sku-2", 30000, coupon_id)
    assert other.status_code == 409 and other.get_json()["code"] == "coupon.in_use"
    qr = client.get(f"{APP}/me/coupons/{coupon_id}/qr", headers=owner.headers)
    assert qr.status_code == 409 and qr.get_json()["code"] == "coupon.in_use"

    notify_paid(sandbox_reset.state, order["out_trade_no"], copies=2)
    assert _state(db_session, coupon_id) == ("used", order["id"])
    used = db_session.scalars(
        select(Touchpoint).where(Touchpoint.customer_id == owner.id, Touchpoint.kind == "coupon_used")
    ).all()
    assert len(used) == 1 and used[0].payload["discount_fen"] == 5000

    # A partial refund keeps the coupon used; the rest of the money back gives it back.
    refunds = f"/api/workbench/v1/payments/orders/{order['id']}/refunds"
    part = client.post(
        refunds, json={"reason": "部分退款", "amount_fen": 5000, "out_refund_no": "CP-R1"}, headers=manager
    )
    assert part.status_code == 201, part.get_json()
    notify_refund(sandbox_reset.state, "CP-R1")
    assert _state(db_session, coupon_id) == ("used", order["id"])
    rest = client.post(refunds, json={"reason": "全部退款", "out_refund_no": "CP-R2"}, headers=manager)
    assert rest.status_code == 201, rest.get_json()
    notify_refund(sandbox_reset.state, "CP-R2")
    assert _state(db_session, coupon_id) == ("unused", None)


def test_closed_order_releases_and_refusals(
    app: Any, client: Any, db_session: Any, owner: Any, pay_effects: Any, sandbox_reset: Any, tree: Any
) -> None:
    coupon_id = _coupon(db_session, owner.id, None, kind=CouponKind.PERCENT, percent_off=15, cap_fen=3000)
    order = _order(client, owner, pay_effects, "sku-3", 10001, coupon_id).get_json()["order"]
    assert order["amount_fen"] == 10001 - 1500  # 15% of 100.01 yuan, rounded down to the fen
    with app.app_context():
        closed = service.close_expired(db.session(), service.gateway(), now=utcnow() + timedelta(minutes=31))
        commit(db.session())
    assert closed == [order["id"]]
    assert _state(db_session, coupon_id) == ("unused", None)
    # Usable again, and capped: 15% of 500 yuan is 75, the cap 30.
    big = _order(client, owner, pay_effects, "sku-4", 50000, coupon_id).get_json()["order"]
    assert big["amount_fen"] == 47000

    voucher = _coupon(db_session, owner.id, None, kind=CouponKind.VOUCHER, service_type="wash")
    resp = _order(client, owner, pay_effects, "sku-5", 10000, voucher)
    assert resp.status_code == 409 and resp.get_json()["code"] == "coupon.store_only"
    elsewhere = _coupon(db_session, owner.id, tree.stores[3].id, kind=CouponKind.FIXED, value_fen=100)
    resp = _order(client, owner, pay_effects, "sku-6", 10000, elsewhere)
    assert resp.status_code == 409 and resp.get_json()["code"] == "coupon.wrong_store"
    typed = _coupon(db_session, owner.id, None, kind=CouponKind.FIXED, value_fen=100, business_types=["mall_order"])
    resp = _order(client, owner, pay_effects, "sku-7", 10000, typed)
    assert resp.status_code == 409 and resp.get_json()["code"] == "coupon.not_for_this_order"
    one_item = _coupon(db_session, owner.id, None, kind=CouponKind.FIXED, value_fen=100, item_ids=["sku-ok"])
    resp = _order(client, owner, pay_effects, "sku-other", 10000, one_item)
    assert resp.status_code == 409 and resp.get_json()["code"] == "coupon.not_for_this_order"
    assert _order(client, owner, pay_effects, "sku-ok", 10000, one_item).get_json()["order"]["amount_fen"] == 9900
    whole = _coupon(db_session, owner.id, None, kind=CouponKind.FIXED, value_fen=99999)
    assert _order(client, owner, pay_effects, "sku-8", 500, whole).get_json()["order"]["amount_fen"] == 1
    resp = _order(client, owner, pay_effects, "sku-9", 500, 987654)
    assert resp.status_code == 404 and resp.get_json()["code"] == "coupon.not_found"


@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_one_coupon_on_two_orders_at_once_discounts_one(
    app: Any, owner: Any, pay_effects: Any, sandbox_reset: Any
) -> None:
    with app.app_context():
        coupon_id = _coupon(db.session(), owner.id, owner.store_id)
    client = app.test_client()
    results = run_threads(8, lambda i: _order(client, owner, pay_effects, f"race-{i}", 30000, coupon_id))
    statuses = sorted(getattr(r, "status_code", r) for r in results)
    assert statuses == [201] + [409] * 7, statuses
    assert {r.get_json()["code"] for r in results if r.status_code == 409} == {"coupon.in_use"}
    with app.app_context():
        s = db.session()
        orders = s.scalars(select(PaymentOrder)).all()
        assert [o.amount_fen for o in orders] == [25000]  # the losers left no order behind
        assert s.get(Coupon, coupon_id).locked_order_id == orders[0].id
        assert s.get(Coupon, coupon_id).status == CouponStatus.LOCKED


def test_stacking_follows_each_templates_rules_in_the_documented_order(
    client: Any, db_session: Any, owner: Any, pay_effects: Any, sandbox_reset: Any
) -> None:
    alone_a = _coupon(db_session, owner.id, None, kind=CouponKind.FIXED, value_fen=1000)
    alone_b = _coupon(db_session, owner.id, None, kind=CouponKind.FIXED, value_fen=2000)
    resp = _order(client, owner, pay_effects, "stack-1", 30000, alone_a, alone_b)
    assert resp.status_code == 409 and resp.get_json()["code"] == "coupon.not_combinable"
    assert resp.get_json()["errors"]["rule"] == "exclusive"  # the default: one coupon per order

    threshold = _coupon(db_session, owner.id, None, exclusive=False, combinable_kinds=["percent"])
    percent = _coupon(
        db_session, owner.id, None, kind=CouponKind.PERCENT, percent_off=15, cap_fen=3000, exclusive=False
    )
    fixed = _coupon(db_session, owner.id, None, kind=CouponKind.FIXED, value_fen=500, exclusive=False)
    resp = _order(client, owner, pay_effects, "stack-2", 30000, threshold, fixed)
    assert resp.status_code == 409 and resp.get_json()["errors"] == {"coupon_id": threshold, "rule": "combinable_kinds"}
    assert db_session.scalar(select(func.count()).select_from(PaymentOrder)) == 0

    # Given percent first, applied threshold first: 300 - 50 = 250, then 15% of 250 = 37.50,
    # capped at 30: 220 to pay.
    resp = _order(client, owner, pay_effects, "stack-3", 30000, percent, threshold)
    assert resp.status_code == 201, resp.get_json()
    order = resp.get_json()["order"]
    assert order["amount_fen"] == 22000
    db_session.expire_all()
    held = {c.id: (str(c.status), c.locked_order_id, c.discount_fen) for c in db_session.scalars(select(Coupon))}
    assert held[threshold] == ("locked", order["id"], 5000)
    assert held[percent] == ("locked", order["id"], 3000)
    assert held[fixed][0] == "unused"
    # Each coupon once; not more than five.
    resp = _order(client, owner, pay_effects, "stack-4", 30000, fixed, fixed)
    assert resp.status_code == 422 and resp.get_json()["code"] == "request.invalid"
