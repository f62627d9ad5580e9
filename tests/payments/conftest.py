"""Payments test harness: a throw-away business type with recorded effects, and the sandbox's
notification delivery wired to our callback endpoints through the Flask test client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from backend.payments import effects
from backend.payments.effects import BusinessEffect, Quote
from integrations.sandbox.wechatpay_ledger import ledger

BUSINESS_TYPE = "test_item"


@dataclass
class EffectLog:
    prices: dict[str, int] = field(default_factory=dict)
    store_ids: dict[str, int | None] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, event: str) -> list[tuple[Any, ...]]:
        with self.lock:
            return [c for c in self.calls if c[0] == event]


@pytest.fixture
def pay_effects() -> Iterator[EffectLog]:
    log = EffectLog()

    def quote(session: Any, customer_id: int, business_id: str) -> Quote:
        from backend.platform.errors import AppError

        if business_id not in log.prices:
            raise AppError("payment.order_not_found", 404)
        return Quote(
            amount_fen=log.prices[business_id],
            description=f"测试商品 {business_id}",
            store_id=log.store_ids.get(business_id),
            expires_in=timedelta(minutes=30),
        )

    def record(*call: Any) -> None:
        with log.lock:
            log.calls.append(call)

    effects.register_effect(
        BUSINESS_TYPE,
        BusinessEffect(
            on_paid=lambda s, order_id: record("paid", order_id),
            on_refunded=lambda s, order_id, refund_id: record("refunded", order_id, refund_id),
            on_closed=lambda s, order_id: record("closed", order_id),
            quote=quote,
        ),
    )
    try:
        yield log
    finally:
        effects.unregister_effect(BUSINESS_TYPE)


def callback_path(url: str) -> str:
    """The configured notify URLs point at a test host; route them to our callback endpoints."""
    return "/callbacks/wechatpay/refund" if url.rstrip("/").endswith("/refund") else "/callbacks/wechatpay/payment"


@pytest.fixture
def deliver_to_app(app: Any, sandbox_reset: Any) -> Iterator[list[tuple[str, int]]]:
    """Sandbox notifications are POSTed to the app (a fresh test client per delivery, so
    concurrent deliveries are independent requests)."""
    seen: list[tuple[str, int]] = []

    def transport(url: str, headers: dict[str, str], body: str) -> int:
        response = app.test_client().post(callback_path(url), data=body.encode("utf-8"), headers=headers)
        seen.append((callback_path(url), response.status_code))
        return response.status_code

    book = ledger(sandbox_reset.state)
    book.transport = transport
    try:
        yield seen
    finally:
        book.transport = None


@pytest.fixture
def owner(tree: Any, make_customer: Any, member_headers: Any) -> Any:
    customer = make_customer(tree.stores[0], openid="o-payer-0001")

    class Owner:
        id = customer.id
        headers = member_headers(customer)
        store_id = tree.stores[0].id

    return Owner


def create_order(client: Any, owner: Any, pay_effects: EffectLog, business_id: str, amount: int, **kw: Any) -> Any:
    pay_effects.prices[business_id] = amount
    pay_effects.store_ids[business_id] = owner.store_id
    return client.post(
        "/api/app/v1/payments/orders",
        json={"business_type": BUSINESS_TYPE, "business_id": business_id},
        headers={**owner.headers, **kw.pop("headers", {})},
    )
