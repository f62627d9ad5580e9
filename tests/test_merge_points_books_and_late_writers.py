"""Merges where both customers have points books, same-day sign-ins, merge chains, and a points
write for a merged-away customer: the books add up, the reversal re-sums them, nothing lands on
a hidden row."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from backend.customers.models import Customer, CustomerMerge
from backend.points import service as points
from backend.points.models import PointsAccount, PointsLedger


class _Ids:
    def __init__(self, ident: int) -> None:
        self.id = ident


def _merge(client: Any, h: Any, source_id: int, target_id: int) -> Any:
    return client.post(
        "/api/workbench/v1/customer-merges",
        json={"source_id": source_id, "target_id": target_id, "reason": "同一人"},
        headers=h,
    )


def _earn(db_session: Any, customer_id: int, n: int, key: str) -> None:
    points.earn(db_session, customer_id, n, key=key, reason_code="manual", operator="system:test")


def test_merge_of_two_customers_with_points_books(
    client: Any, db_session: Any, tree: Any, make_staff: Any, make_customer: Any, staff_headers: Any
) -> None:
    manager = make_staff(tree.stores[0], "store_manager")
    a = make_customer(tree.stores[0], openid="o-a")
    b = make_customer(tree.stores[0])
    _earn(db_session, a.id, 100, "k-a")
    _earn(db_session, b.id, 30, "k-b")
    db_session.commit()
    a, b = _Ids(a.id), _Ids(b.id)
    h = staff_headers(manager)
    resp = _merge(client, h, b.id, a.id)
    assert resp.status_code == 201, resp.get_json()
    db_session.expire_all()
    merged = points.account(db_session, a.id)
    assert (merged.available, merged.lifetime_earned) == (130, 130)
    assert points.account(db_session, b.id).available == 0  # its row stays behind, emptied
    assert (
        db_session.scalar(select(func.count()).select_from(PointsLedger).where(PointsLedger.customer_id == a.id)) == 2
    )
    assert points.check_drift(db_session, [a.id, b.id]) == []
    # Spending the sum works (both books are one now), and the reversal gives each its own back.
    points.spend(db_session, b.id, 120, key="spend-1", reason_code="mall", operator="system:test")
    db_session.commit()
    undo = client.post(f"/api/workbench/v1/customer-merges/{resp.get_json()['id']}/reverse", headers=h)
    assert undo.status_code == 200, undo.get_json()
    db_session.expire_all()
    # Each account is its ledger's sum again: the spend (made on the merged person, kept by the
    # survivor) leaves it owing what it took from the returned customer's bucket; nothing lost.
    assert (points.account(db_session, a.id).available, points.account(db_session, b.id).available) == (-20, 30)


def test_reversing_an_inner_merge_of_a_chain(
    client: Any, db_session: Any, tree: Any, make_staff: Any, make_customer: Any, staff_headers: Any
) -> None:
    from backend.customers.models import Car

    manager = make_staff(tree.stores[0], "store_manager")
    h = staff_headers(manager)
    a, b, c = (make_customer(tree.stores[0]) for _ in range(3))
    db_session.add(Car(customer_id=a.id, vin="LFV2A21K7G3000001"))
    db_session.commit()
    a, b, c = _Ids(a.id), _Ids(b.id), _Ids(c.id)
    first = _merge(client, h, a.id, b.id)
    assert first.status_code == 201
    assert _merge(client, h, b.id, c.id).status_code == 201
    second_id = db_session.scalars(select(CustomerMerge.id).where(CustomerMerge.source_id == b.id)).one()
    # The inner merge's target is merged away itself: hidden (404), and nothing moves.
    undo = client.post(f"/api/workbench/v1/customer-merges/{first.get_json()['id']}/reverse", headers=h)
    assert undo.status_code == 404 and undo.get_json()["code"] == "customer.merge_not_found"
    db_session.expire_all()
    assert db_session.scalar(select(Car.customer_id)) == c.id
    assert db_session.get(Customer, a.id).merged_into_id == b.id
    # Undone outermost first, the chain unwinds and the car goes home.
    assert client.post(f"/api/workbench/v1/customer-merges/{second_id}/reverse", headers=h).status_code == 200
    assert (
        client.post(f"/api/workbench/v1/customer-merges/{first.get_json()['id']}/reverse", headers=h).status_code == 200
    )
    db_session.expire_all()
    assert db_session.scalar(select(Car.customer_id)) == a.id
    assert (
        db_session.scalar(select(func.count()).select_from(Customer).where(Customer.merged_into_id.is_not(None))) == 0
    )


def test_points_earned_for_a_merged_away_customer_land_on_the_survivor(
    db_session: Any, tree: Any, make_customer: Any, app_ctx: Any
) -> None:
    from backend.customers.service import merge_customers
    from backend.platform.actors import SystemActor

    a = make_customer(tree.stores[0])
    b = make_customer(tree.stores[0])
    merge_customers(db_session, SystemActor("test"), b.id, a.id, "dup")
    # A job queued before the merge (a booking completion, a campaign grant) still says b.
    _earn(db_session, b.id, 50, "late-1")
    db_session.flush()
    accounts = {acc.customer_id: acc.available for acc in db_session.scalars(select(PointsAccount))}
    assert accounts == {a.id: 50}


def test_merge_of_same_day_signins_keeps_both_days_books(
    client: Any, db_session: Any, tree: Any, make_staff: Any, make_customer: Any, staff_headers: Any
) -> None:
    from datetime import date

    from backend.points.models import PointsSignin

    manager = make_staff(tree.stores[0], "store_manager")
    a = make_customer(tree.stores[0], openid="o-a2")
    b = make_customer(tree.stores[0])
    for c in (a, b):
        db_session.add(PointsSignin(customer_id=c.id, sign_date=date(2026, 12, 7), streak=1, cycle_day=1, points=5))
    db_session.commit()
    a, b = _Ids(a.id), _Ids(b.id)
    resp = _merge(client, staff_headers(manager), b.id, a.id)
    assert resp.status_code == 201, resp.get_json()
