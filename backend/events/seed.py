"""Demo events for `make run`: live events at the demo store (one full, with a waitlist), a
region event for gold and platinum members, a group trip paid in points, and a past event with
check-ins and a no-show — so the owner app and the workbench have something to show.

Written as rows with the same seat and waitlist bookkeeping as live traffic (no notices are
sent: the seed touches only our database), and found again by title and organiser, so running
the seed twice creates nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.customers.models import Customer, CustomerIdentity, IdentityKind
from backend.events.models import Event, EventRegistration, EventStatus, FeeKind, RegistrationState
from backend.events.service import _touch
from backend.org.models import OrgUnit
from backend.touchpoints.models import Channel, Kind


@dataclass(frozen=True)
class _Plan:
    title: str
    organiser: str  # "store" | "region" | "group"
    starts_in: timedelta
    capacity: int
    place: str
    max_party_size: int = 2
    fee_kind: FeeKind = FeeKind.FREE
    fee_points: int = 0
    attendance_points: int = 0
    tiers: tuple[str, ...] = ()
    description: str = ""


PLANS = (
    _Plan(
        "冬季免费检测日",
        "store",
        timedelta(days=5),
        8,
        "门店售后大厅",
        attendance_points=50,
        description="免费检测灯光、轮胎、电瓶和空调，到场签到送 50 积分。",
    ),
    _Plan(
        "新车品鉴会",
        "region",
        timedelta(days=9),
        20,
        "门店展厅",
        tiers=("gold", "platinum"),
        attendance_points=100,
        description="金卡及以上会员专享，新款车型静态品鉴与试驾。",
    ),
    _Plan(
        "车主自驾游 · 从化温泉",
        "group",
        timedelta(days=16),
        30,
        "从化温泉度假区（集合：天河体育中心北门）",
        max_party_size=4,
        fee_kind=FeeKind.POINTS,
        fee_points=200,
        description="集团车主自驾游，每位 200 积分，含午餐与温泉门票。",
    ),
    _Plan("亲子DIY活动", "store", timedelta(days=-3), 6, "门店客户休息区", attendance_points=30),
)


def _customers(session: Session, openids: list[str]) -> list[Customer]:
    rows = session.execute(
        select(Customer, CustomerIdentity.value)
        .join(CustomerIdentity, CustomerIdentity.customer_id == Customer.id)
        .where(CustomerIdentity.kind == IdentityKind.OPENID, CustomerIdentity.value.in_(openids))
    ).all()
    order = {o: i for i, o in enumerate(openids)}
    return [c for c, _ in sorted(rows, key=lambda r: order[r[1]])]


def _register(
    session: Session, event: Event, customer_id: int, state: RegistrationState, party: int, now: datetime
) -> EventRegistration:
    reg = EventRegistration(
        event_id=event.id,
        customer_id=customer_id,
        active_customer_id=customer_id,
        state=state,
        party_size=party,
        fee_points=event.fee_points * party,
        created_at=now,
        updated_at=now,
    )
    if state == RegistrationState.WAITLISTED:
        event.waitlist_count += 1
        event.waitlist_seq += 1
        reg.waitlist_seq = event.waitlist_seq
    else:
        event.seats_taken += party
        reg.confirmed_at = now
    session.add(reg)
    session.flush()
    if state == RegistrationState.WAITLISTED:
        _touch(session, reg, event, Kind.EVENT_WAITLISTED, "waitlisted", now, seq=reg.waitlist_seq)
    else:
        _touch(session, reg, event, Kind.EVENT_SIGNED_UP, "signed_up", now)
    return reg


def seed_events(session: Session, demo_store_id: int, openids: list[str], now: datetime) -> str:
    store = session.get(OrgUnit, demo_store_id)
    if store is None:
        return "events: no demo store"
    ids = [int(x) for x in store.path.strip("/").split("/")]
    units = {"group": ids[0], "region": ids[-2] if len(ids) >= 2 else ids[0], "store": demo_store_id}
    existing = set(
        session.execute(select(Event.title, Event.org_unit_id).where(Event.title.in_([p.title for p in PLANS]))).all()
    )
    owners = _customers(session, openids)[1:]  # demo owner #1 is left free to try signing up
    made = signed = 0
    for plan in PLANS:
        if (plan.title, units[plan.organiser]) in existing:
            continue
        starts = (now + plan.starts_in).replace(minute=0, second=0, microsecond=0)
        past = plan.starts_in < timedelta(0)
        event = Event(
            org_unit_id=units[plan.organiser],
            store_id=demo_store_id if plan.organiser != "group" else None,
            title=plan.title,
            description=plan.description or None,
            place=plan.place,
            status=EventStatus.PUBLISHED,
            starts_at=starts,
            ends_at=starts + timedelta(hours=3),
            signup_opens_at=starts - timedelta(days=30),
            signup_closes_at=starts - timedelta(hours=2),
            cancel_cutoff_at=starts - timedelta(days=1),
            checkin_opens_at=starts - timedelta(hours=1),
            checkin_closes_at=starts + timedelta(hours=3),
            capacity=plan.capacity,
            max_party_size=plan.max_party_size,
            eligible_tiers=list(plan.tiers),
            fee_kind=plan.fee_kind,
            fee_points=plan.fee_points,
            attendance_points=plan.attendance_points,
            published_at=starts - timedelta(days=30),
            no_shows_marked_at=starts + timedelta(hours=3) if past else None,
        )
        session.add(event)
        session.flush()
        made += 1
        joined = now - timedelta(days=2) if not past else starts - timedelta(days=5)
        if plan.title == "冬季免费检测日":  # full, with three waiting
            for i, party in enumerate((2, 2, 1, 1, 2, 1, 1, 1)):
                state = RegistrationState.CONFIRMED if event.seats_taken + party <= event.capacity else None
                if state is None or i >= len(owners):
                    break
                _register(session, event, owners[i].id, state, party, joined + timedelta(minutes=i))
                signed += 1
            for i in range(6, min(9, len(owners))):
                _register(session, event, owners[i].id, RegistrationState.WAITLISTED, 1, joined + timedelta(hours=i))
                signed += 1
        elif plan.tiers:
            eligible = [o for o in owners if o.tier in plan.tiers][:3]
            for i, owner in enumerate(eligible):
                _register(session, event, owner.id, RegistrationState.CONFIRMED, 1, joined + timedelta(minutes=i))
                signed += 1
        elif past:
            for i, owner in enumerate(owners[9:14]):
                reg = _register(session, event, owner.id, RegistrationState.CONFIRMED, 1, joined)
                signed += 1
                at = starts + timedelta(minutes=10 + i)
                if i < 4:
                    reg.state = RegistrationState.CHECKED_IN
                    reg.checked_in_at = at
                    _touch(session, reg, event, Kind.EVENT_CHECKED_IN, "checked_in", at, channel=Channel.STORE)
                else:
                    reg.state = RegistrationState.NO_SHOW
                    _touch(session, reg, event, Kind.EVENT_NO_SHOW, "no_show", at, channel=Channel.SYSTEM)
    session.flush()
    return f"events: {made} events, {signed} sign-ups"
