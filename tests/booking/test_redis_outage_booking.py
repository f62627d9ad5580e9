"""Redis down while owners book, reschedule and cancel: the slots move at once (they need no
Redis), the subscribe messages wait in the outbox, and once Redis is back each is sent once;
the same Idempotency-Key during and after the outage changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.booking.models import Booking
from backend.notices.models import SubscribeNotice
from backend.platform.db import db
from backend.platform.jobs import OutboxJob
from tests.booking.conftest import APP, World, book, in_days, slot_id, slot_row

TEMPLATES = {
    "SUBSCRIBE_TEMPLATE_BOOKING_CONFIRMED": "TPL_BK_OK",
    "SUBSCRIBE_TEMPLATE_BOOKING_CHANGED": "TPL_BK_CHANGED",
}  # an owner's own cancellation is not messaged to them


def _count(app: Any, model: Any, *where: Any) -> int:
    with app.app_context():
        return db.session().scalar(select(func.count()).select_from(model).where(*where))


@pytest.mark.redis
def test_book_reschedule_cancel_while_redis_is_down_then_messages_sent_once(
    app: Any, client: Any, world: World, sandbox_reset: Any, redis_outage: Any, monkeypatch: Any
) -> None:
    state = sandbox_reset.state
    for setting, template in TEMPLATES.items():
        monkeypatch.setitem(app.config, setting, template)
        state.set_subscribe_grants("o-booking-owner", template, 1)
        granted = client.post(
            f"{APP}/notices/grants", json={"results": {template: "accept"}}, headers=world.owner.headers
        )
        assert granted.status_code == 200, granted.get_json()
    svc = world.service["basic_maintenance"]
    a = slot_id(app, world.store.id, in_days(world, 1), 10)
    b = slot_id(app, world.store.id, in_days(world, 2), 10)
    h = world.owner.headers

    redis_outage.down()
    made = book(client, world.owner, a, svc, key="rd-book-1")
    assert made.status_code == 201, made.get_json()
    booking_id = made.get_json()["id"]
    again = book(client, world.owner, a, svc, key="rd-book-1")
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
    assert again.get_json()["id"] == booking_id
    moved_headers = {**h, "Idempotency-Key": "rd-move-1"}
    url = f"{APP}/bookings/{booking_id}"
    for _ in range(2):
        moved = client.post(f"{url}/reschedule", json={"slot_id": b}, headers=moved_headers)
        assert moved.status_code == 200, moved.get_json()
        assert moved.get_json()["reschedule_count"] == 1
    cancel_headers = {**h, "Idempotency-Key": "rd-cancel-1"}
    for _ in range(2):
        cancelled = client.post(f"{url}/cancel", json={"reason": "行程有变"}, headers=cancel_headers)
        assert cancelled.status_code == 200, cancelled.get_json()
        assert cancelled.get_json()["status"] == "cancelled"
    assert slot_row(app, a) == (3, 0) and slot_row(app, b) == (3, 0)
    assert _count(app, Booking) == 1
    assert _count(app, SubscribeNotice) == 2
    notice_jobs = OutboxJob.name == "notices.send"
    assert _count(app, OutboxJob, notice_jobs) == 2
    assert _count(app, OutboxJob, notice_jobs, OutboxJob.status == "pending") == 2
    assert state.subscribe_messages == []

    redis_outage.up()
    assert redis_outage.drain() == 2
    assert _count(app, OutboxJob, notice_jobs, OutboxJob.status == "done") == 2
    assert [m["template_id"] for m in state.subscribe_messages] == list(TEMPLATES.values())
    # the same keys once Redis is back: replayed, nothing new
    assert book(client, world.owner, a, svc, key="rd-book-1").headers.get("Idempotent-Replayed") == "true"
    assert client.post(f"{url}/cancel", json={"reason": "行程有变"}, headers=cancel_headers).status_code == 200
    assert redis_outage.drain() == 0
    assert _count(app, Booking) == 1 and _count(app, SubscribeNotice) == 2
    assert len(state.subscribe_messages) == 2
    assert slot_row(app, a) == (3, 0) and slot_row(app, b) == (3, 0)
