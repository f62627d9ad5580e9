"""Callback intake: parse a decrypted event, compute its dedup key, store it once, admit it.

The receiver (integrations/wecom/callbacks.py) verifies and decrypts; this module only sees
plaintext XML. The acknowledgement waits for one autocommitted INSERT (`accept_event`): the
event is durable before WeCom hears `success`. Its jobs (welcome message, processing) are
created right after by `admit`, off the request (backend.platform.intake: a worker's pump),
so an acknowledged event is never lost and never gets its jobs twice.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any
from xml.etree import ElementTree

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from backend.platform.db import insert_row
from backend.platform.errors import AppError
from backend.platform.intake import URGENT_FALLBACK, Admission
from backend.platform.jobs import enqueue_new
from backend.wecom.models import RawEventStatus, WeComRawEvent

PROCESS_JOB = "wecom.process_event"
WELCOME_JOB = "wecom.send_welcome"
REBALANCE_JOB = "wecom.rebalance_channel"
WELCOME_CHANGE_TYPES = ("add_external_contact", "add_half_external_contact")


def parse_event(xml: str) -> dict[str, Any]:
    """The event's elements as a dict of strings: a repeated element becomes a list, one with
    children a dict (`<MemChangeList><Item>a</Item><Item>b</Item></MemChangeList>` ->
    `{"MemChangeList": {"Item": ["a", "b"]}}`); empty elements are left out.

    ElementTree's C parser: this runs twice per acknowledgement (envelope, event), and a
    pure-Python SAX handler cost a third of it. WeCom never sends a document type, so one is
    refused outright (no entity can be declared, hence none expanded), and no event nests
    deeper than MAX_DEPTH (the envelope is parsed before its signature is checked)."""
    if _declares_doctype(xml):
        raise AppError("wecom.callback_malformed", 400)
    try:
        root = ElementTree.fromstring(xml)  # noqa: S314 - no document type gets here (refused above)
    except ElementTree.ParseError as exc:
        raise AppError("wecom.callback_malformed", 400) from exc
    if root.tag != "xml":
        raise AppError("wecom.callback_malformed", 400)
    return _children(root, 1)


MAX_DEPTH = 4  # <xml><MemChangeList><Item> is the deepest WeCom sends
# What may come before the root element besides a document type: a byte order mark, blanks,
# the XML declaration (and other processing instructions), comments.
_PROLOG_ITEM = re.compile(r"\ufeff|\s+|<\?.*?\?>|<!--.*?-->", re.DOTALL)


def _declares_doctype(xml: str) -> bool:
    """A document type can only stand before the root element: the prolog is read item by item
    (a `<!DOCTYPE` inside a message's text is just text)."""
    pos = 0
    while match := _PROLOG_ITEM.match(xml, pos):
        pos = match.end()
    return xml.startswith("<!", pos)


def _children(element: ElementTree.Element, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise AppError("wecom.callback_malformed", 400)
    out: dict[str, Any] = {}
    for child in element:
        if len(child):
            value: Any = _children(child, depth + 1) or None
        else:
            text = child.text
            value = (text.strip() or None) if text else None
        if value is None:
            continue
        tag = child.tag
        if tag not in out:
            out[tag] = value
        elif isinstance(out[tag], list):
            out[tag].append(value)
        else:
            out[tag] = [out[tag], value]
    return out


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
        # Several changes of one chat can share a second (a rename and a join, two joins): the
        # kind of update, the member-list versions and the members changed tell them apart.
        parts += [
            str(fields.get("UpdateDetail", "")),
            str(fields.get("LastMemVer", "")),
            str(fields.get("CurMemVer", "")),
            str(fields.get("MemChangeList", "")),
        ]
    return "|".join(parts)


CREATE_TIME_AHEAD = 60  # seconds WeCom's clock may run ahead of ours (NTP keeps both within a few)


def accept_event(
    conn: Connection, corp_id: str, agent_id: str, xml: str, fields: dict[str, Any], received_at: datetime
) -> int:
    """Store a decrypted event (`fields` parsed from `xml`) as `accepted`: the one write that
    the acknowledgement waits for, on `conn` (an autocommit connection: `db.autocommit()`).
    A redelivery raises the unique key's IntegrityError. The caller then announces the row
    (backend.platform.intake), which creates its jobs via `admit`.

    `received_at`: when the callback request arrived (the welcome latency is measured from it)."""
    if not fields.get("Event") and not fields.get("MsgType"):
        raise AppError("wecom.callback_malformed", 400)
    key = dedup_key(corp_id, fields)
    # WeCom always sends one; an event without would order as the oldest of all (0) and lose to
    # every state it should change: it is taken as happening when it was received.
    create_time = fields.get("CreateTime") or str(int(received_at.timestamp()))
    # A string (not nested or repeated), of digits, of a length a Unix time has.
    if not isinstance(create_time, str) or not (
        create_time.isascii() and create_time.isdigit() and len(create_time) <= 12
    ):
        raise AppError("wecom.callback_malformed", 400)
    # CreateTime orders a relation's events (the newest one sets its status): one from the
    # future would outrank every real event to come, for good. No event happens after it is
    # received; a clock a little ahead is allowed for.
    create_time_s = min(int(create_time), int(received_at.timestamp()) + CREATE_TIME_AHEAD)
    return insert_row(
        conn,
        WeComRawEvent.__table__,
        dict(
            corp_id=corp_id,
            agent_id=agent_id,
            dedup_hash=hashlib.sha256(key.encode()).hexdigest(),
            dedup_key=key[:512],
            event=str(fields.get("Event") or fields.get("MsgType"))[:64],
            change_type=str(fields.get("ChangeType", ""))[:64],
            create_time=create_time_s,
            xml=xml,
            status=RawEventStatus.ACCEPTED,
            attempts=0,
            replays=0,
            received_at=received_at,
        ),
    )


def admit(session: Session, ids: list[int] | None, accepted_before: datetime | None = None) -> Admission:
    """Create the jobs of accepted events — the given ones, or every one (accepted before
    `accepted_before`, when given) — and mark them `received`. Rows another admitter holds are
    skipped, so each event gets its jobs once. The welcome jobs are the admission's urgent
    ones: the admitter runs them itself, right after the commit, then hands the processing
    jobs over (backend.platform.intake.run_admitted)."""
    stmt = select(WeComRawEvent.id, WeComRawEvent.change_type, WeComRawEvent.xml).where(
        WeComRawEvent.status == RawEventStatus.ACCEPTED
    )
    if ids is not None:
        stmt = stmt.where(WeComRawEvent.id.in_(ids))
    elif accepted_before is not None:
        stmt = stmt.where(WeComRawEvent.received_at <= accepted_before)
    rows = session.execute(stmt.order_by(WeComRawEvent.id).limit(500).with_for_update(skip_locked=True)).all()
    if not rows:
        return Admission(0)

    # Admission happens once per event (the status below, under the row lock): no job can hold
    # these keys yet. Every job is delayed by URGENT_FALLBACK: the admitter runs the welcomes
    # at once (a code lives 20 s) and then hands the processing over; the relayer does it only
    # if the admitter did not.
    welcomes = [
        (WELCOME_JOB, {"raw_event_id": row.id}, f"{WELCOME_JOB}:{row.id}")
        for row in rows
        if row.change_type in WELCOME_CHANGE_TYPES and parse_event(row.xml).get("WelcomeCode")
    ]
    processing = [(PROCESS_JOB, {"raw_event_id": row.id}, f"{PROCESS_JOB}:{row.id}:0:0") for row in rows]
    job_ids = enqueue_new(session, [*welcomes, *processing], URGENT_FALLBACK)
    urgent, deferred = job_ids[: len(welcomes)], job_ids[len(welcomes) :]
    session.execute(
        update(WeComRawEvent)
        .where(WeComRawEvent.id.in_([row.id for row in rows]))
        .values(status=RawEventStatus.RECEIVED)
        .execution_options(synchronize_session=False)
    )
    return Admission(len(rows), urgent, deferred)
