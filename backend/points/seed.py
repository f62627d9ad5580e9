"""Demo loyalty data: mall items (every kind), service packages, and for the first demo owners a
points history (the points for every service in their seeded history — last year's expire at
the end of next year, so some expire soon — spends, sign-ins, the tiers that follow) and a few
redemptions.

Called by `backend.seed.seed_demo` after the customers exist. Safe to run again: items and
packages are found by name, every ledger row has a `seed:` idempotency key, and redemptions are
made only for owners who have none yet. Everything goes through the services, so the ledger,
accounts, tiers and touchpoints agree exactly as they would in production.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.customers.models import CustomerIdentity, IdentityKind
from backend.packages.models import ServicePackage
from backend.platform.errors import AppError
from backend.points import mall, service, signin
from backend.points.models import ItemKind, LimitPeriod, MallCode, MallItem, MallOrder
from backend.touchpoints.models import Kind, Touchpoint

DEMO_ADDRESS = {"name": "车主", "phone": "13800000000", "region": "上海市浦东新区", "detail": "世纪大道100号"}
OWNERS_WITH_HISTORY = 50


def _items(store_id: int | None) -> list[dict]:
    return [
        {"name": "车载香薰礼盒", "kind": ItemKind.PHYSICAL, "points_price": 800, "stock": 200, "per_member_limit": 2},
        {
            "name": "视频会员月卡",
            "kind": ItemKind.VIRTUAL_CODE,
            "points_price": 1500,
            "stock": 50,
            "limit_period": LimitPeriod.MONTH,
            "per_period_limit": 1,
        },
        {
            "name": "免费精洗一次",
            "kind": ItemKind.SERVICE_VOUCHER,
            "points_price": 300,
            "stock": 500,
            "store_id": store_id,
        },
        {
            "name": "行车记录仪（积分+现金）",
            "kind": ItemKind.PHYSICAL,
            "points_price": 2000,
            "cash_fen": 9900,
            "stock": 30,
        },
        {
            "name": "金卡专享保养工时券",
            "kind": ItemKind.SERVICE_VOUCHER,
            "points_price": 1200,
            "stock": 100,
            "min_tier": "gold",
        },
        {"name": "¥50 保养代金券", "kind": ItemKind.COUPON, "points_price": 500, "stock": 100},
    ]


def _packages(store_id: int | None) -> list[dict]:
    return [
        {
            "name": "基础保养3次卡",
            "service_type": "basic_maintenance",
            "uses": 3,
            "price_fen": 89900,
            "store_id": store_id,
        },
        {"name": "精致洗车5次卡", "service_type": "wash", "uses": 5, "price_fen": 19900, "valid_days": 180},
        {"name": "四轮定位+轮胎检查", "service_type": "tyres", "uses": 1, "price_fen": 16800, "store_id": store_id},
    ]


def _ensure_catalogue(session: Session, store_id: int | None) -> tuple[dict[str, MallItem], int]:
    created = 0
    items: dict[str, MallItem] = {}
    for spec in _items(store_id):
        item = session.scalars(select(MallItem).where(MallItem.name == spec["name"])).first()
        if item is None:
            item = MallItem(**spec)
            session.add(item)
            session.flush()
            created += 1
        items[spec["name"]] = item
    codes_item = items["视频会员月卡"]
    if session.scalar(select(MallCode.id).where(MallCode.item_id == codes_item.id).limit(1)) is None:
        mall.add_codes(session, codes_item, [f"VIP-DEMO-{i:04d}" for i in range(1, 51)])
    for spec in _packages(store_id):
        if session.scalar(select(ServicePackage.id).where(ServicePackage.name == spec["name"])) is None:
            session.add(ServicePackage(**spec))
            created += 1
    session.flush()
    return items, created


def _history(session: Session, n: int, customer_id: int, now: datetime) -> int:
    """Points for each service the seed's history completed (1 per yuan, a few hours later, as
    the payments listener would), then a spend for every third owner."""
    rows = 0
    services = session.execute(
        select(Touchpoint.source_ref, Touchpoint.occurred_at, Touchpoint.payload).where(
            Touchpoint.customer_id == customer_id, Touchpoint.kind == Kind.SERVICE_COMPLETED
        )
    ).all()
    for ref, occurred_at, payload in services:
        points = int((payload or {}).get("amount_fen", 0)) // 100
        if points <= 0:
            continue
        service.earn(
            session,
            customer_id,
            points,
            key=f"seed:earn:{ref}",
            reason_code="order_paid",
            operator="system:seed",
            ref_type="touchpoint",
            ref_id=ref,
            now=occurred_at + timedelta(hours=5),
        )
        rows += 1
    balance = service.account(session, customer_id).available
    if n % 3 == 0 and balance >= 200:
        service.spend(
            session,
            customer_id,
            balance // 4,
            key=f"seed:spend:{n}",
            reason_code="mall_redeem",
            operator="system:seed",
            now=now - timedelta(days=1 + n % 15),
        )
        rows += 1
    return rows


def _sign_ins(session: Session, customer_id: int, days: int, now: datetime) -> None:
    """A streak of daily sign-ins up to yesterday (a day already signed, on a re-run, is refused)."""
    for back in range(days, 0, -1):
        with suppress(AppError):
            signin.sign_in(session, customer_id, now=now - timedelta(days=back))


def seed_loyalty(session: Session, openid_of: dict[int, str], demo_store_id: int | None, now: datetime) -> str:
    """`openid_of` maps demo owner numbers to their openids (owner #1 first)."""
    items, created = _ensure_catalogue(session, demo_store_id)
    wanted = sorted(openid_of)[:OWNERS_WITH_HISTORY]
    ids = dict(
        session.execute(
            select(CustomerIdentity.value, CustomerIdentity.customer_id).where(
                CustomerIdentity.kind == IdentityKind.OPENID,
                CustomerIdentity.value.in_([openid_of[n] for n in wanted]),
            )
        ).all()
    )
    ledger_rows = redemptions = 0
    for n in wanted:
        customer_id = ids.get(openid_of[n])
        if customer_id is None:
            continue
        ledger_rows += _history(session, n, customer_id, now)
        if n <= 3:
            _sign_ins(session, customer_id, days=2 + n, now=now)
    owner_one = ids.get(openid_of[wanted[0]]) if wanted else None
    if owner_one is not None:
        # Owner #1 is the one the README logs in as: a high tier, points to redeem, orders to show.
        service.earn(
            session,
            owner_one,
            6000,
            key="seed:owner1:welcome-gift",
            reason_code="bulk_grant",
            operator="system:seed",
            expiry="never",
            now=now - timedelta(days=30),
        )
        if session.scalar(select(MallOrder.id).where(MallOrder.customer_id == owner_one).limit(1)) is None:
            mall.redeem(session, owner_one, items["车载香薰礼盒"].id, address=DEMO_ADDRESS, now=now)
            mall.redeem(session, owner_one, items["视频会员月卡"].id, now=now)
            redemptions = 2
    session.flush()
    return f"{created} mall items/packages, {ledger_rows} ledger rows, {redemptions} redemptions"
