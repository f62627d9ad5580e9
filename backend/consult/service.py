"""Consultations (在线咨询): owners write to their advisor or their store's queue, advisors answer
from the workbench, and every answer's response time is measured in the store's business time.

Flow and rules:
- Opening: the topic picks the customer's assigned advisor for it (`TOPIC_ROLE`); without one the
  conversation waits unclaimed in the store's queue. The advisor (or, for the queue, the store's
  advisors of that role) gets a WeCom app message.
- A claim is a conditional update (`advisor_id IS NULL`): of two advisors claiming at once
  exactly one wins, the other gets 409 `consult.already_claimed`.
- Every write to a conversation (message, transfer, close, reopen, read) first locks the
  conversation row: one lock, always the same, so writers serialise and never deadlock.
- A message is stored once per (conversation, side, client id); the create endpoints also take
  an Idempotency-Key.
- An owner message starts a wait (if none is running): `awaiting_since` and `due_at`, the SLA
  deadline in business time. The next staff message ends it with a `consult_response` fact row
  (first response or reply, wall-clock and business seconds, within SLA) and a subscribe notice
  to the owner (`SUBSCRIBE_TEMPLATE_CONSULT_REPLIED`, one per answered wait).
- Every message and every state change is a touchpoint (`consult_*` kinds) in the same
  transaction; side effects go through the outbox (WeCom `notify`, `send_subscribe`).
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, case, exists, false, func, select, true, update
from sqlalchemy.orm import Session

from backend.consult.business_time import (
    SHANGHAI,
    IntervalsFor,
    business_seconds_for,
    deadline_for,
    fallback_intervals,
)
from backend.consult.models import (
    TOPIC_LABEL,
    TOPIC_ROLE,
    Conversation,
    ConversationStatus,
    Message,
    MessageKind,
    Response,
    ResponseKind,
    Sender,
    StoreSetting,
    Topic,
)
from backend.customers.models import Car, Customer, CustomerAdvisor
from backend.customers.service import live_customer, vault
from backend.org.models import ADVISOR_ROLES, MANAGER_ROLES, OrgKind, OrgUnit, Role, Staff, StaffRole, StaffStatus
from backend.org.open_work import held_by, lock_active, may_take, register_open_work
from backend.org.scope import register_scope, store_filter
from backend.org.service import managers_of_store
from backend.platform.actors import MemberActor, StaffActor
from backend.platform.audit import write_audit
from backend.platform.db import DuplicateKey, unique_savepoint, utcnow
from backend.platform.errors import AppError, register_messages
from backend.platform.pii import register_sealed_text, seal_into
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import live_customer_id, record

log = logging.getLogger("dealerloop.consult")

SOURCE = "consult"
REPLIED_TEMPLATE = "SUBSCRIBE_TEMPLATE_CONSULT_REPLIED"
MAX_OPEN_PER_OWNER = 10
PAGE_MAX = 100

register_messages(
    {
        "consult.not_found": ("咨询会话不存在", "Consultation not found"),
        "consult.closed": ("该咨询已结束，请重新打开后再发送", "This consultation is closed"),
        "consult.not_closed": ("该咨询尚未结束", "This consultation is not closed"),
        "consult.already_claimed": ("该咨询已被其他顾问接待", "This consultation was already claimed"),
        "consult.store_required": ("请选择咨询的门店", "Name the store to consult"),
        "consult.too_many_open": ("进行中的咨询过多，请先结束部分咨询", "Too many open consultations"),
        "consult.transfer_target_invalid": (
            "只能转给本门店在职的顾问",
            "Transfer only to an active advisor of the conversation's store",
        ),
        "consult.not_assignee": ("只有接待顾问或门店经理可以执行该操作", "Only the assignee or a manager can do this"),
        "consult.message_not_found": ("消息不存在", "Message not found"),
        "consult.booking_not_found": ("预约不存在", "Booking not found"),
    }
)


# ---------------------------------------------------------------------------------------------
# Scope: an advisor sees the conversations assigned to them and the unclaimed ones of their
# store; managers the conversations of their stores; group admins everything.


def _conversation_rule(actor: StaffActor) -> ColumnElement[bool]:
    if actor.scope.everything:
        return true()
    if actor.scope.own_customers_only:
        return (Conversation.advisor_id == actor.staff_id) | (
            Conversation.advisor_id.is_(None) & (Conversation.store_id == actor.org_unit_id)
        )
    if not actor.scope.store_ids:
        return false()
    return store_filter(actor, Conversation.store_id)


def _claim_rule(actor: StaffActor) -> ColumnElement[bool]:
    """Claiming looks a little wider than reading: an advisor trying to claim a conversation of
    their store that a colleague took a moment earlier is told 409 already claimed, not 404."""
    if actor.scope.own_customers_only:
        return (Conversation.store_id == actor.org_unit_id) | (Conversation.advisor_id == actor.staff_id)
    return _conversation_rule(actor)


register_scope("consult_conversation", Conversation, _conversation_rule, "consult.not_found")
register_scope("consult_claimable", Conversation, _claim_rule, "consult.not_found")


def _message_rule(actor: StaffActor) -> ColumnElement[bool]:
    """A message is seen by whoever sees its conversation."""
    return exists().where(Conversation.id == Message.conversation_id, _conversation_rule(actor))


register_scope("consult_message", Message, _message_rule, "consult.not_found")
register_sealed_text("consult_message.text", Message, "text", "consult_message")


def _locked(session: Session, *where: ColumnElement[bool]) -> Conversation:
    """Lock a conversation for a write, in the one lock order of this room: the customer row
    (shared, as every touchpoint write takes it), then the conversation row. A customer merge
    locks customers before it moves their conversations, so the two cannot deadlock."""
    customer_id = session.scalar(select(Conversation.customer_id).where(*where))
    if customer_id is None:
        raise AppError("consult.not_found", 404)
    live_customer_id(session, customer_id)
    conversation = session.scalars(
        select(Conversation).where(*where).with_for_update().execution_options(populate_existing=True)
    ).one_or_none()
    if conversation is None:
        raise AppError("consult.not_found", 404)
    return conversation


def _locked_for_staff(session: Session, actor: StaffActor, conversation_id: int) -> Conversation:
    return _locked(session, Conversation.id == conversation_id, _conversation_rule(actor))


def owner_conversation(session: Session, customer_id: int, conversation_id: int, lock: bool = False) -> Conversation:
    where = (Conversation.id == conversation_id, Conversation.customer_id == customer_id)
    if lock:
        return _locked(session, *where)
    conversation = session.scalars(select(Conversation).where(*where)).one_or_none()
    if conversation is None:
        raise AppError("consult.not_found", 404)
    return conversation


# ---------------------------------------------------------------------------------------------
# Business hours and the SLA


def intervals_for_store(session: Session, store_id: int) -> IntervalsFor:
    """The store's opening intervals per local day. Until `backend/stores` (opening hours) is on
    main every store uses the documented fallback, every day 08:30–18:00 Asia/Shanghai; once it
    is, stores without hours keep the fallback."""
    try:
        from backend.stores.service import opening_intervals  # type: ignore[import-not-found]
    except ImportError:
        return fallback_intervals
    cache: dict[date, list[tuple[datetime, datetime]]] = {}

    def for_day(day: date) -> list[tuple[datetime, datetime]]:
        if day not in cache:
            cache[day] = list(opening_intervals(session, store_id, day))
        return cache[day]

    return for_day


def sla_minutes(session: Session, store_id: int) -> int:
    minutes = session.scalar(select(StoreSetting.sla_minutes).where(StoreSetting.store_id == store_id))
    return int(minutes if minutes is not None else current_app.config.get("CONSULT_SLA_MINUTES") or 10)


def set_sla_minutes(session: Session, actor: StaffActor, store_id: int, minutes: int) -> StoreSetting:
    setting = session.scalars(
        select(StoreSetting).where(StoreSetting.store_id == store_id).with_for_update()
    ).one_or_none()
    if setting is None:
        setting = StoreSetting(store_id=store_id, sla_minutes=minutes)
        try:
            with unique_savepoint(session):
                session.add(setting)
        except DuplicateKey:
            setting = session.scalars(
                select(StoreSetting).where(StoreSetting.store_id == store_id).with_for_update()
            ).one()
    setting.sla_minutes = minutes
    setting.updated_at = utcnow()
    write_audit(session, actor, "consult.sla_set", "org_unit", store_id, {"sla_minutes": minutes})
    session.flush()
    return setting


# ---------------------------------------------------------------------------------------------
# Opening


def _assigned_advisor(session: Session, customer_id: int, store_id: int, topic: Topic) -> Staff | None:
    """The customer's advisor for the topic when they work at the conversation's store and hold
    the topic's role, confirmed under a shared lock on their row (`lock_active`): one a sync is
    resigning meanwhile is not given a conversation the departure job would not see."""
    role = TOPIC_ROLE[topic]
    if role is None:
        return None
    advisor = session.scalars(
        select(Staff)
        .join(CustomerAdvisor, CustomerAdvisor.staff_id == Staff.id)
        .join(StaffRole, StaffRole.staff_id == Staff.id)
        .where(
            CustomerAdvisor.customer_id == customer_id,
            CustomerAdvisor.role == role,
            StaffRole.role == role,
            Staff.org_unit_id == store_id,
            Staff.status == StaffStatus.ACTIVE,
        )
    ).first()
    return advisor if advisor is not None and lock_active(session, advisor.id) else None


def _own_car(session: Session, customer_id: int, car_id: int) -> Car:
    car = session.get(Car, car_id)
    if car is None or car.customer_id != customer_id or car.removed_at is not None:
        raise AppError("car.not_found", 404)
    return car


def open_conversation(
    session: Session,
    member: MemberActor,
    *,
    topic: str,
    car_id: int | None = None,
    store_id: int | None = None,
    message: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Conversation:
    now = now or utcnow()
    # The survivor's row, locked: serialises the open-count cap, and a member whom a staff merge
    # moved a moment ago (after their request resolved them) asks as the survivor.
    customer = live_customer(session, member.customer_id, exclusive=True)
    topic_value = Topic(topic)
    if car_id is not None:
        _own_car(session, customer.id, car_id)
    store_id = store_id or customer.home_store_id
    if store_id is None:
        raise AppError("consult.store_required", 422, errors={"json": {"store_id": ["required without a home store"]}})
    store = session.get(OrgUnit, store_id)
    if store is None or store.kind != OrgKind.STORE:
        raise AppError("org.not_found", 404)
    open_count = session.scalar(
        select(func.count())
        .select_from(Conversation)
        .where(Conversation.customer_id == customer.id, Conversation.status == ConversationStatus.OPEN)
    )
    if open_count >= MAX_OPEN_PER_OWNER:
        raise AppError("consult.too_many_open", 409)
    advisor = _assigned_advisor(session, customer.id, store.id, topic_value)
    conversation = Conversation(
        customer_id=customer.id,
        store_id=store.id,
        topic=topic_value,
        car_id=car_id,
        advisor_id=advisor.id if advisor else None,
        status=ConversationStatus.OPEN,
        claimed_at=now if advisor else None,
        created_at=now,
    )
    session.add(conversation)
    session.flush()
    record(
        session,
        customer_id=customer.id,
        kind=Kind.CONSULT_OPENED,
        channel=Channel.MINIPROGRAM,
        source=SOURCE,
        source_ref=f"consult:{conversation.id}:opened",
        occurred_at=now,
        advisor_id=conversation.advisor_id,
        store_id=store.id,
        payload={"conversation_id": conversation.id, "topic": topic_value.value, "car_id": car_id},
    )
    if message is not None:
        _add_message(session, conversation, Sender.OWNER, None, message, now)
    else:
        _notify_staff(session, conversation, customer, key=f"{conversation.id}", excerpt=TOPIC_LABEL[topic_value])
    return conversation


def owner_conversations(session: Session, customer_id: int, limit: int = 50) -> list[Conversation]:
    stmt = select(Conversation).where(Conversation.customer_id == customer_id)
    return list(session.scalars(stmt.order_by(Conversation.id.desc()).limit(min(limit, PAGE_MAX))))


# ---------------------------------------------------------------------------------------------
# Messages


def _check_refs(session: Session, conversation: Conversation, data: dict[str, Any]) -> dict[str, Any] | None:
    kind = MessageKind(data["kind"])
    if kind == MessageKind.IMAGE:
        return {"image_ref": data["image_ref"]}
    if kind == MessageKind.CAR_CARD:
        car = _own_car(session, conversation.customer_id, data["car_id"])
        return {"car_id": car.id, "vin": car.vin, "plate": car.plate, "series": car.series}
    if kind == MessageKind.BOOKING_CARD:
        return {"booking_id": _check_booking(session, conversation.customer_id, data["booking_id"])}
    return None


def _check_booking(session: Session, customer_id: int, booking_id: int) -> int:
    """A booking card names one of the customer's bookings."""
    from backend.booking.models import Booking

    booking = session.get(Booking, booking_id)
    if booking is None or getattr(booking, "customer_id", None) != customer_id:
        raise AppError("consult.booking_not_found", 404)
    return booking_id


def _excerpt(message: Message) -> str:
    if message.kind == MessageKind.TEXT:
        return (message.text or "")[:60]
    return {MessageKind.IMAGE: "[图片]", MessageKind.CAR_CARD: "[车辆]", MessageKind.BOOKING_CARD: "[预约]"}[
        message.kind
    ]


def _existing_message(session: Session, conversation_id: int, sender: Sender, client_id: str | None) -> Message | None:
    if not client_id:
        return None
    return session.scalars(
        select(Message).where(
            Message.conversation_id == conversation_id, Message.sender == sender, Message.client_id == client_id
        )
    ).one_or_none()


def _add_message(
    session: Session,
    conversation: Conversation,
    sender: Sender,
    staff: StaffActor | None,
    data: dict[str, Any],
    now: datetime,
) -> tuple[Message, bool]:
    """Store one message on a locked, open conversation and do what it means (wait, response,
    notices, touchpoint). Returns (message, created); a repeated client id returns the first."""
    client_id = data.get("client_id")
    existing = _existing_message(session, conversation.id, sender, client_id)
    if existing is not None:
        return existing, False
    if conversation.status != ConversationStatus.OPEN:
        raise AppError("consult.closed", 409)
    message = Message(
        conversation_id=conversation.id,
        sender=sender,
        staff_id=staff.staff_id if staff else None,
        kind=MessageKind(data["kind"]),
        ref=_check_refs(session, conversation, data),
        client_id=client_id,
        created_at=now,
    )
    seal_into(message, "text", data.get("text"), vault())
    session.add(message)
    session.flush()
    conversation.last_message_at = now
    conversation.last_excerpt = _excerpt(message)
    conversation.first_message_at = conversation.first_message_at or now
    payload: dict[str, Any] = {
        "conversation_id": conversation.id,
        "message_id": message.id,
        "sender": sender.value,
        "message_kind": message.kind.value,
        "topic": conversation.topic.value,
    }
    customer = session.get(Customer, conversation.customer_id)
    if sender == Sender.OWNER:
        conversation.owner_read_message_id = max(conversation.owner_read_message_id, message.id)
        if conversation.awaiting_since is None:
            conversation.awaiting_since = now
            sla = sla_minutes(session, conversation.store_id) * 60
            conversation.due_at = deadline_for(now, sla, intervals_for_store(session, conversation.store_id))
            _notify_staff(session, conversation, customer, key=f"{conversation.id}:m{message.id}", message=message)
    else:
        assert staff is not None
        conversation.staff_read_message_id = max(conversation.staff_read_message_id, message.id)
        if conversation.awaiting_since is not None:
            response = _record_response(session, conversation, message, staff, now)
            payload["response"] = {
                "kind": response.kind.value,
                "seconds": response.seconds,
                "business_seconds": response.business_seconds,
                "within_sla": response.within_sla,
            }
            _notify_owner(session, conversation, message, response, staff)
    record(
        session,
        customer_id=conversation.customer_id,
        kind=Kind.CONSULT_MESSAGE,
        channel=Channel.MINIPROGRAM,
        source=SOURCE,
        source_ref=f"consult:msg:{message.id}",
        occurred_at=now,
        advisor_id=staff.staff_id if staff else conversation.advisor_id,
        store_id=conversation.store_id,
        payload=payload,
    )
    session.flush()
    return message, True


def _record_response(
    session: Session, conversation: Conversation, message: Message, staff: StaffActor, now: datetime
) -> Response:
    waiting_since = conversation.awaiting_since
    assert waiting_since is not None
    intervals = intervals_for_store(session, conversation.store_id)
    sla = sla_minutes(session, conversation.store_id) * 60
    business = business_seconds_for(waiting_since, now, intervals)
    first = conversation.first_response_at is None
    response = Response(
        conversation_id=conversation.id,
        message_id=message.id,
        customer_id=conversation.customer_id,
        advisor_id=staff.staff_id,
        store_id=conversation.store_id,
        kind=ResponseKind.FIRST_RESPONSE if first else ResponseKind.REPLY,
        waiting_since=waiting_since,
        responded_at=now,
        seconds=max(int((now - waiting_since).total_seconds()), 0),
        business_seconds=business,
        sla_seconds=sla,
        within_sla=business <= sla,
    )
    session.add(response)
    session.flush()
    if first:
        conversation.first_response_at = now
        conversation.first_response_seconds = response.seconds
        conversation.first_response_business_seconds = business
    conversation.response_count += 1
    conversation.awaiting_since = None
    conversation.due_at = None
    conversation.overdue_alerted_at = None
    record(
        session,
        customer_id=conversation.customer_id,
        kind=Kind.CONSULT_RESPONDED,
        channel=Channel.MINIPROGRAM,
        source=SOURCE,
        source_ref=f"consult:response:{response.id}",
        occurred_at=now,
        advisor_id=staff.staff_id,
        store_id=conversation.store_id,
        payload={
            "conversation_id": conversation.id,
            "message_id": message.id,
            "response_kind": response.kind.value,
            "waiting_since": waiting_since.isoformat(),
            "seconds": response.seconds,
            "business_seconds": business,
            "within_sla": response.within_sla,
        },
    )
    return response


def post_owner_message(
    session: Session, member: MemberActor, conversation_id: int, data: dict[str, Any], now: datetime | None = None
) -> tuple[Message, bool]:
    conversation = owner_conversation(session, member.customer_id, conversation_id, lock=True)
    return _add_message(session, conversation, Sender.OWNER, None, data, now or utcnow())


def post_staff_message(
    session: Session, actor: StaffActor, conversation_id: int, data: dict[str, Any], now: datetime | None = None
) -> tuple[Message, bool]:
    """An answer from the workbench. Posting to an unclaimed conversation claims it."""
    now = now or utcnow()
    conversation = _locked_for_staff(session, actor, conversation_id)
    if conversation.advisor_id is None and conversation.status == ConversationStatus.OPEN:
        _claimed(session, conversation, actor, now)
    return _add_message(session, conversation, Sender.STAFF, actor, data, now)


def messages(session: Session, conversation: Conversation, after_id: int = 0, limit: int = 50) -> list[Message]:
    """Messages oldest first, after `after_id` (a client polls with the last id it has)."""
    stmt = select(Message).where(Message.conversation_id == conversation.id, Message.id > after_id)
    return list(session.scalars(stmt.order_by(Message.id).limit(min(limit, PAGE_MAX))))


def mark_read(session: Session, conversation_id: int, side: Sender, up_to: int, *, lock_with: Any) -> Conversation:
    """Read receipt: the side has read every message up to `up_to` (never moves backwards)."""
    conversation = lock_with(conversation_id)
    last = session.scalar(select(func.max(Message.id)).where(Message.conversation_id == conversation.id)) or 0
    if up_to > last or up_to < 1:
        raise AppError("consult.message_not_found", 422, errors={"json": {"up_to_message_id": ["not in this thread"]}})
    column = Conversation.owner_read_message_id if side == Sender.OWNER else Conversation.staff_read_message_id
    session.execute(
        update(Conversation)
        .where(Conversation.id == conversation.id)
        .values({column: case((column < up_to, up_to), else_=column)})
    )
    session.refresh(conversation)
    return conversation


# ---------------------------------------------------------------------------------------------
# Claim, transfer, close, reopen


def _claimed(session: Session, conversation: Conversation, actor: StaffActor, now: datetime) -> None:
    conversation.advisor_id = actor.staff_id
    conversation.claimed_at = now
    # Claimed again after it went back to the queue (its advisor left): a claim of its own.
    again = f":{conversation.transfer_count}" if conversation.transfer_count else ""
    record(
        session,
        customer_id=conversation.customer_id,
        kind=Kind.CONSULT_CLAIMED,
        channel=Channel.SYSTEM,
        source=SOURCE,
        source_ref=f"consult:{conversation.id}:claimed{again}",
        occurred_at=now,
        advisor_id=actor.staff_id,
        store_id=conversation.store_id,
        payload={"conversation_id": conversation.id},
    )


def claim(session: Session, actor: StaffActor, conversation_id: int, now: datetime | None = None) -> Conversation:
    """Take an unclaimed conversation from the store's queue: a conditional update, so of two
    advisors claiming at the same moment exactly one gets it. Claiming one's own again answers
    it as it is (a double tap, a retry after a lost answer)."""
    now = now or utcnow()
    conversation = session.scalars(
        select(Conversation).where(Conversation.id == conversation_id, _claim_rule(actor))
    ).one_or_none()
    if conversation is None:
        raise AppError("consult.not_found", 404)
    if not lock_active(session, actor.staff_id):  # resigned by a sync at this very moment
        raise AppError("auth.staff_inactive", 401)
    live_customer_id(session, conversation.customer_id)  # the lock order of `_locked`
    result = session.execute(
        update(Conversation)
        .where(
            Conversation.id == conversation_id,
            Conversation.advisor_id.is_(None),
            Conversation.status == ConversationStatus.OPEN,
        )
        .values(advisor_id=actor.staff_id, claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(conversation)
    if result.rowcount != 1:
        if conversation.status != ConversationStatus.OPEN:
            raise AppError("consult.closed", 409)
        if conversation.advisor_id == actor.staff_id:
            return conversation  # the claimer's own second tap (a retry): claimed once, by them
        raise AppError("consult.already_claimed", 409)
    _claimed(session, conversation, actor, now)
    return conversation


def _may_manage(actor: StaffActor, conversation: Conversation) -> bool:
    return conversation.advisor_id == actor.staff_id or actor.has_role(*MANAGER_ROLES)


def transfer_targets(session: Session, actor: StaffActor, conversation: Conversation) -> list[Staff]:
    """Whom `transfer` accepts for this conversation: active advisors of its store other than
    the assignee; asked by those who may transfer it (an advisor's own scope shows no colleagues)."""
    if not _may_manage(actor, conversation):
        raise AppError("consult.not_assignee", 403)
    stmt = (
        select(Staff)
        .join(StaffRole, StaffRole.staff_id == Staff.id)
        .where(
            Staff.org_unit_id == conversation.store_id,
            Staff.status == StaffStatus.ACTIVE,
            StaffRole.role.in_(sorted(ADVISOR_ROLES)),
        )
        .order_by(Staff.id)
    )
    if conversation.advisor_id is not None:
        stmt = stmt.where(Staff.id != conversation.advisor_id)
    return list(session.scalars(stmt).unique())


def transfer(
    session: Session,
    actor: StaffActor,
    conversation_id: int,
    to_staff_id: int,
    note: str | None = None,
    now: datetime | None = None,
) -> Conversation:
    """Hand the conversation to another active advisor of its store (the assignee or a manager).
    A running wait keeps its clock: the owner is still waiting."""
    now = now or utcnow()
    conversation = _locked_for_staff(session, actor, conversation_id)
    if not _may_manage(actor, conversation):
        raise AppError("consult.not_assignee", 403)
    if conversation.status != ConversationStatus.OPEN:
        raise AppError("consult.closed", 409)
    target = session.get(Staff, to_staff_id)
    if (
        target is None
        or not lock_active(session, target.id)
        or target.org_unit_id != conversation.store_id
        or not (target.roles & ADVISOR_ROLES)
        or target.id == conversation.advisor_id
    ):
        raise AppError("consult.transfer_target_invalid", 422, errors={"json": {"advisor_id": ["not a valid target"]}})
    excerpt = f"转接：{note or conversation.last_excerpt or TOPIC_LABEL[conversation.topic]}"
    detail = _hand_to(session, conversation, target, now, excerpt, note=note)
    write_audit(session, actor, "consult.transferred", "consult_conversation", conversation.id, detail)
    session.flush()
    return conversation


def _hand_to(
    session: Session,
    conversation: Conversation,
    target: Staff | None,
    now: datetime,
    excerpt: str,
    **extra: Any,
) -> dict[str, Any]:
    """Give the conversation to `target` (None: back to the store's queue): its
    consult_transferred touchpoint (numbered by the transfer; `extra` in its payload), and
    whoever should answer told. Returns the touchpoint's payload."""
    previous = conversation.advisor_id
    conversation.advisor_id = target.id if target is not None else None
    conversation.claimed_at = now if target is not None else None
    conversation.transfer_count += 1
    detail = {"conversation_id": conversation.id, "from_staff_id": previous, "to_staff_id": conversation.advisor_id}
    detail |= extra
    record(
        session,
        customer_id=conversation.customer_id,
        kind=Kind.CONSULT_TRANSFERRED,
        channel=Channel.SYSTEM,
        source=SOURCE,
        source_ref=f"consult:{conversation.id}:transfer:{conversation.transfer_count}",
        occurred_at=now,
        advisor_id=conversation.advisor_id,
        store_id=conversation.store_id,
        payload=detail,
    )
    customer = session.get(Customer, conversation.customer_id)
    key = f"{conversation.id}:t{conversation.transfer_count}"
    _notify_staff(session, conversation, customer, key=key, excerpt=excerpt)
    return detail


def move_open_conversations(
    session: Session,
    from_staff: Staff | None,
    to_staff: Staff | None,
    now: datetime,
    customer_ids: list[int] | None,
    roles: set[str] | None,
) -> int:
    """`backend.org.open_work`'s mover: the open conversations `from_staff` holds go to
    `to_staff` when they may take them (active, of the conversation's store, holding the topic's
    role — any advisor role for "other"), else back to the store's queue, where the topic's
    advisors are told to claim them. With `roles`, only topics of those roles move ("other"
    goes with any)."""
    stmt = select(Conversation.id).where(
        held_by(Conversation.advisor_id, from_staff), Conversation.status == ConversationStatus.OPEN
    )
    if customer_ids is not None:
        stmt = stmt.where(Conversation.customer_id.in_(customer_ids))
    moved = 0
    for conversation_id in session.scalars(stmt.order_by(Conversation.id)).all():
        try:
            conversation = _locked(
                session,
                Conversation.id == conversation_id,
                held_by(Conversation.advisor_id, from_staff),
                Conversation.status == ConversationStatus.OPEN,
            )
        except AppError:  # closed or moved meanwhile
            continue
        role = TOPIC_ROLE[conversation.topic]
        # With `roles`, the topics of those roles move, and "other" with any of them.
        if roles is not None and (role not in roles if role else not roles):
            continue
        allowed = {role} if role else set(ADVISOR_ROLES)
        target = to_staff if may_take(to_staff, conversation.store_id, allowed) else None
        if target is None and (from_staff is None or _may_hold(from_staff, conversation)):
            continue  # still theirs to hold (handed to someone who cannot take it, or not moved)
        _hand_to(
            session,
            conversation,
            target,
            now,
            f"顾问变更：{conversation.last_excerpt or TOPIC_LABEL[conversation.topic]}",
            reason="handover" if to_staff is not None else "departure",
        )
        moved += 1
    session.flush()
    return moved


register_open_work("consultations", move_open_conversations)


def _close(session: Session, conversation: Conversation, by: str, staff_id: int | None, now: datetime) -> Conversation:
    if conversation.status == ConversationStatus.CLOSED:
        raise AppError("consult.closed", 409)
    conversation.status = ConversationStatus.CLOSED
    conversation.closed_at = now
    conversation.closed_by = by
    conversation.closed_by_staff_id = staff_id
    conversation.resolution_seconds = max(int((now - conversation.created_at).total_seconds()), 0)
    conversation.resolution_business_seconds = business_seconds_for(
        conversation.created_at, now, intervals_for_store(session, conversation.store_id)
    )
    conversation.awaiting_since = None
    conversation.due_at = None
    conversation.overdue_alerted_at = None
    record(
        session,
        customer_id=conversation.customer_id,
        kind=Kind.CONSULT_CLOSED,
        channel=Channel.MINIPROGRAM if by == "owner" else Channel.SYSTEM,
        source=SOURCE,
        source_ref=f"consult:{conversation.id}:closed:{conversation.reopened_count}",
        occurred_at=now,
        advisor_id=conversation.advisor_id,
        store_id=conversation.store_id,
        payload={
            "conversation_id": conversation.id,
            "closed_by": by,
            "resolution_seconds": conversation.resolution_seconds,
            "resolution_business_seconds": conversation.resolution_business_seconds,
        },
    )
    session.flush()
    return conversation


def _reopen(session: Session, conversation: Conversation, by: str, now: datetime) -> Conversation:
    if conversation.status != ConversationStatus.CLOSED:
        raise AppError("consult.not_closed", 409)
    conversation.status = ConversationStatus.OPEN
    conversation.closed_at = None
    conversation.reopened_count += 1
    record(
        session,
        customer_id=conversation.customer_id,
        kind=Kind.CONSULT_REOPENED,
        channel=Channel.MINIPROGRAM if by == "owner" else Channel.SYSTEM,
        source=SOURCE,
        source_ref=f"consult:{conversation.id}:reopened:{conversation.reopened_count}",
        occurred_at=now,
        advisor_id=conversation.advisor_id,
        store_id=conversation.store_id,
        payload={"conversation_id": conversation.id, "reopened_by": by},
    )
    if conversation.advisor_id is not None and not _may_keep(session, conversation, conversation.advisor_id):
        # Closed while its advisor was here; they have left (or moved) since, and the departure
        # moved only what was open: it goes back to the store's queue, and the topic's advisors
        # are told, instead of waiting for someone who will never answer.
        _hand_to(
            session,
            conversation,
            None,
            now,
            f"顾问变更：{conversation.last_excerpt or TOPIC_LABEL[conversation.topic]}",
            reason="departure",
        )
    session.flush()
    return conversation


def _may_hold(staff: Staff | None, conversation: Conversation) -> bool:
    """Whether someone may keep a conversation they hold: active, of its store, holding its
    topic's role (any advisor role for "other") — or the store's manager, who may claim any."""
    role = TOPIC_ROLE[conversation.topic]
    allowed = {role} if role else set(ADVISOR_ROLES)
    return may_take(staff, conversation.store_id, allowed | {Role.STORE_MANAGER.value})


def _may_keep(session: Session, conversation: Conversation, staff_id: int) -> bool:
    """`_may_hold`, with their status read under a shared lock (`lock_active`)."""
    return _may_hold(session.get(Staff, staff_id), conversation) and lock_active(session, staff_id)


def owner_close(session: Session, member: MemberActor, conversation_id: int) -> Conversation:
    conversation = owner_conversation(session, member.customer_id, conversation_id, lock=True)
    return _close(session, conversation, "owner", None, utcnow())


def owner_reopen(session: Session, member: MemberActor, conversation_id: int) -> Conversation:
    conversation = owner_conversation(session, member.customer_id, conversation_id, lock=True)
    return _reopen(session, conversation, "owner", utcnow())


def staff_close(session: Session, actor: StaffActor, conversation_id: int) -> Conversation:
    conversation = _locked_for_staff(session, actor, conversation_id)
    if conversation.advisor_id is not None and not _may_manage(actor, conversation):
        raise AppError("consult.not_assignee", 403)
    return _close(session, conversation, "staff", actor.staff_id, utcnow())


def staff_reopen(session: Session, actor: StaffActor, conversation_id: int) -> Conversation:
    conversation = _locked_for_staff(session, actor, conversation_id)
    if conversation.advisor_id is not None and not _may_manage(actor, conversation):
        raise AppError("consult.not_assignee", 403)
    return _reopen(session, conversation, "staff", utcnow())


def staff_locker(session: Session, actor: StaffActor) -> Any:
    return lambda conversation_id: _locked_for_staff(session, actor, conversation_id)


def owner_locker(session: Session, member: MemberActor) -> Any:
    return lambda conversation_id: owner_conversation(session, member.customer_id, conversation_id, lock=True)


# ---------------------------------------------------------------------------------------------
# The staff inbox

BOXES = ("mine", "unclaimed", "overdue", "closed")


def inbox(session: Session, actor: StaffActor, box: str, now: datetime | None = None, limit: int = 50) -> list[Any]:
    """mine: open and assigned to me; unclaimed: open in my store's queue (my stores' for
    managers); overdue: open, an owner waiting past the SLA deadline; closed: recently closed."""
    now = now or utcnow()
    stmt = (
        select(Conversation, Customer.name)
        .join(Customer, Customer.id == Conversation.customer_id)
        .where(_conversation_rule(actor))
    )
    is_open = Conversation.status == ConversationStatus.OPEN
    if box == "mine":
        stmt = stmt.where(is_open, Conversation.advisor_id == actor.staff_id).order_by(
            Conversation.last_message_at.desc(), Conversation.id.desc()
        )
    elif box == "unclaimed":
        stmt = stmt.where(is_open, Conversation.advisor_id.is_(None)).order_by(Conversation.id)
    elif box == "overdue":
        stmt = stmt.where(is_open, Conversation.due_at <= now).order_by(Conversation.due_at, Conversation.id)
    else:
        stmt = stmt.where(Conversation.status == ConversationStatus.CLOSED).order_by(Conversation.closed_at.desc())
    return list(session.execute(stmt.limit(min(limit, PAGE_MAX))).all())


def customer_conversations(
    session: Session, actor: StaffActor, customer_id: int, limit: int = 50
) -> list[Conversation]:
    stmt = select(Conversation).where(Conversation.customer_id == customer_id, _conversation_rule(actor))
    return list(session.scalars(stmt.order_by(Conversation.id.desc()).limit(min(limit, PAGE_MAX))))


def unread_counts(session: Session, conversations: list[Conversation], side: Sender) -> dict[int, int]:
    """Messages from the other side after this side's read mark, for a page of conversations
    (one grouped query)."""
    if not conversations:
        return {}
    other = Sender.STAFF if side == Sender.OWNER else Sender.OWNER
    mark = Conversation.owner_read_message_id if side == Sender.OWNER else Conversation.staff_read_message_id
    rows = session.execute(
        select(Message.conversation_id, func.count())
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Message.conversation_id.in_([c.id for c in conversations]),
            Message.sender == other,
            Message.id > mark,
        )
        .group_by(Message.conversation_id)
    ).all()
    return {conversation_id: count for conversation_id, count in rows}


# ---------------------------------------------------------------------------------------------
# Notifications (through the outbox)


def _store_advisors(session: Session, store_id: int, topic: Topic) -> list[Staff]:
    role = TOPIC_ROLE[topic]
    roles = [role] if role else sorted(ADVISOR_ROLES)
    return list(
        session.scalars(
            select(Staff)
            .join(StaffRole, StaffRole.staff_id == Staff.id)
            .where(Staff.org_unit_id == store_id, Staff.status == StaffStatus.ACTIVE, StaffRole.role.in_(roles))
            .distinct()
            .order_by(Staff.id)
        )
    )


def _answerers(session: Session, conversation: Conversation) -> list[Staff]:
    """Who should answer: the assignee while active; else (queued, or an assignee who left and
    whose work was not moved yet) the store's advisors of the topic, so an owner's message
    never reaches nobody."""
    if conversation.advisor_id is not None:
        advisor = session.get(Staff, conversation.advisor_id)
        if advisor is not None and advisor.status == StaffStatus.ACTIVE:
            return [advisor]
    # Nobody of the topic left at the store (its only insurance advisor resigned): its managers.
    return _store_advisors(session, conversation.store_id, conversation.topic) or managers_of_store(
        session, conversation.store_id
    )


def _notify_staff(
    session: Session,
    conversation: Conversation,
    customer: Customer | None,
    *,
    key: str,
    message: Message | None = None,
    excerpt: str | None = None,
) -> None:
    """WeCom app message to whoever should answer (`_answerers`)."""
    from backend.wecom.notify import Card, NotifyKind, notify_staff, page_link

    recipients = _answerers(session, conversation)
    text = excerpt if excerpt is not None else (_excerpt(message) if message else "")
    name = (customer.name if customer else None) or "车主"
    label = TOPIC_LABEL[conversation.topic]
    card = Card("新咨询", f"客户「{name}」{label}：{text[:120]}", page_link(f"/workbench/consult/{conversation.id}"))
    # One message per (wait or transfer, advisor): the key names the event, the link the thread.
    notify_staff(session, NotifyKind.NEW_CONSULTATION, f"consult:{key}", recipients, card=card)


def _notify_owner(
    session: Session, conversation: Conversation, message: Message, response: Response, staff: StaffActor
) -> None:
    from backend.notices.service import send_subscribe, thing

    advisor = session.get(Staff, staff.staff_id)
    local = message.created_at.astimezone(SHANGHAI)
    send_subscribe(
        session,
        customer_id=conversation.customer_id,
        template_setting=REPLIED_TEMPLATE,
        dedup_key=f"consult:response:{response.id}",
        data={
            "thing1": {"value": thing(TOPIC_LABEL[conversation.topic])},
            "thing2": {"value": thing(_excerpt(message) or "顾问已回复")},
            "thing3": {"value": thing(advisor.name if advisor else "顾问")},
            "time4": {"value": local.strftime("%Y-%m-%d %H:%M")},
        },
        page=f"pages/consult/detail?id={conversation.id}",
        store_id=conversation.store_id,
        advisor_id=staff.staff_id,
    )


# ---------------------------------------------------------------------------------------------
# Overdue alerts (a periodic job)

OVERDUE_BATCH = 200


def alert_overdue(session: Session, now: datetime | None = None) -> int:
    """Once per overdue wait: a WeCom app message to whoever should have answered (the assignee,
    or the store's advisors of the topic for a queued one) and the store's managers. Each
    conversation is taken by a conditional update, so overlapping runs alert once."""
    from backend.wecom.notify import Card, NotifyKind, notify_staff, page_link

    now = now or utcnow()
    due = session.scalars(
        select(Conversation.id)
        .where(
            Conversation.status == ConversationStatus.OPEN,
            Conversation.due_at <= now,
            Conversation.overdue_alerted_at.is_(None),
        )
        .order_by(Conversation.due_at)
        .limit(OVERDUE_BATCH)
    ).all()
    alerted = 0
    for conversation_id in due:
        taken = session.execute(
            update(Conversation)
            .where(
                Conversation.id == conversation_id,
                Conversation.status == ConversationStatus.OPEN,
                Conversation.due_at <= now,
                Conversation.overdue_alerted_at.is_(None),
            )
            .values(overdue_alerted_at=now)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:
            continue
        conversation = session.get(Conversation, conversation_id, populate_existing=True)
        assert conversation is not None and conversation.awaiting_since is not None
        customer = session.get(Customer, conversation.customer_id)
        answerer = _answerers(session, conversation)
        managers = managers_of_store(session, conversation.store_id)
        waited = int((now - conversation.awaiting_since).total_seconds() // 60)
        name = (customer.name if customer else None) or "车主"
        card = Card(
            "咨询超时未回复",
            f"客户「{name}」的{TOPIC_LABEL[conversation.topic]}已等待 {waited} 分钟：{conversation.last_excerpt or ''}",
            page_link(f"/workbench/consult/{conversation.id}"),
        )
        key = f"consult:{conversation.id}:overdue:{int(conversation.awaiting_since.timestamp())}"
        notify_staff(session, NotifyKind.NEW_CONSULTATION, key, [*answerer, *managers], card=card)
        alerted += 1
    session.flush()
    return alerted
