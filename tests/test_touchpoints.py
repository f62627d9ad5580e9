"""The touchpoint spine: record once, timeline, owner feed, profile projection = rebuild."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.touchpoints.models import CustomerKindCount, CustomerProfile, Touchpoint
from backend.touchpoints.service import profile_of, rebuild_profiles, record

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _rec(session: Any, customer: Any, n: int, kind: str = "message_sent", **kw: Any) -> Any:
    return record(
        session,
        customer_id=customer.id,
        kind=kind,
        channel=kw.pop("channel", "wecom"),
        source="test",
        source_ref=kw.pop("source_ref", f"t:{customer.id}:{n}"),
        occurred_at=kw.pop("occurred_at", T0 + timedelta(minutes=n)),
        **kw,
    )


def test_record_is_idempotent_by_source_ref(db_session: Any, make_customer: Any) -> None:
    c = make_customer()
    first = _rec(db_session, c, 1, source_ref="wecom:event:42")
    again = _rec(db_session, c, 2, source_ref="wecom:event:42")
    assert again.id == first.id
    assert db_session.scalar(select(func.count()).select_from(Touchpoint)) == 1
    assert profile_of(db_session, c.id)["touchpoint_count"] == 1


def test_record_refuses_unknown_kinds_and_naive_times(db_session: Any, make_customer: Any) -> None:
    c = make_customer()
    with pytest.raises(ValueError):
        _rec(db_session, c, 1, kind="made_up_kind")
    with pytest.raises(Exception, match="naive"):
        _rec(db_session, c, 2, occurred_at=datetime(2026, 1, 1))  # noqa: DTZ001


def test_profile_projection_equals_rebuild(db_session: Any, make_customer: Any, tree: Any, make_staff: Any) -> None:
    adv = [make_staff(tree.stores[0], "sales_advisor") for _ in range(3)]
    customers = [make_customer(tree.stores[0]) for _ in range(4)]
    kinds = [
        "message_sent",
        "call_logged",
        "arrived",
        "points_earned",
        "booking_created",
        "service_completed",
        "content_opened",
    ]
    rng = random.Random(7)
    events = [(rng.choice(customers), i) for i in range(120)]
    rng.shuffle(events)  # out of order, as callbacks arrive
    for customer, n in events:
        _rec(
            db_session,
            customer,
            n,
            kind=rng.choice(kinds),
            advisor_id=rng.choice(adv).id,
            store_id=tree.stores[rng.randrange(2)].id,
            occurred_at=T0 + timedelta(minutes=rng.randrange(30)),
        )
    db_session.flush()
    incremental = {c.id: profile_of(db_session, c.id) for c in customers}
    assert sum(p["touchpoint_count"] for p in incremental.values()) == 120
    rebuilt_n = rebuild_profiles(db_session)
    db_session.expire_all()
    assert rebuilt_n == 4
    assert {c.id: profile_of(db_session, c.id) for c in customers} == incremental


def test_contact_and_visit_fields(db_session: Any, make_customer: Any, tree: Any, make_staff: Any) -> None:
    a1, a2 = make_staff(tree.stores[0], "sales_advisor"), make_staff(tree.stores[0], "service_advisor")
    c = make_customer(tree.stores[0])
    _rec(db_session, c, 10, kind="call_logged", advisor_id=a1.id)
    _rec(db_session, c, 5, kind="message_sent", advisor_id=a2.id)  # older: must not win
    _rec(db_session, c, 20, kind="points_earned")  # not a contact
    _rec(db_session, c, 15, kind="arrived", store_id=tree.stores[1].id, channel="store")
    p = profile_of(db_session, c.id)
    assert p["last_contact_at"] == T0 + timedelta(minutes=15)  # the visit
    assert p["last_contact_advisor_id"] == a1.id and p["last_advisor_contact_at"] == T0 + timedelta(minutes=10)
    assert p["last_touch_at"] == T0 + timedelta(minutes=20)
    assert p["last_store_visit_store_id"] == tree.stores[1].id
    assert p["counts_by_kind"] == {"call_logged": 1, "message_sent": 1, "points_earned": 1, "arrived": 1}


def test_rebuild_command_gives_same_result(app: Any, db_session: Any, make_customer: Any) -> None:
    c = make_customer()
    for n in range(5):
        _rec(db_session, c, n)
    db_session.commit()
    before = profile_of(db_session, c.id)
    db_session.execute(CustomerProfile.__table__.delete())
    db_session.execute(CustomerKindCount.__table__.delete())
    db_session.commit()
    result = app.test_cli_runner().invoke(args=["profiles", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "rebuilt" in result.output
    db_session.expire_all()
    assert profile_of(db_session, c.id) == before


@pytest.fixture
def timeline_world(db_session: Any, tree: Any, make_staff: Any, make_customer: Any) -> Any:
    adv = make_staff(tree.stores[0], "sales_advisor")
    other = make_staff(tree.stores[0], "service_advisor")
    c = make_customer(tree.stores[0], advisor=adv)
    for n in range(45):
        _rec(
            db_session,
            c,
            n,
            kind=["message_sent", "call_logged", "points_earned"][n % 3],
            channel=["wecom", "phone", "system"][n % 3],
            advisor_id=(adv if n % 2 else other).id,
        )
    db_session.commit()
    return adv, other, c


def test_timeline_newest_first_with_keyset_pages(client: Any, timeline_world: Any, staff_headers: Any) -> None:
    adv, _other, c = timeline_world
    headers = staff_headers(adv)
    seen, cursor = [], None
    while True:
        url = f"/api/workbench/v1/customers/{c.id}/timeline?limit=20" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=headers).get_json()
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 45
    times = [i["occurred_at"] for i in seen]
    assert times == sorted(times, reverse=True)
    assert len({i["id"] for i in seen}) == 45


def test_timeline_filters(client: Any, timeline_world: Any, staff_headers: Any) -> None:
    adv, other, c = timeline_world
    base = f"/api/workbench/v1/customers/{c.id}/timeline?limit=100"
    h = staff_headers(adv)
    calls = client.get(base + "&kind=call_logged", headers=h).get_json()["items"]
    assert len(calls) == 15 and {i["kind"] for i in calls} == {"call_logged"}
    two = client.get(base + "&kind=call_logged&kind=message_sent", headers=h).get_json()["items"]
    assert len(two) == 30
    assert {i["channel"] for i in client.get(base + "&channel=phone", headers=h).get_json()["items"]} == {"phone"}
    by_other = client.get(base + f"&advisor_id={other.id}", headers=h).get_json()["items"]
    assert len(by_other) == 23 and {i["advisor_id"] for i in by_other} == {other.id}
    since = (T0 + timedelta(minutes=40)).isoformat()
    recent = client.get(
        f"/api/workbench/v1/customers/{c.id}/timeline", query_string={"since": since, "limit": 100}, headers=h
    ).get_json()["items"]
    assert len(recent) == 5


def test_timeline_bad_input(client: Any, timeline_world: Any, staff_headers: Any) -> None:
    adv, _other, c = timeline_world
    h = staff_headers(adv)
    base = f"/api/workbench/v1/customers/{c.id}/timeline"
    assert client.get(base + "?cursor=%%%garbage", headers=h).get_json()["code"] == "timeline.cursor_invalid"
    bad_kind = client.get(base + "?kind=nope", headers=h)
    assert bad_kind.status_code == 422 and "kind" in bad_kind.get_json()["errors"]["query"]
    assert client.get(base + "?limit=1000", headers=h).status_code == 422
    naive = client.get(base + "?since=2026-01-01T00:00:00", headers=h)
    assert naive.status_code == 422


def test_advisor_sees_only_own_customers(
    client: Any, tree: Any, make_staff: Any, make_customer: Any, staff_headers: Any
) -> None:
    adv = make_staff(tree.stores[0], "sales_advisor")
    colleague = make_staff(tree.stores[0], "sales_advisor")
    mine = make_customer(tree.stores[0], advisor=adv)
    theirs = make_customer(tree.stores[0], advisor=colleague)
    h = staff_headers(adv)
    listed = client.get("/api/workbench/v1/customers", headers=h).get_json()
    assert [c["id"] for c in listed["items"]] == [mine.id] and listed["total"] == 1
    assert client.get(f"/api/workbench/v1/customers/{theirs.id}/timeline", headers=h).status_code == 404


def test_owner_feed_shows_own_visible_activity_only(
    client: Any, db_session: Any, make_customer: Any, member_headers: Any
) -> None:
    me, other = make_customer(), make_customer()
    _rec(db_session, me, 1, kind="booking_created", channel="miniprogram")
    _rec(db_session, me, 2, kind="script_sent")  # advisor-internal
    _rec(db_session, other, 3, kind="booking_created", channel="miniprogram")
    db_session.commit()
    items = client.get("/api/app/v1/me/activity", headers=member_headers(me)).get_json()["items"]
    assert [i["kind"] for i in items] == ["booking_created"]
    assert "advisor_id" not in items[0] and "payload" not in items[0]


def test_customer_list_has_no_n_plus_one(
    client: Any, app: Any, tree: Any, make_staff: Any, make_customer: Any, staff_headers: Any
) -> None:
    from sqlalchemy import event

    from backend.platform.db import db

    admin = make_staff(tree.group, "group_admin")
    h = staff_headers(admin)

    def count_queries(n_customers: int) -> int:
        for _ in range(n_customers):
            make_customer(tree.stores[0], advisor=admin, phone=None)
        statements: list[str] = []
        listener = lambda *a, **k: statements.append(a[2])  # noqa: E731
        bind = db.session().get_bind()
        event.listen(bind, "before_cursor_execute", listener)
        try:
            assert client.get("/api/workbench/v1/customers?page_size=100", headers=h).status_code == 200
        finally:
            event.remove(bind, "before_cursor_execute", listener)
        return len(statements)

    few = count_queries(2)
    many = count_queries(20)
    assert many == few, f"{few} queries for 2 customers, {many} for 22"


def test_profile_drift_is_detected(db_session: Any, make_customer: Any) -> None:
    from sqlalchemy import update

    from backend.touchpoints.service import profile_drift

    a, b = make_customer(), make_customer()
    for n in range(3):
        _rec(db_session, a, n)
        _rec(db_session, b, n)
    assert profile_drift(db_session) == []
    db_session.execute(update(CustomerProfile).where(CustomerProfile.customer_id == b.id).values(touchpoint_count=7))
    assert profile_drift(db_session) == [b.id]
    rebuild_profiles(db_session, [b.id])
    assert profile_drift(db_session) == []


@pytest.mark.parametrize(
    "query",
    [
        {"since": "9999-12-31T23:00:00-05:00"},
        {"until": "0001-01-01T00:30:00+01:00"},
        {"cursor": "OTk5OS0xMi0zMVQyMzowMDowMC0wNTowMHwx"},  # 9999-12-31T23:00:00-05:00|1
        {"cursor": "MDAwMS0wMS0wMVQwMDowMDowMCswNTowMHwx"},  # 0001-01-01T00:00:00+05:00|1
        {"cursor": "MjAyNi0wMS0wMVQwMDowMDowMCswMDowMHxhYmM"},  # ...|abc
    ],
)
def test_extreme_times_and_bad_cursors_are_422(
    client: Any, timeline_world: Any, staff_headers: Any, query: dict
) -> None:
    adv, _other, c = timeline_world
    resp = client.get(f"/api/workbench/v1/customers/{c.id}/timeline", query_string=query, headers=staff_headers(adv))
    assert resp.status_code == 422, resp.get_json()


def test_owner_feed_bad_cursor_is_422(client: Any, make_customer: Any, member_headers: Any) -> None:
    resp = client.get(
        "/api/app/v1/me/activity?cursor=MDAwMS0wMS0wMVQwMDowMDowMCswNTowMHwx", headers=member_headers(make_customer())
    )
    assert resp.status_code == 422 and resp.get_json()["code"] == "timeline.cursor_invalid"


@pytest.mark.parametrize("page", ["9223372036854775807", "99999999999999999999", "0", "-1", "x"])
def test_customer_list_page_bounds_are_422(
    client: Any, tree: Any, make_staff: Any, staff_headers: Any, page: str
) -> None:
    admin = make_staff(tree.group, "group_admin")
    resp = client.get(f"/api/workbench/v1/customers?page={page}", headers=staff_headers(admin))
    assert resp.status_code == 422, resp.get_json()
