"""Demo consultations at the demo store: some answered, some unclaimed in the queue, some
overdue (an owner waiting past the SLA), one closed — so the owner app and every inbox box
have something to show.

Written as rows (no notifications are sent: the seed touches only our database), with the same
business-time arithmetic as live traffic, and found again by the first message's client id,
so running the seed twice creates nothing new. Owners are the demo owners of the demo store;
each conversation goes to the owner's assigned advisor for its topic when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.consult.business_time import business_seconds_for, deadline_for
from backend.consult.models import (
    TOPIC_ROLE,
    Conversation,
    ConversationStatus,
    Message,
    MessageKind,
    Response,
    ResponseKind,
    Sender,
    Topic,
)
from backend.consult.service import intervals_for_store, sla_minutes
from backend.customers.models import Customer, CustomerAdvisor, CustomerIdentity, IdentityKind
from backend.org.models import Staff, StaffRole
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import record

CLIENT_PREFIX = "demo-consult-"


@dataclass(frozen=True)
class _Scenario:
    key: str
    topic: Topic
    owner_says: str
    advisor_says: str | None  # None: not answered yet
    started_ago: timedelta
    answer_after: timedelta = timedelta(minutes=4)
    queue: bool = False  # leave it unclaimed even if the owner has an advisor for the topic
    closed: bool = False


SCENARIOS = (
    _Scenario(
        "answered",
        Topic.SERVICE,
        "下周想做个保养，大概多少钱？",
        "常规保养 680 元，周二上午有空位。",
        timedelta(hours=3),
    ),
    _Scenario(
        "answered-slow",
        Topic.NEW_CAR,
        "新款有现车吗？",
        "有的，欢迎周末来试驾。",
        timedelta(days=1),
        timedelta(hours=5),
    ),
    _Scenario("unclaimed", Topic.OTHER, "请问周日营业吗？", None, timedelta(minutes=3), queue=True),
    _Scenario(
        "unclaimed-overdue", Topic.INSURANCE, "车险快到期了，续保有优惠吗？", None, timedelta(days=4), queue=True
    ),
    _Scenario("overdue", Topic.NEW_CAR, "置换补贴还有吗？", None, timedelta(days=4)),
    _Scenario(
        "closed", Topic.FINANCE, "贷款首付最低多少？", "首付最低 20%，可分 36 期。", timedelta(days=5), closed=True
    ),
)


def _owners(session: Session, store_id: int, openids: list[str]) -> list[int]:
    return list(
        session.scalars(
            select(Customer.id)
            .join(CustomerIdentity, CustomerIdentity.customer_id == Customer.id)
            .where(
                CustomerIdentity.kind == IdentityKind.OPENID,
                CustomerIdentity.value.in_(openids),
                Customer.home_store_id == store_id,
                Customer.merged_into_id.is_(None),
            )
            .order_by(Customer.id)
        )
    )


def _advisor(session: Session, customer_id: int, store_id: int, topic: Topic, answered: bool) -> int | None:
    """The owner's advisor for the topic; for a conversation that was answered without one, an
    advisor of the store with the topic's role (who claimed it from the queue)."""
    role = TOPIC_ROLE[topic]
    if role is None:
        return None
    mine = session.scalar(
        select(CustomerAdvisor.staff_id).where(CustomerAdvisor.customer_id == customer_id, CustomerAdvisor.role == role)
    )
    if mine is not None or not answered:
        return mine
    return session.scalar(
        select(Staff.id)
        .join(StaffRole, StaffRole.staff_id == Staff.id)
        .where(Staff.org_unit_id == store_id, StaffRole.role == role)
        .order_by(Staff.id)
        .limit(1)
    )


def seed_consult(session: Session, store_id: int | None, openids: list[str], now: datetime) -> str:
    if store_id is None:
        return "consultations: no demo store"
    if session.scalar(select(Message.id).where(Message.client_id.like(f"{CLIENT_PREFIX}%")).limit(1)) is not None:
        return "consultations: already there"
    owners = _owners(session, store_id, openids)
    if not owners:
        return "consultations: no demo owners at the demo store"
    intervals = intervals_for_store(session, store_id)
    sla = sla_minutes(session, store_id) * 60
    created = 0
    for n, scenario in enumerate(SCENARIOS):
        customer_id = owners[n % len(owners)]
        answered = scenario.advisor_says is not None
        advisor_id = None if scenario.queue else _advisor(session, customer_id, store_id, scenario.topic, answered)
        start = now - scenario.started_ago
        conversation = Conversation(
            customer_id=customer_id,
            store_id=store_id,
            topic=scenario.topic,
            advisor_id=advisor_id,
            status=ConversationStatus.OPEN,
            claimed_at=start if advisor_id else None,
            created_at=start,
            first_message_at=start,
            last_message_at=start,
            last_excerpt=scenario.owner_says[:60],
        )
        session.add(conversation)
        session.flush()
        asked = Message(
            conversation_id=conversation.id,
            sender=Sender.OWNER,
            kind=MessageKind.TEXT,
            text=scenario.owner_says,
            client_id=f"{CLIENT_PREFIX}{scenario.key}",
            created_at=start,
        )
        session.add(asked)
        session.flush()
        conversation.owner_read_message_id = asked.id
        messages = [asked]
        if scenario.advisor_says and advisor_id:
            answered_at = start + scenario.answer_after
            answer = Message(
                conversation_id=conversation.id,
                sender=Sender.STAFF,
                staff_id=advisor_id,
                kind=MessageKind.TEXT,
                text=scenario.advisor_says,
                created_at=answered_at,
            )
            session.add(answer)
            session.flush()
            messages.append(answer)
            business = business_seconds_for(start, answered_at, intervals)
            response = Response(
                conversation_id=conversation.id,
                message_id=answer.id,
                customer_id=customer_id,
                advisor_id=advisor_id,
                store_id=store_id,
                kind=ResponseKind.FIRST_RESPONSE,
                waiting_since=start,
                responded_at=answered_at,
                seconds=int((answered_at - start).total_seconds()),
                business_seconds=business,
                sla_seconds=sla,
                within_sla=business <= sla,
            )
            session.add(response)
            session.flush()
            record(
                session,
                customer_id=customer_id,
                kind=Kind.CONSULT_RESPONDED,
                channel=Channel.MINIPROGRAM,
                source="consult",
                source_ref=f"consult:response:{response.id}",
                occurred_at=answered_at,
                advisor_id=advisor_id,
                store_id=store_id,
                payload={"conversation_id": conversation.id, "seconds": response.seconds, "business_seconds": business},
            )
            conversation.first_response_at = answered_at
            conversation.first_response_seconds = int((answered_at - start).total_seconds())
            conversation.first_response_business_seconds = business
            conversation.response_count = 1
            conversation.staff_read_message_id = answer.id
            conversation.last_message_at = answered_at
            conversation.last_excerpt = scenario.advisor_says[:60]
        else:
            conversation.awaiting_since = start
            conversation.due_at = deadline_for(start, sla, intervals)
        if scenario.closed:
            closed_at = conversation.last_message_at + timedelta(minutes=30)
            conversation.status = ConversationStatus.CLOSED
            conversation.awaiting_since = conversation.due_at = None
            conversation.closed_at = closed_at
            conversation.closed_by = "owner"
            conversation.resolution_seconds = int((closed_at - start).total_seconds())
            conversation.resolution_business_seconds = business_seconds_for(start, closed_at, intervals)
        for message in messages:
            record(
                session,
                customer_id=customer_id,
                kind=Kind.CONSULT_MESSAGE,
                channel=Channel.MINIPROGRAM,
                source="consult",
                source_ref=f"consult:msg:{message.id}",
                occurred_at=message.created_at,
                advisor_id=message.staff_id or advisor_id,
                store_id=store_id,
                payload={"conversation_id": conversation.id, "message_id": message.id, "sender": message.sender.value},
            )
        created += 1
    session.flush()
    return f"consultations: {created} at the demo store"
