"""Lists without N+1 queries, and the completion reaching campaigns (`booking_completed`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import event, func, select

from backend.platform.db import db
from backend.points.models import PointsLedger
from tests.booking.conftest import APP, NOW, WB, World, book, in_days, slot_id
from tests.campaigns.conftest import make_rule


def test_booking_lists_take_the_same_queries_for_2_or_12_bookings(app: Any, client: Any, world: World) -> None:
    def count_queries(url: str, headers: dict[str, str]) -> int:
        statements: list[str] = []
        listener = lambda *a, **k: statements.append(a[2])  # noqa: E731
        bind = db.session().get_bind()
        event.listen(bind, "before_cursor_execute", listener)
        try:
            assert client.get(url, headers=headers).status_code == 200
        finally:
            event.remove(bind, "before_cursor_execute", listener)
        return len(statements)

    day = in_days(world, 1)
    url = f"{WB}/bookings?day={day.isoformat()}&page_size=100"
    staff = world.headers(world.manager)
    owners = [world.make_owner(world.store) for _ in range(12)]
    for o in owners[:2]:
        assert book(client, o, slot_id(app, world.store.id, day, 10), world.service["tyres"]).status_code == 201
    few, mine_few = count_queries(url, staff), count_queries(f"{APP}/me/bookings", owners[0].headers)
    for i, o in enumerate(owners[2:]):
        sid = slot_id(app, world.store.id, day, 11 + i % 5)
        assert book(client, o, sid, world.service["tyres"]).status_code == 201
    assert count_queries(url, staff) == few
    assert client.get(url, headers=staff).get_json()["total"] == 12
    assert count_queries(f"{APP}/me/bookings", owners[0].headers) == mine_few


def test_completion_is_a_booking_completed_action_for_campaigns(
    app: Any, client: Any, world: World, clock: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    marketing = staff_headers(make_staff(tree.group, "marketing"))
    rule = make_rule(client, marketing, name="保养完成奖励", trigger="booking_completed", points=30)
    clock.move_to(NOW - timedelta(days=1))
    booking = book(client, world.owner, slot_id(app, world.store.id, world.today, 10), world.service["tyres"])
    clock.move_to(NOW)
    bid = booking.get_json()["id"]
    h = world.headers(world.advisors[0])
    assert client.post(f"{WB}/bookings/{bid}/checkin", headers=h).status_code == 200
    done = client.post(f"{WB}/bookings/{bid}/complete", json={"mileage_km": 12000, "work_done": ["换胎"]}, headers=h)
    assert done.status_code == 200, done.get_json()
    with app.app_context():
        s = db.session()
        earned = s.scalar(
            select(func.sum(PointsLedger.delta)).where(PointsLedger.customer_id == world.owner.customer_id)
        )
        s.rollback()
    assert earned == 30, rule
