"""Welcome messages: the channel's template, rendered and sent with the event's WelcomeCode.

WeCom accepts a WelcomeCode once and only for 20 seconds, and a burst of adds brings many at
once: a worker's intake pump sends the welcomes of everything it admitted together, as one
batch (`send_welcomes`: the templates, names and outcomes read and written once for all, the
WeCom calls side by side), right after the admission. The job itself (`send_welcome`, the
same code for one event) is the fallback the outbox hands to RQ. 41051 means the code was
used elsewhere or the chat started: recorded, never retried.
"""

from __future__ import annotations

import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from backend.customers.models import IdentityKind
from backend.customers.service import find_by_identity
from backend.org.models import OrgUnit, Staff
from backend.platform.db import db, utcnow
from backend.platform.jobs import OutboxJob
from backend.platform.ports import UpstreamError
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import record
from backend.wecom import media
from backend.wecom import service as svc
from backend.wecom.events import WELCOME_JOB, parse_event
from backend.wecom.models import RawEventStatus, WeComChannel, WeComRawEvent, WelcomeMessage, WelcomeTemplate

log = logging.getLogger("dealerloop.wecom.welcome")

ALREADY_SENT = 41051
INVALID_MEDIA = 40007
# A WelcomeCode is good for 20 s after its callback. A send after that could only be refused
# (41051, which would read as "sent by someone else"): the welcome is recorded as `expired`
# (not tried again) or `failed` (its last try's error), and the job ends.
CODE_LIFETIME = timedelta(seconds=20)
VARIABLES = ("customer_name", "advisor_name", "store_name")
SEND_THREADS = 8  # a batch's WeCom calls in flight at once (each mostly waits on WeCom)


TEXT_BYTES = 4000  # WeCom refuses a longer text, and with it the whole welcome


_VARIABLE = re.compile(r"\{(" + "|".join(VARIABLES) + r")\}")


def render(text: str, values: dict[str, str]) -> str:
    """Only the known {variables} are replaced; any other brace is left as written. The result
    is cut to WeCom's 4,000 bytes (names can make a template that fits grow past it)."""
    # One pass: a value put in is never scanned again, since a WeChat nickname is free text and
    # a customer called "{advisor_name}" is greeted by that name, not by the advisor's.
    text = _VARIABLE.sub(lambda m: values.get(m.group(1)) or "", text)
    return text.encode()[:TEXT_BYTES].decode(errors="ignore")


@dataclass
class _Welcome:
    """One event's welcome: what the message needs, then what came of it."""

    raw: WeComRawEvent
    code: str
    userid: str
    external_userid: str
    state: str
    template: WelcomeTemplate | None = None
    gateway: Any = None  # the event's WeCom app, chosen before the send threads (app context)
    attachments: list = field(default_factory=list)  # the template's, with fresh media ids
    media_refused: list[int] = field(default_factory=list)  # materials whose ids WeCom refused (40007)
    advisor_name: str = ""
    store_name: str = ""
    status: str = "no_template"
    errcode: int | None = None
    payload: dict[str, Any] | None = None
    latency_ms: int | None = None
    error: Exception | None = None


def send_welcome(session: Session, raw_event_id: int) -> None:
    """The job: one event's welcome (a failure raises, and the outbox retries it)."""
    (error,) = send_welcomes(session, [raw_event_id])
    if error is not None:
        raise error


def send_welcomes(session: Session, raw_event_ids: list[int]) -> list[Exception | None]:
    """Send the welcomes of these events; returns, per event, None or the failure to retry.

    Lean, because the codes die 20 s after their callbacks: only what the messages need is
    read (templates, the advisors' and stores' names, each contact's name when the template
    uses it), the WeCom calls run side by side, and the customer link and the touchpoint are
    left to `settle`. Each event's outcome is written once, and durably as soon as WeCom has
    answered (`_save`): should the caller's transaction fail after that, the retry finds the
    welcome recorded instead of mistaking WeCom's 41051 for a send by someone else."""
    raws = {raw.id: raw for raw in session.scalars(select(WeComRawEvent).where(WeComRawEvent.id.in_(raw_event_ids)))}
    # An outcome already recorded (a batch whose transaction failed after `_save`): not sent
    # again, only settled.
    recorded = set(
        session.scalars(select(WelcomeMessage.raw_event_id).where(WelcomeMessage.raw_event_id.in_(list(raws))))
    )
    welcomes = _prepare(session, [raws[i] for i in raw_event_ids if i in raws and i not in recorded])
    pending = [w for w in welcomes if w.gateway is not None]
    if pending:
        list(_send_pool().map(_deliver, pending))
    _ours_after_all(session, welcomes)
    _save(welcomes)
    _record(session, welcomes, [raws[i] for i in recorded])
    by_id = {w.raw.id: w.error for w in welcomes}
    return [by_id.get(i) for i in raw_event_ids]


def _prepare(session: Session, raws: list[WeComRawEvent]) -> list[_Welcome]:
    """Each event's code, template and names, with one query per kind of thing for all."""
    welcomes = []
    for raw in raws:
        fields = parse_event(raw.xml)
        welcomes.append(
            _Welcome(
                raw=raw,
                code=str(fields.get("WelcomeCode") or ""),
                userid=str(fields.get("UserID") or ""),
                external_userid=str(fields.get("ExternalUserID") or ""),
                state=str(fields.get("State") or ""),
            )
        )
    states = {w.state for w in welcomes if w.state}
    channels = (
        {
            (c.corp_id, c.state): c.welcome_template_id
            for c in session.execute(
                select(WeComChannel.corp_id, WeComChannel.state, WeComChannel.welcome_template_id).where(
                    WeComChannel.state.in_(states)
                )
            )
        }
        if states
        else {}
    )
    template_ids = {t for t in channels.values() if t}
    templates = (
        {t.id: t for t in session.scalars(select(WelcomeTemplate).where(WelcomeTemplate.id.in_(template_ids)))}
        if template_ids
        else {}
    )
    userids = {w.userid for w in welcomes if w.userid}
    # Names only: the Staff entity loads its roles and scopes, which a message does not need.
    # By casefold: WeCom userids are case-insensitive (the event's spelling may not be ours).
    names = (
        {
            (corp, userid.casefold()): (advisor or "", store or "")
            for corp, userid, advisor, store in session.execute(
                select(Staff.corp_id, Staff.wecom_userid, Staff.name, OrgUnit.name)
                .outerjoin(OrgUnit, OrgUnit.id == Staff.org_unit_id)
                .where(Staff.wecom_userid.in_(userids))
            )
        }
        if userids
        else {}
    )
    for w in welcomes:
        template_id = channels.get((w.raw.corp_id, w.state))
        w.template = templates.get(template_id) if template_id else None
        if w.template is not None and w.code:
            try:
                w.gateway = svc.gateway_for(w.raw.corp_id, w.raw.agent_id)
            except LookupError as exc:  # the app was removed from the settings: retried, then dead
                w.error = exc
        w.advisor_name, w.store_name = names.get((w.raw.corp_id, (w.userid or "").casefold()), ("", ""))
    _attach_media(session, [w for w in welcomes if w.gateway is not None and w.error is None])
    return welcomes


def _attach_media(session: Session, welcomes: list[_Welcome]) -> None:
    """Each welcome's attachments with media ids of its corp, uploading the materials that have
    none fresh enough (normally the hourly refresh has). If an upload fails, the welcomes go
    out without that attachment: the code lives 20 s, a welcome without its picture beats none."""
    by_corp: dict[str, list[_Welcome]] = {}
    for w in welcomes:
        by_corp.setdefault(w.raw.corp_id, []).append(w)
    for batch in by_corp.values():
        # Each has a template: a gateway is chosen only for a welcome with one (`_prepare`).
        wanted = {m for w in batch for m, _ in media.references(w.template.attachments)}
        ids = media.media_ids(session, batch[0].gateway, wanted)
        for w in batch:
            w.attachments = media.with_media(w.template.attachments, ids)


def _code_dead(w: _Welcome) -> bool:
    return utcnow() >= w.raw.received_at + CODE_LIFETIME


def _deliver(w: _Welcome) -> None:
    """The WeCom calls of one welcome (no database here: this runs in the send threads)."""
    assert w.template is not None
    gateway = w.gateway
    if _code_dead(w):  # a retry that came too late (the first try failed, or waited)
        w.status = "expired"
        return
    try:
        customer_name = ""
        if "{customer_name}" in (w.template.text or ""):
            try:
                detail = svc.fetch_contact(gateway, w.external_userid)
            except UpstreamError:
                # A welcome without the customer's name beats none (a retry with backoff would
                # usually come too late).
                detail = None
            customer_name = ((detail or {}).get("external_contact") or {}).get("name") or ""
        values = {"customer_name": customer_name, "advisor_name": w.advisor_name, "store_name": w.store_name}
        payload: dict[str, Any] = {"welcome_code": w.code}
        if w.template.text:
            payload["text"] = {"content": render(w.template.text, values)}
        if w.attachments:
            payload["attachments"] = w.attachments
        w.payload = payload
        try:
            gateway.post("externalcontact/send_welcome_msg", payload)
        except UpstreamError as exc:
            if exc.reason == "rejected" and exc.errcode == ALREADY_SENT:
                w.status, w.errcode = "already_sent", ALREADY_SENT
                return
            if exc.reason == "rejected" and exc.errcode == INVALID_MEDIA and _without_media(w):
                # WeCom refused a media id (expired early, deleted): the welcome goes once more
                # without the materials, and their ids are forgotten (`_record`), so the next
                # welcome uploads them again.
                gateway.post("externalcontact/send_welcome_msg", w.payload)
            else:
                raise
        w.status = "sent"
        w.latency_ms = int((utcnow() - w.raw.received_at).total_seconds() * 1000)
    except Exception as exc:  # noqa: BLE001 - handed back to the caller, which retries the event
        if not _code_dead(w):
            w.error = exc
            return
        # No retry can succeed now: the failure is the outcome, recorded with WeCom's answer.
        w.status = "failed"
        w.errcode = exc.errcode if isinstance(exc, UpstreamError) else None
        w.payload = (w.payload or {}) | {"error": f"{type(exc).__name__}: {exc}"[:500]}
        log.warning("welcome of event %s not sent, its code has expired: %s", w.raw.id, exc)


# How the outbox records a try that WeCom did not answer in time (UpstreamError's own text).
_UNANSWERED = f"{UpstreamError.__name__}: {UpstreamError('timeout', service='wecom')}"


def _ours_after_all(session: Session, welcomes: list[_Welcome]) -> None:
    """A 41051 for a welcome whose earlier try of ours got no answer in time: WeCom took that
    try (the customer has our welcome) and refuses the code now because we used it. It is
    recorded as sent, to be settled with its touchpoint like any other; a 41051 with no such try
    before stays `already_sent` (the code was used elsewhere). Only read when a 41051 came."""
    refused = {f"{WELCOME_JOB}:{w.raw.id}": w for w in welcomes if w.status == "already_sent"}
    if not refused:
        return
    rows = session.execute(
        select(OutboxJob.dedup_key, OutboxJob.last_error).where(OutboxJob.dedup_key.in_(list(refused)))
    ).all()
    for key, last_error in rows:
        if last_error and last_error.startswith(_UNANSWERED):
            w = refused[key]
            w.status = "sent"
            w.payload = (w.payload or {}) | {"confirmed_by": "41051 after our unanswered try"}


def _without_media(w: _Welcome) -> bool:
    """Drop the attachments that carry media ids from the welcome's payload; False if it had
    none, or if nothing would be left to send."""
    assert w.payload is not None and w.template is not None
    w.media_refused = [m for m, _ in media.references(w.template.attachments)]
    kept = [a for a in w.attachments if not media.carries_media(a)]
    if len(kept) == len(w.attachments) or (not kept and "text" not in w.payload):
        return False
    w.payload = {k: v for k, v in w.payload.items() if k != "attachments"} | ({"attachments": kept} if kept else {})
    return True


def _outcome_row(w: _Welcome, at: datetime) -> dict[str, Any]:
    return {
        "raw_event_id": w.raw.id,
        "template_id": w.template.id if w.template else None,
        "status": w.status,
        "errcode": w.errcode,
        "payload": {k: v for k, v in (w.payload or {}).items() if k != "welcome_code"} or None,
        "latency_ms": w.latency_ms,
        "created_at": at,
    }


def _save(welcomes: list[_Welcome]) -> None:
    """The outcomes, committed on a connection of their own right after the sends. None is
    recorded yet (`send_welcomes` left those out) and nobody else records them meanwhile: the
    caller holds their jobs' rows. If this write fails, `_record` writes them in the caller's
    transaction instead."""
    done = [w for w in welcomes if w.error is None]
    if not done:
        return
    try:
        with db.autocommit() as conn:
            conn.execute(insert(WelcomeMessage.__table__), [_outcome_row(w, utcnow()) for w in done])
    except Exception:  # noqa: BLE001 - recorded in the caller's transaction instead
        log.warning("welcome outcomes not saved on their own; the batch's transaction records them", exc_info=True)


def _record(session: Session, welcomes: list[_Welcome], recorded: list[WeComRawEvent]) -> None:
    """Each outcome once (those `_save` could not write); a sent welcome whose event is
    processed already is settled here.

    The event's processing may be running now. Both take the raw events' row locks before
    they look at each other's work, so exactly one of them settles each welcome: this if the
    event was processed first, the processing if the welcome was recorded first. One that
    cannot be settled here is logged and left unlinked; the batch goes on."""
    done = [w for w in welcomes if w.error is None]
    for w in welcomes:
        if w.media_refused:
            media.forget(session, w.raw.corp_id, w.media_refused)
    if not done and not recorded:
        return
    events = {w.raw.id: w.raw for w in done} | {raw.id: raw for raw in recorded}
    ids = sorted(events)
    # The whole rows, by primary key: a query the (status, id) index covers would lock other
    # events' entries in that index (deadlocks with their processing).
    status = {
        raw.id: raw.status
        for raw in session.scalars(
            select(WeComRawEvent)
            .where(WeComRawEvent.id.in_(ids))
            .order_by(WeComRawEvent.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    recorded = session.scalars(select(WelcomeMessage).where(WelcomeMessage.raw_event_id.in_(ids)))
    rows = {row.raw_event_id: row for row in recorded}
    missing = [WelcomeMessage(**_outcome_row(w, utcnow())) for w in done if w.raw.id not in rows]
    if missing:
        session.add_all(missing)
        session.flush()
        rows.update({row.raw_event_id: row for row in missing})
    for raw_id, raw in events.items():
        row = rows.get(raw_id)
        if row is None or row.status != "sent" or row.customer_id is not None:
            continue
        if status.get(raw_id) != RawEventStatus.PROCESSED:
            continue
        try:
            with session.begin_nested():
                settle(session, raw, row)
        except Exception:  # noqa: BLE001 - the welcome is out and recorded; only its link is missing
            log.exception("welcome of event %s sent but not linked to its customer", raw_id)


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _send_pool() -> ThreadPoolExecutor:
    """The process's send threads (a forked child makes its own: threads do not survive a fork)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="wecom-welcome"))
    return _POOL[1]


def settle(session: Session, raw: WeComRawEvent, row: WelcomeMessage | None = None) -> None:
    """Link a sent welcome to its customer and write its `welcome_sent` touchpoint (once: the
    touchpoint is keyed by the event). Called by the welcome job when the event was processed
    before it, else by the event's processing."""
    if row is None:
        row = session.scalars(
            select(WelcomeMessage).where(WelcomeMessage.raw_event_id == raw.id, WelcomeMessage.status == "sent")
        ).one_or_none()
    if row is None or row.customer_id is not None:
        return
    fields = parse_event(raw.xml)
    customer = find_by_identity(session, IdentityKind.EXTERNAL_USERID, str(fields.get("ExternalUserID") or ""))
    if customer is None:
        return
    row.customer_id = customer.id
    userid = str(fields.get("UserID") or "")
    staff = svc.staff_by_userid(session, raw.corp_id, userid)
    record(
        session,
        customer_id=customer.id,
        kind=Kind.WELCOME_SENT,
        channel=Channel.WECOM,
        source=svc.SOURCE,
        source_ref=f"wecom:ev{raw.id}:welcome_sent",
        occurred_at=row.created_at,
        advisor_id=staff.id if staff else None,
        store_id=staff.org_unit_id if staff else None,
        payload={"template_id": row.template_id, "userid": userid},
    )
