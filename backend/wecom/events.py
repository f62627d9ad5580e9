"""Callback intake: parse a decrypted event, compute its dedup key, store it once, schedule it.

The receiver (integrations/wecom/callbacks.py) verifies and decrypts; this module only sees
plaintext XML. Storing the event and scheduling its job happen in one transaction (outbox), so
an event acknowledged to WeCom is never lost, even when Redis is down.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import xmltodict
from sqlalchemy.orm import Session

from backend.platform.db import DuplicateKey, unique_savepoint, utcnow
from backend.platform.errors import AppError
from backend.platform.jobs import enqueue
from backend.wecom.models import WeComRawEvent

PROCESS_JOB = "wecom.process_event"
WELCOME_JOB = "wecom.send_welcome"
REBALANCE_JOB = "wecom.rebalance_channel"
WELCOME_CHANGE_TYPES = ("add_external_contact", "add_half_external_contact")


def parse_event(xml: str) -> dict[str, Any]:
    """The event's elements as a flat dict of strings (entities are not expanded)."""
    try:
        doc = xmltodict.parse(xml, disable_entities=True)
    except Exception as exc:  # expat raises several types; all mean "not our XML"
        raise AppError("wecom.callback_malformed", 400) from exc
    root = doc.get("xml") if isinstance(doc, dict) else None
    if not isinstance(root, dict):
        raise AppError("wecom.callback_malformed", 400)
    return {k: v for k, v in root.items() if v is not None}


def subject_of(fields: dict[str, Any]) -> str:
    """What the event is about: the customer, the group chat or the tag."""
    for name in ("ExternalUserID", "ChatId", "Id"):
        value = fields.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def dedup_key(corp_id: str, fields: dict[str, Any]) -> str:
    # FromUserName is always "sys" for these events, so the usual (FromUserName, CreateTime)
    # key would collide across customers.
    parts = [
        corp_id,
        str(fields.get("Event", "")),
        str(fields.get("ChangeType", "")),
        str(fields.get("CreateTime", "")),
        str(fields.get("UserID", "")),
        subject_of(fields),
    ]
    if fields.get("Event") == "change_external_chat":
        # Several changes of one chat can share a second (a rename and a join): the kind of
        # update and the member-list version tell them apart.
        parts += [str(fields.get("UpdateDetail", "")), str(fields.get("CurMemVer", ""))]
    return "|".join(parts)


@dataclass(frozen=True)
class Intake:
    event: WeComRawEvent | None  # None: a redelivery of an event already stored
    duplicate: bool
    welcome_job_id: int | None = None  # the outbox row of its welcome message, if it has one


def store_event(session: Session, corp_id: str, agent_id: str, xml: str, received_at: datetime | None = None) -> Intake:
    """Store a decrypted event and schedule its processing (and its welcome message) — once.

    `received_at`: when the callback request arrived (the welcome latency is measured from it)."""
    fields = parse_event(xml)
    if not fields.get("Event") and not fields.get("MsgType"):
        raise AppError("wecom.callback_malformed", 400)
    key = dedup_key(corp_id, fields)
    try:
        create_time = int(fields.get("CreateTime") or 0)
    except ValueError as exc:
        raise AppError("wecom.callback_malformed", 400) from exc
    raw = WeComRawEvent(
        corp_id=corp_id,
        agent_id=agent_id,
        dedup_hash=hashlib.sha256(key.encode()).hexdigest(),
        dedup_key=key[:512],
        event=str(fields.get("Event") or fields.get("MsgType"))[:64],
        change_type=str(fields.get("ChangeType", ""))[:64],
        create_time=create_time,
        xml=xml,
        received_at=received_at or utcnow(),
    )
    try:
        with unique_savepoint(session):
            session.add(raw)
    except DuplicateKey:
        return Intake(None, True)
    welcome = None
    if raw.change_type in WELCOME_CHANGE_TYPES and fields.get("WelcomeCode"):
        # The welcome code lives 20 s: its own job on the high queue, enqueued first (inline it
        # runs first after commit; with RQ the high queue is served before the default one, and
        # the receiver also runs it itself once the acknowledgement is sent).
        welcome = enqueue(
            session, WELCOME_JOB, {"raw_event_id": raw.id}, dedup_key=f"{WELCOME_JOB}:{raw.id}", key_is_new=True
        )
    # The keys are made of the raw event's id, inserted just above: no job can hold them yet.
    enqueue(session, PROCESS_JOB, {"raw_event_id": raw.id}, dedup_key=f"{PROCESS_JOB}:{raw.id}:0:0", key_is_new=True)
    return Intake(raw, False, welcome.id if welcome is not None else None)
