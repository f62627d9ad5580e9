"""Fees: points spent through the ledger at confirmation and restored on cancel; cash through a
WeChat Pay order (sandbox), confirmed only when paid, refunded on cancel, and unpaid holds
released."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from backend.events import service
from backend.events.models import EventRegistration
from backend.payments.models import PaymentOrder, PaymentRefund
from backend.platform.db import commit, db, utcnow
from backend.points.models import PointsLedger
from integrations.sandbox.wechatpay_ledger import notify_paid
from tests.events.conftest import APP, cancel, create_event, event_row, sign_up


def _grant(app: Any, customer_id: int, points: int) -> None:
    from backend.points.service import earn

    with app.app_context():
        s = db.session()
        earn(s, customer_id, points, key=f"test-grant:{customer_id}", reason_code="test", operator="system:test")
        commit(s)


def _available(client: Any, owner: Any) -> int:
    return client.get(f"{APP}/points/account", headers=owner.headers).get_json()["available"]


def test_points_fee_is_spent_on_confirmation_and_restored_on_cancel(
    app: Any, client: Any, db_session: Any, place: Any, make_owner: Any
) -> None:
    event = create_event(client, place.h(), capacity=2, max_party_size=2, fee_kind="points", fee_points=100)
    rich, poor, waiting = make_owner(place.unit), make_owner(place.unit), make_owner(place.unit)
    _grant(app, rich.id, 500)
    _grant(app, poor.id, 150)
    _grant(app, waiting.id, 300)

    short = sign_up(client, poor, event["id"], party_size=2)  # 200 points, has 150
    assert short.status_code == 409 and short.get_json()["code"] == "points.insufficient"
    assert event_row(db_session, event["id"]).seats_taken == 0
    assert db_session.scalar(select(func.count()).select_from(EventRegistration)) == 0

    reg = sign_up(client, rich, event["id"], party_size=2).get_json()
    assert reg["state"] == "confirmed" and reg["fee_points"] == 200
    assert _available(client, rich) == 300
    queued = sign_up(client, waiting, event["id"], party_size=1).get_json()
    assert queued["state"] == "waitlisted" and _available(client, waiting) == 300  # nothing taken while waiting

    assert cancel(client, rich, reg["id"]).get_json()["state"] == "cancelled"
    assert _available(client, rich) == 500
    db_session.expire_all()
    rows = db_session.execute(
        select(PointsLedger.kind, PointsLedger.delta, PointsLedger.idempotency_key)
        .where(PointsLedger.customer_id == rich.id, PointsLedger.ref_type == "event_registration")
        .order_by(PointsLedger.id)
    ).all()
    assert [tuple(r) for r in rows] == [
        ("spend", -200, f"event_fee:{reg['id']}"),
        ("restore", 200, f"event_fee_refund:{reg['id']}"),
    ]

    # The waiting owner is offered the freed seat and pays in points on accepting.
    accepted = client.post(f"{APP}/me/event-registrations/{queued['id']}/accept", json={}, headers=waiting.headers)
    assert accepted.status_code == 200 and accepted.get_json()["state"] == "confirmed"
    assert _available(client, waiting) == 200


def _pay_order(client: Any, owner: Any, reg_id: int) -> Any:
    return client.post(
        f"{APP}/payments/orders",
        json={"business_type": "event_fee", "business_id": str(reg_id)},
        headers=owner.headers,
    )


def test_cash_fee_confirms_only_when_paid_and_a_cancel_refunds(
    app: Any, client: Any, db_session: Any, place: Any, make_owner: Any, sandbox_reset: Any, deliver_to_app: Any
) -> None:
    event = create_event(client, place.h(), capacity=3, max_party_size=2, fee_kind="cash", fee_fen=9900)
    owner = make_owner(place.unit)
    reg = sign_up(client, owner, event["id"], party_size=2).get_json()
    assert reg["state"] == "pending_payment" and reg["fee_fen"] == 19800 and reg["hold_expires_at"]
    assert event_row(db_session, event["id"]).seats_taken == 2  # held for the payment

    made = _pay_order(client, owner, reg["id"])
    assert made.status_code == 201, made.get_json()
    order = made.get_json()["order"]
    assert order["amount_fen"] == 19800  # the sign-up's price, not the client's
    [sent] = sandbox_reset.state.received("/v3/pay/transactions/jsapi")
    assert sent["json"]["amount"] == {"total": 19800, "currency": "CNY"}
    mine = client.get(f"{APP}/me/event-registrations/{reg['id']}", headers=owner.headers).get_json()
    assert mine["state"] == "pending_payment"  # an order is not a payment

    _, statuses = notify_paid(sandbox_reset.state, order["out_trade_no"], copies=2)
    assert statuses == [204, 204]
    mine = client.get(f"{APP}/me/event-registrations/{reg['id']}", headers=owner.headers).get_json()
    assert mine["state"] == "confirmed" and mine["payment_order_id"] == order["id"]
    again = _pay_order(client, owner, reg["id"])
    assert again.status_code == 409 and again.get_json()["code"] == "event.not_payable"

    # Cancelled before the cut-off: the seats are freed and the whole fee refunded (a job).
    assert cancel(client, owner, reg["id"]).get_json()["state"] == "cancelled"
    db_session.expire_all()
    refund = db_session.scalars(select(PaymentRefund).where(PaymentRefund.order_id == order["id"])).one()
    assert (refund.out_refund_no, refund.amount_fen) == (f"EVT{reg['id']}", 19800)
    assert sandbox_reset.hits("/v3/refund/domestic/refunds") == 1
    assert event_row(db_session, event["id"]).seats_taken == 0


def test_unpaid_holds_expire_and_release_their_seats_to_the_waitlist(
    app: Any, client: Any, db_session: Any, place: Any, make_owner: Any, sandbox_reset: Any
) -> None:
    event = create_event(client, place.h(), capacity=2, max_party_size=1, fee_kind="cash", fee_fen=5000)
    never, ordered, waiting = make_owner(place.unit), make_owner(place.unit), make_owner(place.unit)
    r1 = sign_up(client, never, event["id"]).get_json()
    r2 = sign_up(client, ordered, event["id"]).get_json()
    rw = sign_up(client, waiting, event["id"]).get_json()
    assert [r["state"] for r in (r1, r2, rw)] == ["pending_payment", "pending_payment", "waitlisted"]
    order = _pay_order(client, ordered, r2["id"]).get_json()["order"]

    later = utcnow() + timedelta(minutes=30)
    with app.app_context():
        s = db.session()
        # The hold with no order is released by our sweep; the one with an order waits for the
        # payments feature to close it (its closed effect releases it).
        assert service.expire_holds(s, later) == 1
        commit(s)
    db_session.expire_all()
    assert db_session.get(EventRegistration, r1["id"]).state == "expired"
    assert db_session.get(EventRegistration, r2["id"]).state == "pending_payment"
    assert db_session.get(EventRegistration, rw["id"]).state == "offered"
    with app.app_context():  # the sandbox checks request times against the real clock: no freezing
        from backend.payments.service import close_expired, gateway

        s = db.session()
        assert close_expired(s, gateway(), later) == [order["id"]]
        commit(s)
    db_session.expire_all()
    assert db_session.get(PaymentOrder, order["id"]).state == "closed"
    assert db_session.get(EventRegistration, r2["id"]).state == "expired"
    row = event_row(db_session, event["id"])
    assert (row.seats_taken, row.waitlist_count) == (1, 0)  # the offered seat is held


def _lapse(app: Any, order_id: int) -> None:
    """The order's hold lapses as a close would see it (the closed effect runs) while, at WeChat
    Pay, the owner has just paid: the two cross."""
    with app.app_context():
        s = db.session()
        service.on_closed(s, order_id)
        commit(s)


def test_money_that_arrives_after_the_hold_lapsed_retakes_a_free_seat(
    app: Any, client: Any, db_session: Any, place: Any, make_owner: Any, sandbox_reset: Any, deliver_to_app: Any
) -> None:
    event = create_event(client, place.h(), capacity=2, max_party_size=1, fee_kind="cash", fee_fen=5000)
    owner = make_owner(place.unit)
    reg = sign_up(client, owner, event["id"]).get_json()
    order = _pay_order(client, owner, reg["id"]).get_json()["order"]
    _lapse(app, order["id"])
    db_session.expire_all()
    assert db_session.get(EventRegistration, reg["id"]).state == "expired"
    assert event_row(db_session, event["id"]).seats_taken == 0

    _, statuses = notify_paid(sandbox_reset.state, order["out_trade_no"], copies=2)
    assert statuses == [204, 204]
    mine = client.get(f"{APP}/me/event-registrations/{reg['id']}", headers=owner.headers).get_json()
    assert mine["state"] == "confirmed" and mine["payment_order_id"] == order["id"]
    assert event_row(db_session, event["id"]).seats_taken == 1  # taken again, once
    assert sandbox_reset.hits("/v3/refund/domestic/refunds") == 0


def test_money_that_arrives_after_the_seat_went_to_the_waitlist_is_refunded_in_full(
    app: Any, client: Any, db_session: Any, place: Any, make_owner: Any, sandbox_reset: Any, deliver_to_app: Any
) -> None:
    event = create_event(client, place.h(), capacity=1, max_party_size=1, fee_kind="cash", fee_fen=5000)
    late, waiting = make_owner(place.unit), make_owner(place.unit)
    reg = sign_up(client, late, event["id"]).get_json()
    queued = sign_up(client, waiting, event["id"]).get_json()
    assert queued["state"] == "waitlisted"
    order = _pay_order(client, late, reg["id"]).get_json()["order"]
    _lapse(app, order["id"])
    db_session.expire_all()
    assert db_session.get(EventRegistration, queued["id"]).state == "offered"  # the freed seat

    _, statuses = notify_paid(sandbox_reset.state, order["out_trade_no"], copies=2)
    assert statuses == [204, 204]
    db_session.expire_all()
    assert db_session.get(EventRegistration, reg["id"]).state == "expired"
    assert db_session.get(EventRegistration, queued["id"]).state == "offered"  # the seat stays theirs
    refunds = db_session.scalars(select(PaymentRefund).where(PaymentRefund.order_id == order["id"])).all()
    assert [(r.out_refund_no, r.amount_fen) for r in refunds] == [(f"EVT{reg['id']}", 5000)]  # once, in full
    assert sandbox_reset.hits("/v3/refund/domestic/refunds") == 1
    row = event_row(db_session, event["id"])
    assert (row.seats_taken, row.waitlist_count) == (1, 0)


def test_an_offer_on_a_cash_event_is_accepted_into_a_payment_hold_and_paid(
    app: Any, client: Any, db_session: Any, place: Any, make_owner: Any, sandbox_reset: Any, deliver_to_app: Any
) -> None:
    """The seat freed by a cancel is offered; accepting it holds it for payment (the fee is the
    sign-up's, from the server), a second tap changes nothing, and paying confirms it."""
    event = create_event(client, place.h(), capacity=1, max_party_size=1, fee_kind="cash", fee_fen=8800)
    first, waiting = make_owner(place.unit), make_owner(place.unit)
    held = sign_up(client, first, event["id"]).get_json()
    queued = sign_up(client, waiting, event["id"]).get_json()
    assert cancel(client, first, held["id"]).get_json()["state"] == "cancelled"  # never paid: nothing to refund
    offered = client.get(f"{APP}/me/event-registrations/{queued['id']}", headers=waiting.headers).get_json()
    assert offered["state"] == "offered" and offered["offer_expires_at"]
    assert _pay_order(client, waiting, queued["id"]).get_json()["code"] == "event.not_payable"  # accept first

    url = f"{APP}/me/event-registrations/{queued['id']}/accept"
    accepted = client.post(url, json={}, headers=waiting.headers).get_json()
    assert accepted["state"] == "pending_payment" and accepted["hold_expires_at"] and accepted["fee_fen"] == 8800
    assert client.post(url, json={}, headers=waiting.headers).get_json()["state"] == "pending_payment"
    order = _pay_order(client, waiting, queued["id"]).get_json()["order"]
    assert order["amount_fen"] == 8800
    _, statuses = notify_paid(sandbox_reset.state, order["out_trade_no"])
    assert statuses == [204]
    mine = client.get(f"{APP}/me/event-registrations/{queued['id']}", headers=waiting.headers).get_json()
    assert mine["state"] == "confirmed" and mine["payment_order_id"] == order["id"]
    row = event_row(db_session, event["id"])
    assert (row.seats_taken, row.waitlist_count) == (1, 0)
    assert sandbox_reset.hits("/v3/refund/domestic/refunds") == 0
