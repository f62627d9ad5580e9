"""Demo leads: vehicles for sale in every store (on sale, reserved, sold, withdrawn) and, for the
first demo owners, leads of every type in every status — one overdue and escalated, an
accident with a tow and a repair booking requested.

Called by `backend.seed.seed_demo` after the customers exist. Safe to run again: listings are
found by (store, title) and leads are made only for owners who have none. Rows and their
touchpoints are written directly (the same `record` and source_refs as the service), and no
WeCom message is queued: the seed touches only our database.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.customers.models import Car, Customer, CustomerIdentity, IdentityKind
from backend.leads.models import (
    Lead,
    LeadPriority,
    LeadStatus,
    LeadType,
    Listing,
    ListingCondition,
    ListingStatus,
)
from backend.leads.service import ROLE_BY_TYPE, SLA, SOURCE
from backend.org.models import OrgKind, OrgUnit
from backend.org.service import active_staff_with_role
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import record

PHOTO = "https://cdn.example.com/demo/listing-{}.jpg"
LISTINGS = [
    # (condition, title, brand, series, year, mileage_km, price_fen, status)
    ("new", "2026款 ID.4 CROZZ 长续航 PRO", "一汽-大众", "ID.4 CROZZ", 2026, 0, 19_988_000, ListingStatus.ON_SALE),
    ("used", "2021款 迈腾 380TSI 豪华型", "一汽-大众", "迈腾", 2021, 48_000, 15_300_000, ListingStatus.ON_SALE),
    ("used", "2019款 速腾 280TSI 舒适型", "一汽-大众", "速腾", 2019, 72_500, 8_650_000, ListingStatus.RESERVED),
    ("used", "2018款 宝来 1.5L 自动", "一汽-大众", "宝来", 2018, 91_000, 5_480_000, ListingStatus.SOLD),
    ("used", "2017款 高尔夫 1.4T", "一汽-大众", "高尔夫", 2017, 103_000, 4_900_000, ListingStatus.WITHDRAWN),
]
SCENE = {"address": "广州市天河区天河路385号", "latitude": 23.1322, "longitude": 113.3277}
PLANS: list[dict[str, Any]] = [
    {"type": LeadType.ACCIDENT, "status": LeadStatus.CONTACTED, "age": timedelta(days=3), "tow": True},
    {"type": LeadType.USED_CAR, "status": LeadStatus.APPOINTMENT, "age": timedelta(days=2)},
    {"type": LeadType.TRADE_IN, "status": LeadStatus.CONTACTED, "age": timedelta(days=1)},
    {"type": LeadType.LOAN, "status": LeadStatus.WON, "age": timedelta(days=6)},
    {"type": LeadType.INSURANCE, "status": LeadStatus.LOST, "age": timedelta(days=9), "reason": "已在其他保险公司续保"},
    {"type": LeadType.NEW_CAR, "status": LeadStatus.NEW, "age": timedelta(hours=3), "escalated": True},
    {"type": LeadType.ACCIDENT, "status": LeadStatus.NEW, "age": timedelta(minutes=5), "tow": True},
    {"type": LeadType.NEW_CAR, "status": LeadStatus.NEW, "age": timedelta(minutes=20)},
    {"type": LeadType.INSURANCE, "status": LeadStatus.NEW, "age": timedelta(minutes=40)},
    {"type": LeadType.USED_CAR, "status": LeadStatus.WON, "age": timedelta(days=12)},
]


def _ensure_listings(session: Session) -> tuple[int, dict[int, list[Listing]]]:
    stores = session.scalars(select(OrgUnit).where(OrgUnit.kind == OrgKind.STORE).order_by(OrgUnit.id)).all()
    created = 0
    by_store: dict[int, list[Listing]] = {}
    for store in stores:
        have = {row.title: row for row in session.scalars(select(Listing).where(Listing.store_id == store.id))}
        for i, (condition, title, brand, series, year, km, price, status) in enumerate(LISTINGS):
            listing = have.get(title)
            if listing is None:
                listing = Listing(
                    store_id=store.id,
                    condition=ListingCondition(condition),
                    title=title,
                    brand=brand,
                    series=series,
                    year=year,
                    mileage_km=km,
                    price_fen=price,
                    photos=[PHOTO.format(i + 1)],
                    description=f"{store.name} 在售车辆",
                    status=status,
                )
                session.add(listing)
                created += 1
            by_store.setdefault(store.id, []).append(listing)
    session.flush()
    return created, by_store


def _note(session: Session, lead: Lead, kind: Kind, ref: str, at: datetime, **payload: Any) -> None:
    record(
        session,
        customer_id=lead.customer_id,
        kind=kind,
        channel=Channel.MINIPROGRAM if kind == Kind.LEAD_CREATED else Channel.WECOM,
        source=SOURCE,
        source_ref=f"lead:{lead.id}:{ref}",
        occurred_at=at,
        advisor_id=lead.advisor_id,
        store_id=lead.store_id,
        payload={"lead_id": lead.id, "type": lead.type.value, **payload},
    )


def _lead(
    session: Session,
    n: int,
    plan: dict[str, Any],
    customer: Customer,
    car: Car | None,
    listings: list[Listing],
    now: datetime,
) -> Lead | None:
    kind: LeadType = plan["type"]
    store_id = customer.home_store_id
    if store_id is None:
        return None
    staff = active_staff_with_role(session, store_id, ROLE_BY_TYPE[kind].value)
    advisor = staff[n % len(staff)] if staff else None
    created = now - plan["age"]
    on_sale = [x for x in listings if x.status == ListingStatus.ON_SALE and x.condition == ListingCondition.USED]
    listing = on_sale[0] if kind == LeadType.USED_CAR and on_sale else None
    if kind == LeadType.USED_CAR and listing is None:
        return None
    if kind in (LeadType.TRADE_IN, LeadType.INSURANCE, LeadType.ACCIDENT) and car is None:
        return None
    accident = kind == LeadType.ACCIDENT
    details = {
        LeadType.NEW_CAR: {"brand": "一汽-大众", "series": "ID.4 CROZZ", "budget_fen": 20_000_000},
        LeadType.TRADE_IN: {"mileage_km": (car.mileage_km if car else None) or 60_000, "condition": "车况良好"},
        LeadType.LOAN: {"amount_fen": 10_000_000, "down_payment_fen": 5_000_000, "term_months": 36},
        LeadType.INSURANCE: {"insurance_kind": "renewal", "current_insurer": "人保财险"},
    }.get(kind, {})
    lead = Lead(
        customer_id=customer.id,
        store_id=store_id,
        type=kind,
        status=LeadStatus.NEW,
        priority=LeadPriority.HIGH if accident else LeadPriority.NORMAL,
        advisor_id=advisor.id if advisor else None,
        routed_role=ROLE_BY_TYPE[kind].value,
        routed_by="round_robin" if advisor else "none",
        car_id=car.id if car and kind != LeadType.NEW_CAR else None,
        listing_id=listing.id if listing else None,
        subject=f"listing:{listing.id}" if listing else (f"car:{car.id}" if car else "model:demo"),
        details=details,
        photos=[PHOTO.format(9)] if kind in (LeadType.TRADE_IN, LeadType.ACCIDENT) else [],
        location={"address": "广州市天河区天河路385号", "latitude": 23.1322, "longitude": 113.3277}
        if accident
        else None,
        injuries=False if accident else None,
        drivable=(not plan.get("tow")) if accident else None,
        tow_requested=bool(plan.get("tow")),
        repair_booking_requested=accident,
        preferred_time=(now + timedelta(days=1)).replace(hour=1, minute=0, second=0) if accident else None,
        contact_due_at=created + SLA[kind],
        created_at=created,
        updated_at=created,
    )
    session.add(lead)
    session.flush()
    _note(session, lead, Kind.LEAD_CREATED, "created", created, priority=lead.priority.value)
    if advisor is not None:
        _note(session, lead, Kind.LEAD_ASSIGNED, "v1:assigned", created, advisor_id=advisor.id, by="routing")
    status: LeadStatus = plan["status"]
    steps = {
        LeadStatus.CONTACTED: [LeadStatus.CONTACTED],
        LeadStatus.APPOINTMENT: [LeadStatus.CONTACTED, LeadStatus.APPOINTMENT],
        LeadStatus.WON: [LeadStatus.CONTACTED, LeadStatus.WON],
        LeadStatus.LOST: [LeadStatus.CONTACTED, LeadStatus.LOST],
    }.get(status, [])
    at, previous = created, LeadStatus.NEW
    for step in steps:
        at = min(at + SLA[kind] / 2, now)
        lead.version += 1
        lead.status = step
        lead.updated_at = at
        if previous == LeadStatus.NEW:
            lead.contacted_at = at
        if step == LeadStatus.APPOINTMENT:
            lead.appointment_at = now + timedelta(days=2)
        if step in (LeadStatus.WON, LeadStatus.LOST):
            lead.closed_at = at
            lead.lost_reason = plan.get("reason")
        _note(
            session,
            lead,
            Kind.LEAD_STATUS_CHANGED,
            f"v{lead.version}:status",
            at,
            **{"from": previous.value, "to": step.value},
        )
        previous = step
    if plan.get("escalated"):
        lead.escalated_at = lead.contact_due_at + timedelta(minutes=1)
        _note(
            session, lead, Kind.LEAD_ESCALATED, "escalated", lead.escalated_at, due_at=lead.contact_due_at.isoformat()
        )
    session.flush()
    return lead


def seed_leads(session: Session, openid_of: dict[int, str], now: datetime) -> str:
    """`openid_of` maps demo owner numbers to their openids (owner #1 first)."""
    listings_created, by_store = _ensure_listings(session)
    wanted = sorted(openid_of)[: len(PLANS)]
    ids = dict(
        session.execute(
            select(CustomerIdentity.value, CustomerIdentity.customer_id).where(
                CustomerIdentity.kind == IdentityKind.OPENID,
                CustomerIdentity.value.in_([openid_of[n] for n in wanted]),
            )
        ).all()
    )
    made = 0
    for i, n in enumerate(wanted):
        customer_id = ids.get(openid_of[n])
        if customer_id is None or session.scalar(select(Lead.id).where(Lead.customer_id == customer_id).limit(1)):
            continue
        customer = session.get(Customer, customer_id)
        car = session.scalars(select(Car).where(Car.customer_id == customer_id).order_by(Car.id).limit(1)).first()
        if customer is None:
            continue
        if _lead(session, n, PLANS[i], customer, car, by_store.get(customer.home_store_id or 0, []), now):
            made += 1
    return f"{listings_created} listings, {made} leads"
