"""Real threads on MariaDB: nothing oversold, doubled or driven below zero."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.customers.models import Customer
from backend.platform.db import db
from backend.points import service
from backend.points.models import ItemKind, MallItem, MallOrder, PointsAccount, PointsLedger
from tests.threads import run_threads

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]

ADDRESS = {"name": "张三", "phone": "13800138000", "region": "上海", "detail": "世纪大道1号"}


def _setup(app: Any, members: int, points: int, stock: int, per_order: int = 1) -> tuple[list[int], int]:
    with app.app_context():
        s = db.session()
        customers = [Customer(name=f"抢购{i}") for i in range(members)]
        s.add_all(customers)
        s.flush()
        for c in customers:
            service.earn(
                s, c.id, points, key=f"seed:{c.id}", reason_code="test", operator="system:test", expiry="never"
            )
        item = MallItem(
            name="限量洗车券", kind=ItemKind.PHYSICAL, points_price=100, stock=stock, per_order_limit=per_order
        )
        s.add(item)
        s.commit()
        return [c.id for c in customers], item.id


def _assert_books_balance(app: Any) -> None:
    with app.app_context():
        s = db.session()
        assert service.check_drift(s) == []
        assert s.scalar(select(func.count()).select_from(PointsAccount).where(PointsAccount.available < 0)) == 0


@pytest.fixture
def patient_pool(app: Any) -> Any:
    """500 requests at once through one process's 30 connections, serialised on one hot row:
    on a busy machine the last ones wait longer than DB_POOL_TIMEOUT (then answered 503
    service.busy, see tests/test_db_connections.py). This test is about what gets sold, so it
    lets them wait."""
    pool = db.engine.pool
    saved = pool._timeout  # type: ignore[attr-defined]
    pool._timeout = 300  # type: ignore[attr-defined]
    yield
    pool._timeout = saved  # type: ignore[attr-defined]


def test_flash_sale_sells_exactly_the_stock(app: Any, member_headers: Any, patient_pool: Any) -> None:
    ids, item_id = _setup(app, members=500, points=1000, stock=100)
    headers = [member_headers(type("M", (), {"id": cid})()) for cid in ids]
    client = app.test_client()
    results = run_threads(
        len(ids),
        lambda i: client.post(
            "/api/app/v1/mall/redemptions", json={"item_id": item_id, "address": ADDRESS}, headers=headers[i]
        ),
    )
    statuses = [getattr(r, "status_code", r) for r in results]
    assert statuses.count(201) == 100, [s for s in statuses if s not in (201, 409)][:5]
    assert statuses.count(409) == 400
    assert {r.get_json()["code"] for r in results if r.status_code == 409} == {"mall.sold_out"}
    with app.app_context():
        s = db.session()
        item = s.get(MallItem, item_id)
        assert (item.stock, item.sold) == (0, 100)
        assert s.scalar(select(func.count()).select_from(MallOrder)) == 100
        assert s.scalar(select(func.sum(PointsAccount.available))) == 500 * 1000 - 100 * 100
    _assert_books_balance(app)


def test_one_member_from_ten_threads_with_points_for_three(app: Any, member_headers: Any) -> None:
    ids, item_id = _setup(app, members=1, points=300, stock=50)
    h = member_headers(type("M", (), {"id": ids[0]})())
    client = app.test_client()
    results = run_threads(
        10,
        lambda i: client.post("/api/app/v1/mall/redemptions", json={"item_id": item_id, "address": ADDRESS}, headers=h),
    )
    statuses = [getattr(r, "status_code", r) for r in results]
    assert statuses.count(201) == 3, statuses
    assert {r.get_json()["code"] for r in results if r.status_code != 201} == {"points.insufficient"}
    with app.app_context():
        s = db.session()
        assert s.get(MallItem, item_id).stock == 47
        assert service.account(s, ids[0]).available == 0
    _assert_books_balance(app)


def test_idempotent_earn_from_several_threads_credits_once(app: Any) -> None:
    ids, _ = _setup(app, members=1, points=1, stock=0)

    def earn(i: int) -> int:
        with app.app_context():
            s = db.session()
            row = service.earn(s, ids[0], 500, key="campaign:42", reason_code="t", operator="system:t")
            s.commit()
            return row.id

    rows = run_threads(8, earn)
    assert all(isinstance(r, int) for r in rows), rows
    assert len(set(rows)) == 1
    with app.app_context():
        s = db.session()
        assert service.account(s, ids[0]).available == 501
        assert (
            s.scalar(
                select(func.count()).select_from(PointsLedger).where(PointsLedger.idempotency_key == "campaign:42")
            )
            == 1
        )
    _assert_books_balance(app)
