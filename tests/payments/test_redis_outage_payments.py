"""Redis down while an owner pays and staff refund: the order is created (the same
Idempotency-Key twice makes one prepay), the payment notification is accepted and the order
paid at once, the refund (the same key twice) is sent to WeChat Pay once and settled by its
notification; the business effects (paid, refunded) wait in the outbox and run once when Redis
is back, and the keys replay after it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from backend.payments.models import PaymentOrder, PaymentRefund
from backend.platform.db import db
from backend.platform.jobs import OutboxJob
from integrations.sandbox.wechatpay_ledger import notify_paid, notify_refund
from tests.payments.conftest import create_order

WB = "/api/workbench/v1"


def _jobs(app: Any) -> Counter[tuple[str, str]]:
    with app.app_context():
        try:
            return Counter((str(n), str(s)) for n, s in db.session().execute(select(OutboxJob.name, OutboxJob.status)))
        finally:
            db.session.remove()


def _order(app: Any, order_id: int) -> tuple[str, int, int]:
    with app.app_context():
        try:
            order = db.session().get(PaymentOrder, order_id)
            refunds = db.session().scalars(select(PaymentRefund).where(PaymentRefund.order_id == order_id)).all()
            return str(order.state), order.refunded_fen, len(refunds)
        finally:
            db.session.remove()


@pytest.mark.redis
def test_pay_and_refund_while_redis_is_down_then_effects_once(
    app: Any,
    client: Any,
    owner: Any,
    pay_effects: Any,
    sandbox_reset: Any,
    deliver_to_app: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    redis_outage: Any,
) -> None:
    manager = staff_headers(make_staff(tree.stores[0], "store_manager"))
    state = sandbox_reset.state
    redis_outage.down()
    made = [create_order(client, owner, pay_effects, "rd-sku", 4200, headers={"Idempotency-Key": "rd-pay-1"})]
    made.append(create_order(client, owner, pay_effects, "rd-sku", 4200, headers={"Idempotency-Key": "rd-pay-1"}))
    assert [m.status_code for m in made] == [201, 201], made[0].get_json()
    assert made[1].headers.get("Idempotent-Replayed") == "true"
    order = made[0].get_json()["order"]
    assert made[1].get_json()["order"]["id"] == order["id"]
    assert sandbox_reset.hits("/v3/pay/transactions/jsapi") == 1
    _, statuses = notify_paid(state, order["out_trade_no"], copies=2)
    assert statuses == [204, 204]
    assert _order(app, order["id"]) == ("paid", 0, 0)
    assert pay_effects.of("paid") == []  # the effect is a job: it waits for Redis

    url = f"{WB}/payments/orders/{order['id']}/refunds"
    refund_headers = {**manager, "Idempotency-Key": "rd-refund-1"}
    body = {"reason": "客户取消服务", "amount_fen": 1200}
    asked = [client.post(url, json=body, headers=refund_headers) for _ in range(2)]
    assert [r.status_code for r in asked] == [201, 201], asked[0].get_json()
    assert asked[1].get_json()["id"] == asked[0].get_json()["id"]
    refund = asked[0].get_json()
    assert sandbox_reset.hits("/v3/refund/domestic/refunds") == 1
    _, statuses = notify_refund(state, refund["out_refund_no"], copies=2)
    assert statuses == [204, 204]
    assert _order(app, order["id"]) == ("partially_refunded", 1200, 1)
    jobs = _jobs(app)
    assert {s for _, s in jobs} == {"pending"}, jobs

    redis_outage.up()
    redis_outage.drain()
    assert pay_effects.of("paid") == [("paid", order["id"])]
    assert pay_effects.of("refunded") == [("refunded", order["id"], refund["id"])]
    # The same keys once Redis is back: the same order and refund, nothing sent again.
    again = create_order(client, owner, pay_effects, "rd-sku", 4200, headers={"Idempotency-Key": "rd-pay-1"})
    assert again.status_code == 201 and again.get_json()["order"]["id"] == order["id"]
    replay = client.post(url, json=body, headers=refund_headers)
    assert replay.status_code == 201 and replay.get_json()["id"] == refund["id"]
    assert redis_outage.drain() == 0
    assert sandbox_reset.hits("/v3/pay/transactions/jsapi") == 1
    assert sandbox_reset.hits("/v3/refund/domestic/refunds") == 1
    assert _order(app, order["id"]) == ("partially_refunded", 1200, 1)
    assert len(pay_effects.of("paid")) == 1 and len(pay_effects.of("refunded")) == 1
    jobs = _jobs(app)
    assert {s for _, s in jobs} == {"done"}, jobs
