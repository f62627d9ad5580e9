"""POINTS_REVERSAL_POLICY=block refuses a refund the owner asks for when the points that payment
earned are already spent (loyalty-booking-payments.md §1.2.5 b). A sign-up the store called off is
not the owner's doing: its refund used to be refused too, and the refund job was retried until it
died (the owner never got the money back). It now goes through, and what cannot be taken back
is a points debt (§1.2.5 a) that future earnings repay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from backend.events import service as events
from backend.payments.models import PaymentRefund
from backend.platform.db import commit, db, utcnow
from backend.points import service as points
from backend.points.models import LedgerKind, PointsLedger
from integrations.sandbox.wechatpay_ledger import notify_paid, notify_refund
from tests.events.conftest import APP, WB, cancel, create_event, sign_up

REFUNDS = "/v3/refund/domestic/refunds"


@pytest.fixture
def block(app: Any, monkeypatch: Any) -> None:
    monkeypatch.setitem(app.config, "POINTS_REVERSAL_POLICY", "block")


def _paid_sign_up_with_points_spent(
    app: Any, client: Any, place: Any, owner: Any, sandbox: Any, spent: int
) -> tuple[dict, dict, dict]:
    """A 200-yuan sign-up, paid (200 points pending), the points activated after the return
    window and `spent` of them spent in the mall."""
    event = create_event(client, place.h(), capacity=5, max_party_size=1, fee_kind="cash", fee_fen=200_00)
    reg = sign_up(client, owner, event["id"]).get_json()
    body = {"business_type": "event_fee", "business_id": str(reg["id"])}
    made = client.post(f"{APP}/payments/orders", json=body, headers=owner.headers)
    order = made.get_json()["order"]
    assert notify_paid(sandbox.state, order["out_trade_no"])[1] == [204]
    with app.app_context():
        s = db.session()
        points.activate_due(s, now=utcnow() + timedelta(days=8))
        points.spend(s, owner.id, spent, key=f"mall-spend:{owner.id}", reason_code="t", operator=f"member:{owner.id}")
        commit(s)
        assert points.account(s, owner.id).available == 200 - spent
    return event, reg, order


def test_the_store_calling_off_a_paid_event_refunds_it_once_and_records_the_spent_points_as_debt(
    app: Any,
    client: Any,
    db_session: Any,
    place: Any,
    make_owner: Any,
    sandbox_reset: Any,
    deliver_to_app: Any,
    block: None,
    app_ctx: Any,
) -> None:
    owner = make_owner(place.unit)
    event, reg, order = _paid_sign_up_with_points_spent(app, client, place, owner, sandbox_reset, spent=150)

    called_off = client.post(f"{WB}/events/{event['id']}/cancel", json={"reason": "场地检修"}, headers=place.h())
    assert called_off.status_code == 200, called_off.get_json()
    assert sandbox_reset.hits(REFUNDS) == 1  # the refund job ran after the commit and was not refused
    db_session.expire_all()
    refund = db_session.scalars(select(PaymentRefund).where(PaymentRefund.order_id == order["id"])).one()
    assert (refund.out_refund_no, refund.amount_fen) == (f"EVT{reg['id']}", 200_00)
    assert notify_refund(sandbox_reset.state, refund.out_refund_no, copies=2)[1] == [204, 204]

    # The job again (a retry, a redelivery): WeChat Pay is asked nothing more, nothing doubles.
    with app.app_context():
        s = db.session()
        events.refund_fee(s, reg["id"])
        commit(s)
    assert sandbox_reset.hits(REFUNDS) == 1
    db_session.expire_all()
    assert len(db_session.scalars(select(PaymentRefund)).all()) == 1
    assert db_session.get(PaymentRefund, refund.id).state == "succeeded"

    # The 200 points come back: the 50 left and a debt of 150, repaid by what is earned next.
    reversals = db_session.execute(
        select(PointsLedger.delta, PointsLedger.ref_id).where(
            PointsLedger.customer_id == owner.id, PointsLedger.kind == LedgerKind.REVERSE
        )
    ).all()
    assert [tuple(r) for r in reversals] == [(-200, str(order["id"]))]
    assert points.account(db_session, owner.id).available == -150
    assert points.check_drift(db_session, [owner.id]) == []


def test_an_owner_cancelling_their_paid_sign_up_is_still_refused_under_block(
    app: Any,
    client: Any,
    db_session: Any,
    place: Any,
    make_owner: Any,
    sandbox_reset: Any,
    deliver_to_app: Any,
    block: None,
    app_ctx: Any,
) -> None:
    """The owner's own cancellation would need the 150 points they spent: refused at once with
    the policy's code, the sign-up stands (it used to be cancelled and its refund job died)."""
    owner = make_owner(place.unit)
    event, reg, order = _paid_sign_up_with_points_spent(app, client, place, owner, sandbox_reset, spent=150)

    refused = cancel(client, owner, reg["id"])
    assert refused.status_code == 409 and refused.get_json()["code"] == "points.reversal_blocked", refused.get_json()
    assert sandbox_reset.hits(REFUNDS) == 0
    mine = client.get(f"{APP}/me/event-registrations/{reg['id']}", headers=owner.headers).get_json()
    assert mine["state"] == "confirmed"
    db_session.expire_all()
    assert db_session.scalars(select(PaymentRefund)).all() == []
    assert points.account(db_session, owner.id).available == 50

    # With the points covered the owner may cancel, and is refunded in full, without debt.
    with app.app_context():
        s = db.session()
        points.earn(s, owner.id, 150, key=f"topup:{owner.id}", reason_code="test", operator="system:test")
        commit(s)
    assert cancel(client, owner, reg["id"]).get_json()["state"] == "cancelled"
    assert sandbox_reset.hits(REFUNDS) == 1
    assert notify_refund(sandbox_reset.state, f"EVT{reg['id']}")[1] == [204]
    db_session.expire_all()
    assert points.account(db_session, owner.id).available == 0
    assert points.check_drift(db_session, [owner.id]) == []
