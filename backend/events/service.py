"""Events (活动): sign-up with a seat counter and a waitlist, offers of freed seats, fees in
points or cash, QR check-in with attendance points, and the jobs around them.

Seats. `event.seats_taken` counts every seat held (confirmed, awaiting payment, offered, checked
in). A sign-up takes its seats with one conditional update — `seats_taken + n <= capacity` and
nobody waiting — so the counter can never pass the capacity whatever the concurrency; when that
update finds no room the sign-up takes the event row's lock and joins the waitlist with the next
ticket (`waitlist_seq`), so positions follow the order in which people joined.

Lock order, for every write that touches an event's seats or sign-ups: the event row, then
registration rows (in waitlist or id order), then the owner's points account. A sign-up's seat
update is its event lock; cancel, accept, expiry, payment effects and the store's cancellation
all lock the event row first (`SELECT … FOR UPDATE`). So a freed seat is offered exactly once:
whoever frees it offers it, under the lock, to the first waiting sign-up whose party fits.

Offers. A freed seat is held for the first fitting sign-up on the waitlist for
`EVENT_OFFER_HOURS` (never past the start); they accept (the fee is taken then) or the
periodic job lets the offer lapse and offers the seat to the next.

Fees. Points: spent through the ledger at confirmation (key `event_fee:<registration>`),
restored into the same buckets on cancel. Cash: the seat is held `EVENT_PAY_MINUTES` as
`pending_payment`; the owner pays a payment order (business type `event_fee`, the amount from
`quote`, never from the client); the paid effect confirms the sign-up, the closed effect (or the
hold sweep when no order was ever made) releases the seat. A paid sign-up cancelled in time, or
cancelled by the store, is refunded in full by a job.

Check-in. Staff scan the member's rotating QR (backend/platform/qr.py, purpose `event_checkin`,
subject the registration) inside the check-in window. Each scan's nonce is stored per event with
its result, so the same scan replayed answers the same result (success or the same refusal);
attendance points are earned once per event and member (`event_checkin:<event>:<customer>`).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, Select, exists, false, func, or_, select, true, update
from sqlalchemy.orm import Session, aliased

from backend.customers.models import Customer
from backend.customers.service import live_customer
from backend.events.models import (
    ACTIVE_STATES,
    SEAT_STATES,
    Event,
    EventCheckinScan,
    EventRegistration,
    EventStatus,
    FeeKind,
    RegistrationState,
)
from backend.org.models import OrgKind, OrgUnit
from backend.org.scope import acting_store, register_scope, scope_query
from backend.platform import qr
from backend.platform.actors import Actor, StaffActor, SystemActor
from backend.platform.audit import write_audit
from backend.platform.db import DuplicateKey, unique_savepoint, utcnow
from backend.platform.errors import AppError, register_messages
from backend.platform.jobs import enqueue
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import record

log = logging.getLogger("dealerloop.events")

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
SOURCE = "events"
BUSINESS_TYPE = "event_fee"
QR_PURPOSE = "event_checkin"
REFUND_JOB = "events.refund_fee"
SYSTEM = SystemActor("events")
HOLD_GRACE = timedelta(minutes=10)  # a lapsed payment hold with no order is released after this
MANAGE_ROLES = ("store_manager", "region_manager", "division_manager", "group_admin", "marketing")
CHECKIN_ROLES = (*MANAGE_ROLES, "sales_advisor", "service_advisor", "insurance_finance")
STATE_LABELS = {
    RegistrationState.PENDING_PAYMENT: "待支付",
    RegistrationState.CONFIRMED: "报名成功",
    RegistrationState.WAITLISTED: "候补中",
    RegistrationState.OFFERED: "候补名额待确认",
    RegistrationState.CANCELLED: "已取消",
    RegistrationState.EXPIRED: "已失效",
    RegistrationState.CHECKED_IN: "已签到",
    RegistrationState.NO_SHOW: "未到场",
}

register_messages(
    {
        "event.not_found": ("活动不存在", "Event not found"),
        "event.registration_not_found": ("报名记录不存在", "Sign-up not found"),
        "event.cancelled": ("活动已取消", "The event is cancelled"),
        "event.not_published": ("活动尚未发布", "The event is not published"),
        "event.signup_not_open": ("报名尚未开始", "Sign-up has not opened yet"),
        "event.signup_closed": ("报名已截止", "Sign-up is closed"),
        "event.party_size_exceeded": ("报名人数超过上限", "Too many seats for one sign-up"),
        "event.not_eligible": ("您暂不符合该活动的报名条件", "You are not eligible for this event"),
        "event.already_signed_up": ("您已报名该活动", "You have already signed up for this event"),
        "event.full": ("活动名额及候补均已满", "The event and its waitlist are full"),
        "event.cancel_cutoff_passed": ("已过取消截止时间，无法取消", "The cancellation deadline has passed"),
        "event.not_cancellable": ("该报名无法取消", "This sign-up cannot be cancelled"),
        "event.no_offer": ("没有待确认的候补名额", "There is no seat offered to you"),
        "event.offer_expired": ("候补名额已过期", "The offered seat has expired"),
        "event.not_payable": ("该报名无需支付或已超时", "This sign-up is not awaiting payment"),
        "event.invalid": ("活动信息有误", "The event is invalid"),
        "event.not_draft": ("活动已发布，不能修改", "Only a draft event can be edited"),
        "event.unit_invalid": ("请选择你所管理的组织", "Choose an org unit you manage"),
        "event.store_required": ("请选择签到门店", "Name the store where you check people in"),
        "event.wrong_store": ("该活动不在本门店签到", "This event is not checked in at this store"),
        "event.checkin_wrong_event": ("该二维码不是本活动的报名", "This QR code is for another event"),
        "event.checkin_already": ("已签到，请勿重复签到", "Already checked in"),
        "event.checkin_unpaid": ("报名尚未支付", "The sign-up is not paid"),
        "event.checkin_cancelled": ("报名已取消", "The sign-up is cancelled"),
        "event.checkin_not_confirmed": ("报名尚未确认（候补中）", "The sign-up is not confirmed (waitlist)"),
        "event.checkin_too_early": ("尚未到签到时间", "Check-in has not opened yet"),
        "event.checkin_too_late": ("签到已结束", "Check-in has closed"),
    }
)


def _setting(name: str, default: int) -> int:
    try:
        return int(current_app.config.get(name, default))
    except RuntimeError:  # outside an app (unit use)
        return default


def offer_window() -> timedelta:
    return timedelta(hours=_setting("EVENT_OFFER_HOURS", 24))


def pay_window() -> timedelta:
    return timedelta(minutes=_setting("EVENT_PAY_MINUTES", 15))


def reminder_lead() -> timedelta:
    return timedelta(hours=_setting("EVENT_REMINDER_HOURS", 24))


# ---------------------------------------------------------------------------------------------
# Scope: staff see the events organised in their subtree, the events organised above them
# (a region's or the group's event reaches their stores) and the events held at their store.
# Managing (edit, publish, cancel) needs a manager or marketing role over the organiser.


def _event_rule(actor: StaffActor) -> ColumnElement[bool]:
    if actor.scope.store_ids is None:
        return true()
    if not actor.roles:
        return false()
    organiser, me = aliased(OrgUnit), aliased(OrgUnit)
    related = exists().where(
        organiser.id == Event.org_unit_id,
        me.id == actor.org_unit_id,
        or_(organiser.path.startswith(me.path), me.path.startswith(organiser.path)),
    )
    return or_(related, Event.store_id == actor.org_unit_id)


register_scope("event", Event, _event_rule, "event.not_found")


def _unit(session: Session, unit_id: int | None) -> OrgUnit | None:
    return session.get(OrgUnit, unit_id) if unit_id is not None else None


def can_manage(session: Session, actor: StaffActor, org_unit_id: int) -> bool:
    if not actor.has_role(*MANAGE_ROLES):
        return False
    if actor.scope.store_ids is None:
        return True
    mine, theirs = _unit(session, actor.org_unit_id), _unit(session, org_unit_id)
    return mine is not None and theirs is not None and theirs.path.startswith(mine.path)


def _require_manage(session: Session, actor: StaffActor, event: Event) -> None:
    if not can_manage(session, actor, event.org_unit_id):
        raise AppError("auth.forbidden", 403)


# ---------------------------------------------------------------------------------------------
# Small helpers


def _china(value: datetime) -> str:
    return value.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")


def _lock_event(session: Session, event_id: int) -> Event:
    event = session.scalars(
        select(Event).where(Event.id == event_id).with_for_update().execution_options(populate_existing=True)
    ).one_or_none()
    if event is None:
        raise AppError("event.not_found", 404)
    return event


def _lock_registration(session: Session, registration_id: int) -> EventRegistration:
    reg = session.scalars(
        select(EventRegistration)
        .where(EventRegistration.id == registration_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if reg is None:
        raise AppError("event.registration_not_found", 404)
    return reg


def _touch(
    session: Session,
    reg: EventRegistration,
    event: Event,
    kind: Kind,
    ref: str,
    now: datetime,
    *,
    channel: Channel = Channel.MINIPROGRAM,
    advisor_id: int | None = None,
    **payload: Any,
) -> None:
    record(
        session,
        customer_id=reg.customer_id,
        kind=kind,
        channel=channel,
        source=SOURCE,
        source_ref=f"event_reg:{reg.id}:{ref}",
        occurred_at=now,
        advisor_id=advisor_id,
        store_id=event.store_id,
        payload={
            "event_id": event.id,
            "registration_id": reg.id,
            "title": event.title,
            "party_size": reg.party_size,
            **{k: v for k, v in payload.items() if v is not None},
        },
    )


def _notice(session: Session, reg: EventRegistration, event: Event, what: str, label: str) -> None:
    """A subscribe message to the owner (sent only with a grant; see backend/notices)."""
    from backend.notices.service import send_subscribe, thing

    send_subscribe(
        session,
        customer_id=reg.customer_id,
        template_setting="SUBSCRIBE_TEMPLATE_EVENT_NOTICE",
        dedup_key=f"event_reg:{reg.id}:{what}",
        data={
            "thing1": {"value": thing(event.title)},
            "time2": {"value": _china(event.starts_at)},
            "thing3": {"value": thing(event.place)},
            "phrase4": {"value": label[:5]},
        },
        page=f"pages/events/registration?id={reg.id}",
        store_id=event.store_id,
    )


def waitlist_position(session: Session, reg: EventRegistration) -> int | None:
    """1 for the first owner waiting; None when not on the waitlist."""
    if reg.state != RegistrationState.WAITLISTED or reg.waitlist_seq is None:
        return None
    ahead = session.scalar(
        select(func.count())
        .select_from(EventRegistration)
        .where(
            EventRegistration.event_id == reg.event_id,
            EventRegistration.state == RegistrationState.WAITLISTED,
            EventRegistration.waitlist_seq < reg.waitlist_seq,
        )
    )
    return int(ahead or 0) + 1


def waitlist_positions(session: Session, regs: list[EventRegistration]) -> dict[int, int]:
    """Positions of many waitlisted sign-ups: one query per event involved."""
    out: dict[int, int] = {}
    events = {r.event_id for r in regs if r.state == RegistrationState.WAITLISTED}
    for event_id in events:
        seqs = session.execute(
            select(EventRegistration.id)
            .where(EventRegistration.event_id == event_id, EventRegistration.state == RegistrationState.WAITLISTED)
            .order_by(EventRegistration.waitlist_seq)
        ).scalars()
        out.update({rid: n for n, rid in enumerate(seqs, start=1)})
    return out


# ---------------------------------------------------------------------------------------------
# Staff: create, edit, publish, cancel


DEFAULT_CHECKIN_LEAD = timedelta(hours=1)


def _check_times(data: dict[str, Any]) -> None:
    def bad(field: str, why: str) -> AppError:
        return AppError("event.invalid", 422, errors={"json": {field: [why]}})

    if data["ends_at"] <= data["starts_at"]:
        raise bad("ends_at", "after starts_at")
    if data["signup_closes_at"] <= data["signup_opens_at"]:
        raise bad("signup_closes_at", "after signup_opens_at")
    if data["signup_closes_at"] > data["starts_at"]:
        raise bad("signup_closes_at", "at or before starts_at")
    if data["cancel_cutoff_at"] > data["starts_at"]:
        raise bad("cancel_cutoff_at", "at or before starts_at")
    if data["checkin_closes_at"] <= data["checkin_opens_at"]:
        raise bad("checkin_closes_at", "after checkin_opens_at")
    if data["capacity"] < 1:
        raise bad("capacity", "at least 1")
    if data["max_party_size"] < 1 or data["max_party_size"] > data["capacity"]:
        raise bad("max_party_size", "between 1 and the capacity")
    fee = FeeKind(data["fee_kind"])
    if fee == FeeKind.POINTS and data.get("fee_points", 0) <= 0:
        raise bad("fee_points", "a points fee needs fee_points")
    if fee == FeeKind.CASH and data.get("fee_fen", 0) <= 0:
        raise bad("fee_fen", "a cash fee needs fee_fen")
    if fee != FeeKind.POINTS:
        data["fee_points"] = 0
    if fee != FeeKind.CASH:
        data["fee_fen"] = 0


def _with_defaults(data: dict[str, Any], now: datetime) -> dict[str, Any]:
    data = dict(data)
    data.setdefault("signup_opens_at", now)
    data.setdefault("signup_closes_at", data["starts_at"])
    data.setdefault("cancel_cutoff_at", data["signup_closes_at"])
    data.setdefault("checkin_opens_at", data["starts_at"] - DEFAULT_CHECKIN_LEAD)
    data.setdefault("checkin_closes_at", data["ends_at"])
    data.setdefault("max_party_size", 1)
    data.setdefault("fee_kind", FeeKind.FREE)
    data.setdefault("fee_points", 0)
    data.setdefault("fee_fen", 0)
    return data


def _check_places(session: Session, actor: StaffActor, data: dict[str, Any]) -> None:
    organiser = _unit(session, data["org_unit_id"])
    if organiser is None or not can_manage(session, actor, organiser.id):
        raise AppError("event.unit_invalid", 422, errors={"json": {"org_unit_id": ["a unit you manage"]}})
    if organiser.kind == OrgKind.STORE and data.get("store_id") is None:
        data["store_id"] = organiser.id
    if data.get("store_id") is not None:
        venue = _unit(session, data["store_id"])
        if venue is None or venue.kind != OrgKind.STORE or not venue.path.startswith(organiser.path):
            raise AppError("event.invalid", 422, errors={"json": {"store_id": ["a store of the organising unit"]}})
    from backend.segments.service import check_segment_in_scope

    check_segment_in_scope(session, actor, data.get("segment_id"), "segment_id", "event.invalid")


def create_event(session: Session, actor: StaffActor, data: dict[str, Any], now: datetime | None = None) -> Event:
    now = now or utcnow()
    data = _with_defaults(data, now)
    data.setdefault("org_unit_id", actor.org_unit_id)
    _check_places(session, actor, data)
    _check_times(data)
    event = Event(**data, status=EventStatus.DRAFT, created_by_staff_id=actor.staff_id)
    session.add(event)
    session.flush()
    write_audit(session, actor, "event.created", "event", event.id, {"title": event.title})
    return event


EDITABLE = (
    "title",
    "description",
    "place",
    "starts_at",
    "ends_at",
    "signup_opens_at",
    "signup_closes_at",
    "cancel_cutoff_at",
    "checkin_opens_at",
    "checkin_closes_at",
    "capacity",
    "max_party_size",
    "waitlist_limit",
    "eligible_tiers",
    "segment_id",
    "fee_kind",
    "fee_points",
    "fee_fen",
    "attendance_points",
    "store_id",
)


def update_event(
    session: Session, actor: StaffActor, event_id: int, data: dict[str, Any], now: datetime | None = None
) -> Event:
    """A draft may change in every field; a published event only in its texts and its capacity
    upwards (freed seats are offered to the waitlist at once)."""
    now = now or utcnow()
    event = _lock_event(session, event_id)
    _require_manage(session, actor, event)
    if event.status == EventStatus.CANCELLED:
        raise AppError("event.cancelled", 409)
    if event.status == EventStatus.PUBLISHED:
        allowed = {"title", "description", "place", "capacity"}
        if set(data) - allowed:
            raise AppError("event.not_draft", 409, errors={"fields": sorted(set(data) - allowed)})
        if "capacity" in data and data["capacity"] < event.capacity:
            raise AppError("event.invalid", 422, errors={"json": {"capacity": ["a published event only grows"]}})
    merged = {k: getattr(event, k) for k in EDITABLE} | data
    merged["org_unit_id"] = event.org_unit_id
    if event.status == EventStatus.DRAFT:
        _check_places(session, actor, merged)
    _check_times(merged)
    for key in EDITABLE:
        setattr(event, key, merged[key])
    session.flush()
    write_audit(session, actor, "event.updated", "event", event.id, {"fields": sorted(data)})
    if event.status == EventStatus.PUBLISHED:
        _fill_free_seats(session, event, now)
    return event


def publish_event(session: Session, actor: StaffActor, event_id: int, now: datetime | None = None) -> Event:
    now = now or utcnow()
    event = _lock_event(session, event_id)
    _require_manage(session, actor, event)
    if event.status == EventStatus.PUBLISHED:
        return event
    if event.status == EventStatus.CANCELLED:
        raise AppError("event.cancelled", 409)
    if event.ends_at <= now:
        raise AppError("event.invalid", 422, errors={"json": {"ends_at": ["the event is over"]}})
    event.status = EventStatus.PUBLISHED
    event.published_at = now
    session.flush()
    write_audit(session, actor, "event.published", "event", event.id)
    return event


def cancel_event(session: Session, actor: StaffActor, event_id: int, reason: str, now: datetime | None = None) -> Event:
    """The store calls the event off: every active sign-up is cancelled (points restored, cash
    refunded by a job) and told by subscribe message."""
    now = now or utcnow()
    event = _lock_event(session, event_id)
    _require_manage(session, actor, event)
    if event.status == EventStatus.CANCELLED:
        return event
    event.status = EventStatus.CANCELLED
    event.cancelled_at = now
    event.cancel_reason = reason[:255]
    regs = session.scalars(
        select(EventRegistration)
        .where(
            EventRegistration.event_id == event.id,
            EventRegistration.state.in_([s for s in ACTIVE_STATES if s != RegistrationState.CHECKED_IN]),
        )
        .order_by(EventRegistration.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    for reg in regs:
        _end(session, event, reg, RegistrationState.CANCELLED, "store", now, reason=reason[:255])
        _notice(session, reg, event, "cancelled_by_store", "活动取消")
    session.flush()
    write_audit(session, actor, "event.cancelled", "event", event.id, {"reason": reason, "sign_ups": len(regs)})
    return event


def staff_events_query(actor: StaffActor, filters: dict[str, Any]) -> Select:
    stmt = select(Event).where(_event_rule(actor))
    if filters.get("status"):
        stmt = stmt.where(Event.status.in_(filters["status"]))
    if filters.get("store_id"):
        stmt = stmt.where(Event.store_id == filters["store_id"])
    return stmt


def event_registrations(
    session: Session, event_id: int, states: list[str] | None = None, actor: StaffActor | None = None
) -> list[EventRegistration]:
    """An event's sign-ups; for `actor`, those they may see. Everyone below an event's organiser
    sees the event, but who signed up is customer data: the staff who run it (its managers, the
    venue store at the door) see every sign-up, others those of the customers in their scope."""
    stmt = select(EventRegistration).where(EventRegistration.event_id == event_id)
    if actor is not None:
        event = session.get(Event, event_id)
        runs_it = event is not None and (
            can_manage(session, actor, event.org_unit_id) or event.store_id == actor.org_unit_id
        )
        if not runs_it:
            stmt = stmt.where(EventRegistration.customer_id.in_(scope_query(select(Customer.id), actor, "customer")))
    if states:
        stmt = stmt.where(EventRegistration.state.in_(states))
    return list(session.scalars(stmt.order_by(EventRegistration.id).limit(2000)))


# ---------------------------------------------------------------------------------------------
# Owner: reading events


def open_events(session: Session, now: datetime | None = None, store_id: int | None = None) -> list[Event]:
    now = now or utcnow()
    stmt = select(Event).where(Event.status == EventStatus.PUBLISHED, Event.ends_at > now)
    if store_id:
        stmt = stmt.where(Event.store_id == store_id)
    return list(session.scalars(stmt.order_by(Event.starts_at, Event.id).limit(200)))


def owner_event(session: Session, event_id: int) -> Event:
    event = session.get(Event, event_id)
    if event is None or event.status == EventStatus.DRAFT:
        raise AppError("event.not_found", 404)
    return event


def member_registrations(session: Session, customer_id: int) -> list[EventRegistration]:
    stmt = select(EventRegistration).where(EventRegistration.customer_id == customer_id)
    return list(session.scalars(stmt.order_by(EventRegistration.id.desc()).limit(100)))


def member_registration(session: Session, customer_id: int, registration_id: int) -> EventRegistration:
    reg = session.scalars(
        select(EventRegistration).where(
            EventRegistration.id == registration_id, EventRegistration.customer_id == customer_id
        )
    ).one_or_none()
    if reg is None:
        raise AppError("event.registration_not_found", 404)
    return reg


def active_registration(session: Session, customer_id: int, event_id: int) -> EventRegistration | None:
    return session.scalars(
        select(EventRegistration).where(
            EventRegistration.event_id == event_id, EventRegistration.active_customer_id == customer_id
        )
    ).one_or_none()


def active_registrations(session: Session, customer_id: int, event_ids: list[int]) -> dict[int, EventRegistration]:
    if not event_ids:
        return {}
    rows = session.scalars(
        select(EventRegistration).where(
            EventRegistration.active_customer_id == customer_id, EventRegistration.event_id.in_(event_ids)
        )
    )
    return {r.event_id: r for r in rows}


def checkin_qr(session: Session, customer_id: int, registration_id: int, now: datetime | None = None) -> dict:
    """A fresh rotating token for the sign-up's check-in QR (the app refreshes it every minute)."""
    now = now or utcnow()
    reg = member_registration(session, customer_id, registration_id)
    token = qr.issue(current_app.config["SECRET_KEY"], QR_PURPOSE, reg.id, now)
    return {"token": token, "expires_at": now + timedelta(seconds=qr.DEFAULT_TTL_SECONDS)}


# ---------------------------------------------------------------------------------------------
# Owner: sign-up


def _check_eligible(session: Session, event: Event, customer: Customer, now: datetime) -> None:
    if event.eligible_tiers and customer.tier not in event.eligible_tiers:
        raise AppError("event.not_eligible", 403, errors={"reason": "tier", "tiers": list(event.eligible_tiers)})
    if event.segment_id is not None:
        from backend.segments.service import customer_in_segment

        if not customer_in_segment(session, event.segment_id, customer.id, now):
            raise AppError("event.not_eligible", 403, errors={"reason": "segment"})


def sign_up(
    session: Session, customer: Customer, event_id: int, party_size: int = 1, now: datetime | None = None
) -> EventRegistration:
    now = now or utcnow()
    event = session.get(Event, event_id)
    if event is None or event.status == EventStatus.DRAFT:
        raise AppError("event.not_found", 404)
    if event.status == EventStatus.CANCELLED:
        raise AppError("event.cancelled", 409)
    if now < event.signup_opens_at:
        raise AppError("event.signup_not_open", 409, errors={"opens_at": event.signup_opens_at.isoformat()})
    if now >= event.signup_closes_at:
        raise AppError("event.signup_closed", 409, errors={"closed_at": event.signup_closes_at.isoformat()})
    if party_size > event.max_party_size:
        raise AppError(
            "event.party_size_exceeded",
            422,
            errors={"json": {"party_size": [f"at most {event.max_party_size}"]}},
        )
    # A member resolved before a merge committed: the seat is the survivor's, under their
    # one-active-sign-up key (else the merged-away row holds a second seat of the same person).
    customer = live_customer(session, customer.id)
    _check_eligible(session, event, customer, now)
    existing = active_registration(session, customer.id, event.id)
    if existing is not None:
        raise AppError("event.already_signed_up", 409, errors={"registration_id": existing.id})

    # The seat counter: one conditional update, refused when full or when people are waiting.
    taken = session.execute(
        update(Event)
        .where(
            Event.id == event.id,
            Event.status == EventStatus.PUBLISHED,
            Event.waitlist_count == 0,
            Event.seats_taken + party_size <= Event.capacity,
        )
        .values(seats_taken=Event.seats_taken + party_size)
        .execution_options(synchronize_session=False)
    )
    seq = None
    if taken.rowcount != 1:
        # No room at that instant: under the row lock, take a seat freed meanwhile or join the
        # waitlist with the next ticket.
        event = _lock_event(session, event.id)
        if event.status != EventStatus.PUBLISHED:
            raise AppError("event.cancelled", 409)
        if event.waitlist_count == 0 and event.seats_taken + party_size <= event.capacity:
            event.seats_taken += party_size
        else:
            if event.waitlist_limit is not None and event.waitlist_count >= event.waitlist_limit:
                raise AppError("event.full", 409)
            event.waitlist_count += 1
            event.waitlist_seq += 1
            seq = event.waitlist_seq
        session.flush()
    reg = EventRegistration(
        event_id=event.id,
        customer_id=customer.id,
        active_customer_id=customer.id,
        state=RegistrationState.WAITLISTED if seq is not None else RegistrationState.CONFIRMED,
        party_size=party_size,
        waitlist_seq=seq,
        fee_points=event.fee_points * party_size,
        fee_fen=event.fee_fen * party_size,
        created_at=now,
        updated_at=now,
    )
    try:
        with unique_savepoint(session):
            session.add(reg)
    except DuplicateKey as exc:  # a concurrent sign-up of the same owner won; ours rolls back whole
        raise AppError("event.already_signed_up", 409) from exc
    if seq is not None:
        _touch(session, reg, event, Kind.EVENT_WAITLISTED, "waitlisted", now, seq=seq)
        _notice(session, reg, event, "waitlisted", "候补中")
    else:
        _seat_granted(session, event, reg, now)
    return reg


def _seat_granted(session: Session, event: Event, reg: EventRegistration, now: datetime) -> None:
    """The sign-up holds its seats: confirm it (taking a points fee) or hold them for payment."""
    if reg.fee_fen > 0:
        reg.state = RegistrationState.PENDING_PAYMENT
        reg.hold_expires_at = min(now + pay_window(), event.starts_at)
        reg.offer_expires_at = None
        session.flush()
        return
    if reg.fee_points > 0:
        from backend.points.service import spend

        debit = spend(
            session,
            reg.customer_id,
            reg.fee_points,
            key=f"event_fee:{reg.id}",
            reason_code="event_fee",
            operator=f"member:{reg.customer_id}",
            ref_type="event_registration",
            ref_id=str(reg.id),
            note=event.title[:64],
            now=now,
        )
        reg.points_ledger_id = debit.id
    _confirm(session, event, reg, now)


def _confirm(session: Session, event: Event, reg: EventRegistration, now: datetime, **payload: Any) -> None:
    reg.state = RegistrationState.CONFIRMED
    reg.confirmed_at = now
    reg.offer_expires_at = None
    reg.hold_expires_at = None
    reg.version += 1
    session.flush()
    _touch(session, reg, event, Kind.EVENT_SIGNED_UP, "signed_up", now, fee_points=reg.fee_points or None, **payload)
    _notice(session, reg, event, "signed_up", "报名成功")


# ---------------------------------------------------------------------------------------------
# Ending a sign-up and filling the seats it frees


def _end(
    session: Session,
    event: Event,
    reg: EventRegistration,
    state: RegistrationState,
    by: str,
    now: datetime,
    reason: str | None = None,
) -> None:
    """Cancel or expire a sign-up whose event row is locked: give back its seats (or its place
    on the waitlist), its points and (by a job) its money."""
    previous = reg.state
    if previous in SEAT_STATES:
        event.seats_taken -= reg.party_size
    elif previous == RegistrationState.WAITLISTED:
        event.waitlist_count -= 1
    reg.state = state
    reg.active_customer_id = None
    reg.cancelled_at = now
    reg.cancelled_by = by
    reg.offer_expires_at = None
    reg.version += 1
    session.flush()
    if reg.points_ledger_id is not None:
        from backend.points.models import PointsLedger
        from backend.points.service import restore

        debit = session.get(PointsLedger, reg.points_ledger_id)
        if debit is not None:
            restore(
                session,
                debit,
                key=f"event_fee_refund:{reg.id}",
                reason_code="event_fee_refund",
                operator=f"member:{reg.customer_id}" if by == "owner" else f"system:{SOURCE}",
                now=now,
            )
    if reg.payment_order_id is not None:
        enqueue(session, REFUND_JOB, {"registration_id": reg.id}, dedup_key=f"{REFUND_JOB}:{reg.id}")
    _touch(
        session,
        reg,
        event,
        Kind.EVENT_CANCELLED,
        "ended",
        now,
        channel=Channel.MINIPROGRAM if by == "owner" else Channel.SYSTEM,
        state=state.value,
        previous=previous.value,
        by=by,
        reason=reason,
    )


def _fill_free_seats(session: Session, event: Event, now: datetime) -> list[EventRegistration]:
    """Offer free seats (event row locked) to the waitlist in order: the first sign-up whose
    party fits gets them held until its offer expires. Returns the sign-ups offered a seat."""
    offered: list[EventRegistration] = []
    if event.status != EventStatus.PUBLISHED or now >= event.starts_at:
        return offered
    expires = min(now + offer_window(), event.starts_at)
    while event.waitlist_count > 0 and event.capacity - event.seats_taken > 0:
        free = event.capacity - event.seats_taken
        waiter = session.scalars(
            select(EventRegistration)
            .where(
                EventRegistration.event_id == event.id,
                EventRegistration.state == RegistrationState.WAITLISTED,
                EventRegistration.party_size <= free,
            )
            .order_by(EventRegistration.waitlist_seq)
            .limit(1)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).first()
        if waiter is None:
            break
        waiter.state = RegistrationState.OFFERED
        waiter.offer_expires_at = expires
        waiter.version += 1
        event.seats_taken += waiter.party_size
        event.waitlist_count -= 1
        session.flush()
        _touch(
            session,
            waiter,
            event,
            Kind.EVENT_SEAT_OFFERED,
            "offered",
            now,
            channel=Channel.SYSTEM,
            offer_expires_at=expires.isoformat(),
        )
        _notice(session, waiter, event, "offered", "候补成功")
        offered.append(waiter)
    return offered


def cancel(session: Session, customer_id: int, registration_id: int, now: datetime | None = None) -> EventRegistration:
    """The owner cancels (or declines an offer, or leaves the waitlist). A seat held for a
    confirmed or unpaid sign-up may be given back only before the event's cancel cut-off; the
    freed seats are offered to the waitlist in the same transaction."""
    now = now or utcnow()
    found = member_registration(session, customer_id, registration_id)
    event = _lock_event(session, found.event_id)
    reg = _lock_registration(session, found.id)
    if reg.state == RegistrationState.CANCELLED and reg.cancelled_by == "owner":
        return reg  # a repeated tap
    if reg.state not in (*SEAT_STATES, RegistrationState.WAITLISTED) or reg.state == RegistrationState.CHECKED_IN:
        raise AppError("event.not_cancellable", 409, errors={"state": reg.state.value})
    if reg.state in (RegistrationState.CONFIRMED, RegistrationState.PENDING_PAYMENT) and now >= event.cancel_cutoff_at:
        raise AppError("event.cancel_cutoff_passed", 409, errors={"cutoff_at": event.cancel_cutoff_at.isoformat()})
    if now >= event.starts_at:
        raise AppError("event.not_cancellable", 409, errors={"state": reg.state.value, "started": True})
    if reg.payment_order_id is not None:
        # The owner's cancellation refunds the fee: refused here (e.g. points.reversal_blocked)
        # while the sign-up still stands, not by the refund job once it is cancelled; what the
        # refund will undo (the points earned) is settled now, before a spend can use it.
        from backend.payments.service import accept_owner_full_refund

        accept_owner_full_refund(session, reg.payment_order_id)
    _end(session, event, reg, RegistrationState.CANCELLED, "owner", now)
    _fill_free_seats(session, event, now)
    return reg


def accept_offer(
    session: Session, customer_id: int, registration_id: int, now: datetime | None = None
) -> EventRegistration:
    now = now or utcnow()
    found = member_registration(session, customer_id, registration_id)
    event = _lock_event(session, found.event_id)
    reg = _lock_registration(session, found.id)
    if reg.state in (RegistrationState.CONFIRMED, RegistrationState.PENDING_PAYMENT) and reg.waitlist_seq:
        return reg  # accepted already (a retried tap)
    if reg.state != RegistrationState.OFFERED:
        raise AppError("event.no_offer", 409, errors={"state": reg.state.value})
    if reg.offer_expires_at is None or reg.offer_expires_at <= now:
        raise AppError("event.offer_expired", 409)
    _seat_granted(session, event, reg, now)
    return reg


# ---------------------------------------------------------------------------------------------
# Jobs: lapsed offers, lapsed payment holds, reminders, no-shows


def expire_offers(session: Session, now: datetime | None = None, limit: int = 500) -> int:
    """Offers not taken up in time lapse; their seats go to the next on the waitlist."""
    now = now or utcnow()
    rows = session.execute(
        select(EventRegistration.id, EventRegistration.event_id)
        .where(EventRegistration.state == RegistrationState.OFFERED, EventRegistration.offer_expires_at <= now)
        .order_by(EventRegistration.event_id, EventRegistration.id)
        .limit(limit)
    ).all()
    done = 0
    for event_id in sorted({r.event_id for r in rows}):
        event = _lock_event(session, event_id)
        for reg_id in [r.id for r in rows if r.event_id == event_id]:
            reg = _lock_registration(session, reg_id)
            if reg.state != RegistrationState.OFFERED or reg.offer_expires_at is None or reg.offer_expires_at > now:
                continue
            _end(session, event, reg, RegistrationState.EXPIRED, "system", now, reason="offer_expired")
            done += 1
        _fill_free_seats(session, event, now)
    return done


def _expire_hold(session: Session, event: Event, reg: EventRegistration, now: datetime, reason: str) -> bool:
    if reg.state != RegistrationState.PENDING_PAYMENT:
        return False
    _end(session, event, reg, RegistrationState.EXPIRED, "system", now, reason=reason)
    _fill_free_seats(session, event, now)
    return True


def expire_holds(session: Session, now: datetime | None = None, limit: int = 500) -> int:
    """Unpaid holds past their window with no payment order in flight (an order in flight is
    closed by the payments feature, whose closed effect releases the hold)."""
    from backend.payments.models import PaymentOrder

    now = now or utcnow()
    rows = session.execute(
        select(EventRegistration.id, EventRegistration.event_id)
        .where(
            EventRegistration.state == RegistrationState.PENDING_PAYMENT,
            EventRegistration.hold_expires_at <= now - HOLD_GRACE,
        )
        .order_by(EventRegistration.event_id, EventRegistration.id)
        .limit(limit)
    ).all()
    done = 0
    for row in rows:
        live = session.scalar(select(PaymentOrder.id).where(PaymentOrder.open_key == f"{BUSINESS_TYPE}:{row.id}"))
        if live is not None:
            continue
        event = _lock_event(session, row.event_id)
        reg = _lock_registration(session, row.id)
        done += _expire_hold(session, event, reg, now, "unpaid")
    return done


def send_reminders(session: Session, now: datetime | None = None) -> int:
    """Once per event, when it is `EVENT_REMINDER_HOURS` away: a notice to each confirmed owner."""
    now = now or utcnow()
    ids = session.scalars(
        select(Event.id).where(
            Event.status == EventStatus.PUBLISHED,
            Event.reminded_at.is_(None),
            Event.starts_at > now,
            Event.starts_at <= now + reminder_lead(),
        )
    ).all()
    sent = 0
    for event_id in ids:
        claimed = session.execute(
            update(Event)
            .where(Event.id == event_id, Event.reminded_at.is_(None))
            .values(reminded_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:
            continue
        event = session.get(Event, event_id)
        assert event is not None
        for reg in event_registrations(session, event_id, [RegistrationState.CONFIRMED.value]):
            _notice(session, reg, event, "reminder", "即将开始")
            sent += 1
    return sent


def mark_no_shows(session: Session, now: datetime | None = None) -> int:
    """Once per event, after its check-in window: confirmed sign-ups never checked in are
    no-shows; what is still waiting or offered lapses."""
    now = now or utcnow()
    ids = session.scalars(
        select(Event.id).where(
            Event.status == EventStatus.PUBLISHED,
            Event.no_shows_marked_at.is_(None),
            Event.checkin_closes_at <= now,
        )
    ).all()
    marked = 0
    for event_id in ids:
        event = _lock_event(session, event_id)
        if event.no_shows_marked_at is not None:
            continue
        event.no_shows_marked_at = now
        regs = session.scalars(
            select(EventRegistration)
            .where(
                EventRegistration.event_id == event_id,
                EventRegistration.state.in_(
                    [
                        RegistrationState.CONFIRMED,
                        RegistrationState.WAITLISTED,
                        RegistrationState.OFFERED,
                        RegistrationState.PENDING_PAYMENT,
                    ]
                ),
            )
            .order_by(EventRegistration.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).all()
        for reg in regs:
            if reg.state == RegistrationState.CONFIRMED:
                reg.state = RegistrationState.NO_SHOW
                reg.version += 1
                session.flush()
                _touch(session, reg, event, Kind.EVENT_NO_SHOW, "no_show", now, channel=Channel.SYSTEM)
                marked += 1
            else:
                _end(session, event, reg, RegistrationState.EXPIRED, "system", now, reason="event_over")
    return marked


# ---------------------------------------------------------------------------------------------
# Payments: the event_fee business type


def _registration_of_order(session: Session, order_id: int) -> EventRegistration | None:
    from backend.payments.models import PaymentOrder

    order = session.get(PaymentOrder, order_id)
    if order is None or order.business_type != BUSINESS_TYPE or not order.business_id.isdigit():
        return None
    return session.get(EventRegistration, int(order.business_id))


def quote(session: Session, customer_id: int, business_id: str) -> Any:
    from backend.payments.effects import Quote

    if not business_id.isdigit():
        raise AppError("event.registration_not_found", 404)
    reg = member_registration(session, customer_id, int(business_id))
    now = utcnow()
    if reg.state != RegistrationState.PENDING_PAYMENT or reg.hold_expires_at is None or reg.hold_expires_at <= now:
        raise AppError("event.not_payable", 409, errors={"state": reg.state.value})
    event = session.get(Event, reg.event_id)
    assert event is not None
    return Quote(
        amount_fen=reg.fee_fen,
        description=f"活动报名 {event.title}",
        store_id=event.store_id,
        expires_in=reg.hold_expires_at - now,
    )


def on_paid(session: Session, payment_order_id: int) -> None:
    """Confirm the sign-up (once). Money that arrives after the hold lapsed takes a seat again if
    one is free and nobody waits; otherwise it is refunded in full."""
    found = _registration_of_order(session, payment_order_id)
    if found is None:
        return
    now = utcnow()
    event = _lock_event(session, found.event_id)
    reg = _lock_registration(session, found.id)
    if reg.payment_order_id == payment_order_id:
        return
    if reg.state == RegistrationState.PENDING_PAYMENT:
        reg.payment_order_id = payment_order_id
        _confirm(session, event, reg, now, payment_order_id=payment_order_id)
        return
    reg.payment_order_id = payment_order_id
    if (
        reg.state == RegistrationState.EXPIRED
        and event.status == EventStatus.PUBLISHED
        and now < event.starts_at
        and event.waitlist_count == 0
        and event.seats_taken + reg.party_size <= event.capacity
    ):
        try:
            with unique_savepoint(session):
                reg.active_customer_id = reg.customer_id
                session.flush()
        except DuplicateKey:
            reg.active_customer_id = None  # signed up again meanwhile: refund this payment
        else:
            event.seats_taken += reg.party_size
            reg.cancelled_at = reg.cancelled_by = None
            _confirm(session, event, reg, now, payment_order_id=payment_order_id, late=True)
            return
    log.warning("event sign-up %s paid in state %s: refunding", reg.id, reg.state.value)
    session.flush()
    enqueue(session, REFUND_JOB, {"registration_id": reg.id}, dedup_key=f"{REFUND_JOB}:{reg.id}")


def on_closed(session: Session, payment_order_id: int) -> None:
    found = _registration_of_order(session, payment_order_id)
    if found is None or found.state != RegistrationState.PENDING_PAYMENT:
        return
    event = _lock_event(session, found.event_id)
    reg = _lock_registration(session, found.id)
    _expire_hold(session, event, reg, utcnow(), "payment_closed")


def refund_fee(session: Session, registration_id: int) -> bool:
    """The job: a full refund of a sign-up's paid order (idempotent by its out_refund_no)."""
    from backend.payments.service import gateway, request_refund

    reg = session.get(EventRegistration, registration_id)
    if reg is None or reg.payment_order_id is None:
        return False
    if reg.state in (RegistrationState.CONFIRMED, RegistrationState.CHECKED_IN, RegistrationState.NO_SHOW):
        return False  # still attending (a late payment re-took its seat)
    # Never refusable: the sign-up is over (called off by the store, expired, or cancelled by the
    # owner after `cancel` put the refund guards' question to them), so the money is owed; a
    # refused job would only be retried until dead with the owner's money kept.
    request_refund(
        session,
        gateway(),
        SYSTEM,
        reg.payment_order_id,
        reason="活动取消退款" if reg.cancelled_by == "store" else "活动报名取消退款",
        out_refund_no=f"EVT{reg.id}",
        refusable=False,
    )
    return True


# ---------------------------------------------------------------------------------------------
# Check-in


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _replay(session: Session, scan: EventCheckinScan) -> EventRegistration:
    if scan.result != "checked_in":
        raise AppError(scan.result, scan.status, errors={"replayed": True})
    reg = session.get(EventRegistration, scan.registration_id)
    assert reg is not None
    return reg


def _refusal(event: Event, reg: EventRegistration | None, now: datetime) -> str | None:
    if reg is None or reg.event_id != event.id:
        return "event.checkin_wrong_event"
    if event.status == EventStatus.CANCELLED or reg.state in (RegistrationState.CANCELLED, RegistrationState.EXPIRED):
        return "event.checkin_cancelled"
    if reg.state == RegistrationState.CHECKED_IN:
        return "event.checkin_already"
    if reg.state == RegistrationState.PENDING_PAYMENT:
        return "event.checkin_unpaid"
    if reg.state in (RegistrationState.WAITLISTED, RegistrationState.OFFERED):
        return "event.checkin_not_confirmed"
    if now < event.checkin_opens_at:
        return "event.checkin_too_early"
    if now >= event.checkin_closes_at or reg.state == RegistrationState.NO_SHOW:
        return "event.checkin_too_late"
    return None


def check_in(
    session: Session,
    actor: StaffActor,
    event: Event,
    token: str,
    store_id: int | None = None,
    now: datetime | None = None,
) -> EventRegistration:
    """Check a member in by their QR. Refusals are stable codes (409) and are stored with the
    scan's nonce, like a success, so the same scan sent again answers exactly the same."""
    now = now or utcnow()
    if not actor.has_role(*CHECKIN_ROLES):
        raise AppError("auth.forbidden", 403)
    store = None
    if event.store_id is not None:
        store = acting_store(session, actor, store_id, "event.store_required", "event.wrong_store")
        if store != event.store_id:
            raise AppError("event.wrong_store", 403)
    token_hash = _token_hash(token)
    try:
        scanned = qr.verify(current_app.config["SECRET_KEY"], token, QR_PURPOSE, now)
    except AppError as exc:
        if exc.code == "qr.expired":  # a scan answered before, sent again after the token's TTL
            prior = session.scalars(
                select(EventCheckinScan).where(
                    EventCheckinScan.event_id == event.id, EventCheckinScan.token_hash == token_hash
                )
            ).first()
            if prior is not None:
                return _replay(session, prior)
        raise
    reg = None
    try:
        reg = _lock_registration(session, scanned.subject)
    except AppError:
        reg = None
    prior = session.scalars(
        select(EventCheckinScan).where(EventCheckinScan.event_id == event.id, EventCheckinScan.nonce == scanned.nonce)
    ).one_or_none()
    if prior is not None:
        return _replay(session, prior)
    code = _refusal(event, reg, now)
    scan = EventCheckinScan(
        event_id=event.id,
        nonce=scanned.nonce[:64],
        token_hash=token_hash,
        registration_id=reg.id if reg is not None else None,
        staff_id=actor.staff_id,
        store_id=store,
        result=code or "checked_in",
        status=409 if code else 200,
        created_at=now,
    )
    try:
        with unique_savepoint(session):
            session.add(scan)
    except DuplicateKey:
        prior = session.scalars(
            select(EventCheckinScan).where(
                EventCheckinScan.event_id == event.id, EventCheckinScan.nonce == scanned.nonce
            )
        ).one()
        return _replay(session, prior)
    if code is not None:
        session.info["commit_despite_error"] = True  # keep the scan: its replay answers the same
        raise AppError(code, 409, errors={"registration_state": reg.state.value} if reg is not None else None)
    assert reg is not None
    reg.state = RegistrationState.CHECKED_IN
    reg.checked_in_at = now
    reg.checked_in_by = actor.staff_id
    reg.version += 1
    session.flush()
    _touch(
        session,
        reg,
        event,
        Kind.EVENT_CHECKED_IN,
        "checked_in",
        now,
        channel=Channel.STORE,
        advisor_id=actor.staff_id,
        attendance_points=event.attendance_points or None,
    )
    if event.attendance_points > 0:
        from backend.points.service import earn

        earn(
            session,
            reg.customer_id,
            event.attendance_points,
            key=f"event_checkin:{event.id}:{reg.customer_id}",
            reason_code="event_attended",
            operator=f"staff:{actor.staff_id}",
            ref_type="event",
            ref_id=str(event.id),
            note=event.title[:64],
            now=now,
        )
    _campaign_action(session, reg, event, now)
    write_audit(session, actor, "event.checked_in", "event_registration", reg.id, {"nonce": scanned.nonce})
    return reg


def _campaign_action(session: Session, reg: EventRegistration, event: Event, now: datetime) -> None:
    try:
        from backend.campaigns.service import on_action
    except ImportError:  # campaigns not installed in this build
        return
    on_action(
        session,
        reg.customer_id,
        "event_attended",
        ref=f"event_checkin:{event.id}:{reg.customer_id}",  # one occurrence per event and member
        store_id=event.store_id,
        occurred_at=now,
    )


def actor_label(actor: Actor) -> str:
    return f"{actor.kind}:{actor.ident}"
