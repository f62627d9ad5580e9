"""The organiser calls off a paid event while owners cancel their own sign-ups and leave the waitlist
(real threads): seats and waitlist end at zero, each fee is refunded once and in full (a payment
that lands after the cancellation too), each sign-up ends once."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.events.models import Event, EventRegistration
from backend.payments.models import PaymentRefund
from backend.platform.db import db
from backend.touchpoints.models import Touchpoint
from integrations.sandbox.wechatpay_ledger import notify_paid
from tests.events.conftest import APP, WB, create_event, sign_up
from tests.threads import run_threads

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def _pay(client: Any, owner: Any, reg_id: int) -> dict[str, Any]:
    resp = client.post(
        f"{APP}/payments/orders", json={"business_type": "event_fee", "business_id": str(reg_id)}, headers=owner.headers
    )
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["order"]


def _read(app: Any, fn: Any) -> Any:
    with app.app_context():
        try:
            return fn(db.session())
        finally:
            db.session.remove()


def test_organiser_cancels_a_paid_event_while_owners_cancel_refunds_each_fee_once(
    app: Any, place: Any, make_owner: Any, sandbox_reset: Any, deliver_to_app: Any
) -> None:
    client = app.test_client()
    event = create_event(client, place.h(), capacity=4, max_party_size=1, fee_kind="cash", fee_fen=6600)
    owners = [make_owner(place.unit) for _ in range(6)]
    regs = [sign_up(client, o, event["id"]).get_json() for o in owners]
    assert [r["state"] for r in regs] == ["pending_payment"] * 4 + ["waitlisted"] * 2
    orders = [_pay(client, owners[i], regs[i]["id"]) for i in range(4)]
    for order in orders[:3]:  # three paid; the fourth pays only after the event is called off
        assert notify_paid(sandbox_reset.state, order["out_trade_no"])[1] == [204]

    # At once: the organiser's cancel (tapped twice), owner 0 and owner 1 cancel their paid
    # sign-ups, owner 4 leaves the waitlist.
    manager = place.h()  # built here: it reads the test's own session

    def act(i: int) -> Any:
        if i < 2:
            return client.post(f"{WB}/events/{event['id']}/cancel", json={"reason": "台风预警"}, headers=manager)
        n = {2: 0, 3: 1, 4: 4}[i]
        return client.post(f"{APP}/me/event-registrations/{regs[n]['id']}/cancel", json={}, headers=owners[n].headers)

    results = run_threads(5, act)
    statuses = [getattr(r, "status_code", repr(r)) for r in results]
    assert statuses[:2] == [200, 200], [getattr(r, "get_json", lambda r=r: repr(r))() for r in results]
    assert all(s in (200, 409) for s in statuses[2:]), [r.get_json() for r in results]

    # The late payment of the fourth arrives after the event was called off: refunded.
    assert notify_paid(sandbox_reset.state, orders[3]["out_trade_no"], copies=2)[1] == [204, 204]

    def books(s: Any) -> Any:
        row = s.get(Event, event["id"])
        states = dict(s.execute(select(EventRegistration.id, EventRegistration.state)).all())
        refunds = s.execute(select(PaymentRefund.order_id, PaymentRefund.amount_fen)).all()
        offered = s.scalars(
            select(func.count()).where(Touchpoint.kind == "event_seat_offered").group_by(Touchpoint.customer_id)
        ).all()
        ended = s.execute(
            select(Touchpoint.source_ref, func.count())
            .where(Touchpoint.source_ref.like("event_reg:%:ended"))
            .group_by(Touchpoint.source_ref)
        ).all()
        return row, states, refunds, offered, ended

    row, states, refunds, offered, ended = _read(app, books)
    assert (row.status, row.seats_taken, row.waitlist_count) == ("cancelled", 0, 0)
    assert {str(s) for s in states.values()} <= {"cancelled", "expired"}, states
    assert sorted(refunds) == sorted((o["id"], 6600) for o in orders), refunds  # each fee once, in full
    assert sandbox_reset.hits("/v3/refund/domestic/refunds") == 4
    # An owner's cancel that lands before the organiser's may offer the seat to the waitlist
    # (the event was still on); each owner is offered at most once, and the offer ends with it.
    assert all(n == 1 for n in offered), offered
    assert len(ended) == 6 and all(n == 1 for _, n in ended), ended
