"""Redis down while owners sign up for events (free and paid), cancel and are checked in: the
seats, the waitlist, the points and the registrations move at once; the owners' subscribe
messages, the paid order's effects and the cancelled sign-up's refund wait in the outbox, and
once Redis is back each runs once. The same Idempotency-Key (sign-up, order) and the same tap
or scan (cancel, check-in) during and after the outage change nothing."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.events.models import Event, EventRegistration
from backend.notices.models import SubscribeNotice
from backend.payments.models import PaymentOrder, PaymentRefund
from backend.platform.db import db, utcnow
from backend.platform.jobs import OutboxJob
from backend.points.models import PointsLedger
from integrations.sandbox.wechatpay_ledger import notify_paid
from tests.events.conftest import APP, WB, cancel, create_event, sign_up

TEMPLATE = "TPL_EVENT"


def _scalar(app: Any, stmt: Any) -> Any:
    with app.app_context():
        try:
            return db.session().scalar(stmt)
        finally:
            db.session.remove()


def _count(app: Any, model: Any, *where: Any) -> int:
    return _scalar(app, select(func.count()).select_from(model).where(*where))


def _jobs(app: Any) -> Counter[tuple[str, str]]:
    with app.app_context():
        try:
            return Counter((str(n), str(s)) for n, s in db.session().execute(select(OutboxJob.name, OutboxJob.status)))
        finally:
            db.session.remove()


@pytest.mark.redis
def test_sign_up_pay_cancel_and_check_in_while_redis_is_down_then_each_side_effect_once(
    app: Any,
    client: Any,
    place: Any,
    make_owner: Any,
    sandbox_reset: Any,
    deliver_to_app: Any,
    redis_outage: Any,
    monkeypatch: Any,
) -> None:
    state = sandbox_reset.state
    monkeypatch.setitem(app.config, "SUBSCRIBE_TEMPLATE_EVENT_NOTICE", TEMPLATE)
    now = utcnow().replace(microsecond=0)
    free = create_event(client, place.h(), capacity=1, max_party_size=1)
    paid = create_event(client, place.h(), title="付费品鉴会", capacity=2, fee_kind="cash", fee_fen=9900)
    soon = now + timedelta(minutes=30)  # its check-in window (from an hour before) is open
    today = create_event(
        client,
        place.h(),
        title="今日车友会",
        capacity=5,
        max_party_size=1,
        starts_at=soon,
        ends_at=soon + timedelta(hours=2),
        signup_closes_at=now + timedelta(minutes=20),
        cancel_cutoff_at=now + timedelta(minutes=10),
        attendance_points=50,
    )
    a, w, p, c = (make_owner(place.unit) for _ in range(4))
    for n, owner in enumerate((a, w, p, c), start=1):
        state.set_subscribe_grants(f"o-ev-{n:05d}", TEMPLATE, 3)
        for _ in range(3):
            granted = client.post(
                f"{APP}/notices/grants", json={"results": {TEMPLATE: "accept"}}, headers=owner.headers
            )
            assert granted.status_code == 200, granted.get_json()

    redis_outage.down()
    # Free: A takes the only seat, W waits; A cancels (a double tap) and W is offered the seat.
    ra = [sign_up(client, a, free["id"], key="rd-ev-a") for _ in range(2)]
    assert [r.status_code for r in ra] == [201, 201], ra[0].get_json()
    assert ra[1].headers.get("Idempotent-Replayed") == "true" and ra[1].get_json() == ra[0].get_json()
    ra_id = ra[0].get_json()["id"]
    rw = sign_up(client, w, free["id"], key="rd-ev-w")
    assert rw.status_code == 201 and rw.get_json()["state"] == "waitlisted", rw.get_json()
    rw_id = rw.get_json()["id"]
    assert [cancel(client, a, ra_id).get_json()["state"] for _ in range(2)] == ["cancelled", "cancelled"]
    mine = client.get(f"{APP}/me/event-registrations/{rw_id}", headers=w.headers).get_json()
    assert mine["state"] == "offered"

    # Paid: P's sign-up holds two seats, the order (same key twice) is paid (the notification
    # twice); the confirmation is the order's effect, a job: it waits for Redis.
    rp = [sign_up(client, p, paid["id"], party_size=2, key="rd-ev-p") for _ in range(2)]
    assert [r.status_code for r in rp] == [201, 201] and rp[0].get_json()["state"] == "pending_payment"
    rp_id = rp[0].get_json()["id"]
    order_headers = {**p.headers, "Idempotency-Key": "rd-ev-order"}
    body = {"business_type": "event_fee", "business_id": str(rp_id)}
    made = [client.post(f"{APP}/payments/orders", json=body, headers=order_headers) for _ in range(2)]
    assert [m.status_code for m in made] == [201, 201], made[0].get_json()
    order = made[0].get_json()["order"]
    assert made[1].get_json()["order"]["id"] == order["id"]
    assert sandbox_reset.hits("/v3/pay/transactions/jsapi") == 1
    _, statuses = notify_paid(state, order["out_trade_no"], copies=2)
    assert statuses == [204, 204]
    assert _scalar(app, select(PaymentOrder.state).where(PaymentOrder.id == order["id"])) == "paid"

    # Today: C signs up and is checked in (the scan sent twice): attendance points once.
    rc = sign_up(client, c, today["id"], key="rd-ev-c")
    assert rc.status_code == 201 and rc.get_json()["state"] == "confirmed", rc.get_json()
    qr = client.get(f"{APP}/me/event-registrations/{rc.get_json()['id']}/qr", headers=c.headers)
    token = qr.get_json()["token"]
    scans = [
        client.post(f"{WB}/events/{today['id']}/check-ins", json={"token": token}, headers=place.h(place.advisor))
        for _ in range(2)
    ]
    assert [s.status_code for s in scans] == [200, 200], scans[0].get_json()
    assert scans[0].get_json()["state"] == "checked_in" and scans[1].get_json() == scans[0].get_json()

    jobs = _jobs(app)
    assert {status for _, status in jobs} == {"pending"}, jobs  # nothing handed over, nothing lost
    assert state.subscribe_messages == []

    redis_outage.up()
    redis_outage.drain()
    assert _scalar(app, select(EventRegistration.state).where(EventRegistration.id == rp_id)) == "confirmed"
    # P cancels once confirmed: the seats are freed and the fee refunded by a job, once.
    assert [cancel(client, p, rp_id).get_json()["state"] for _ in range(2)] == ["cancelled", "cancelled"]
    redis_outage.drain()

    # The same keys and taps once Redis is back: the same answers, nothing new.
    replay = sign_up(client, a, free["id"], key="rd-ev-a")
    assert replay.headers.get("Idempotent-Replayed") == "true" and replay.get_json()["id"] == ra_id
    again = client.post(f"{APP}/payments/orders", json=body, headers=order_headers)
    assert again.status_code == 201 and again.get_json()["order"]["id"] == order["id"]
    scan = client.post(f"{WB}/events/{today['id']}/check-ins", json={"token": token}, headers=place.h(place.advisor))
    assert scan.get_json() == scans[0].get_json()
    assert redis_outage.drain() == 0

    jobs = _jobs(app)
    assert {status for _, status in jobs} == {"done"}, jobs
    assert _count(app, EventRegistration) == 4
    seats = {e: _scalar(app, select(Event.seats_taken).where(Event.id == e)) for e in (free["id"], paid["id"])}
    assert seats == {free["id"]: 1, paid["id"]: 0}  # W's offered seat; P's two freed
    assert _count(app, PaymentOrder) == 1 and _count(app, PaymentRefund) == 1
    assert sandbox_reset.hits("/v3/refund/domestic/refunds") == 1
    assert sandbox_reset.hits("/v3/pay/transactions/jsapi") == 1
    attended = PointsLedger.customer_id == c.id
    assert _scalar(app, select(func.sum(PointsLedger.delta)).where(attended)) == 50
    rc_id = rc.get_json()["id"]
    with app.app_context():
        rows = db.session().execute(select(SubscribeNotice.dedup_key, SubscribeNotice.status)).all()
        db.session.remove()
    assert sorted(rows) == sorted(
        (f"event_reg:{reg}:{what}", "sent")
        for reg, what in [
            (ra_id, "signed_up"),
            (rw_id, "waitlisted"),
            (rw_id, "offered"),
            (rp_id, "signed_up"),
            (rc_id, "signed_up"),
        ]
    )
    sent = Counter(m["touser"] for m in state.subscribe_messages)
    assert sent == {"o-ev-00001": 1, "o-ev-00002": 2, "o-ev-00003": 1, "o-ev-00004": 1}
