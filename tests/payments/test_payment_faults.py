"""Concurrency and faults: the same notification 5× at once on MariaDB; Redis down during a
paid notification (the effect still happens, once, through the outbox relay)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.payments.models import PaymentOrder
from backend.platform import jobs
from backend.platform.db import db
from backend.platform.jobs import Dispatcher, OutboxJob, relay
from backend.points import service as points_service
from backend.points.models import PointsLedger
from backend.touchpoints.models import Touchpoint
from integrations.sandbox.wechatpay_ledger import notify_paid
from tests.payments.conftest import create_order


@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_same_notification_five_times_concurrently_pays_once(
    app: Any, client: Any, owner: Any, pay_effects: Any, sandbox_reset: Any, deliver_to_app: Any
) -> None:
    order = create_order(client, owner, pay_effects, "c-1", 4200).get_json()["order"]
    _, statuses = notify_paid(sandbox_reset.state, order["out_trade_no"], copies=5, concurrent=True)
    assert statuses == [204] * 5
    with app.app_context():
        session = db.session()
        stored = session.get(PaymentOrder, order["id"])
        assert stored.state == "paid"
        effect_jobs = session.scalar(
            select(func.count()).select_from(OutboxJob).where(OutboxJob.name == "payments.run_effects")
        )
        succeeded = session.scalar(
            select(func.count()).select_from(Touchpoint).where(Touchpoint.kind == "payment_succeeded")
        )
        # Points once: one ledger row for the order, and the account agrees with the ledger.
        earned = session.scalars(
            select(PointsLedger.pending_delta).where(PointsLedger.idempotency_key == f"pay:{order['id']}")
        ).all()
        account = points_service.account(session, owner.id)
        drift = points_service.check_drift(session, [owner.id])
        db.session.remove()
    assert effect_jobs == 1 and succeeded == 1
    assert pay_effects.of("paid") == [("paid", order["id"])]
    assert earned == [42] and account.pending == 42 and drift == []


@pytest.fixture
def redis_client(redis_url: str) -> Any:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.mark.redis
def test_redis_down_during_a_paid_notification_still_runs_the_effect_once(
    app: Any,
    app_ctx: Any,
    client: Any,
    db_session: Any,
    owner: Any,
    pay_effects: Any,
    sandbox_reset: Any,
    deliver_to_app: Any,
    redis_client: Any,
    monkeypatch: Any,
) -> None:
    import redis
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    order = create_order(client, owner, pay_effects, "c-2", 1500).get_json()["order"]
    down = Dispatcher(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2), max_attempts=3)
    monkeypatch.setitem(app.extensions, "dealerloop.jobs", down)
    _, statuses = notify_paid(sandbox_reset.state, order["out_trade_no"], copies=2)
    assert statuses == [204, 204]  # WeChat is answered: the payment is recorded
    db_session.expire_all()
    assert db_session.get(PaymentOrder, order["id"]).state == "paid"
    row = db_session.scalars(select(OutboxJob).where(OutboxJob.name == "payments.run_effects")).one()
    assert row.status == "pending" and pay_effects.calls == []

    up = Dispatcher(redis_client, max_attempts=3)
    monkeypatch.setitem(app.extensions, "dealerloop.jobs", up)
    assert relay(app=app) == 1
    up.hand_over(row.id, "high")  # a racing relayer hands it over twice
    SimpleWorker(list(jobs.QUEUES), connection=redis_client, serializer=JSONSerializer).work(burst=True)
    db_session.expire_all()
    assert db_session.get(OutboxJob, row.id).status == "done"
    assert pay_effects.of("paid") == [("paid", order["id"])]
    assert points_service.account(db_session, owner.id).pending == 15  # 15 yuan, earned once
