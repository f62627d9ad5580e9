"""Welcome messages: the channel's template, rendered and sent with the event's WelcomeCode.

WeCom accepts a WelcomeCode once and only for 20 seconds, so this runs as its own job on the
high queue as soon as the event is stored (not behind the event's processing). 41051 means the
code was used elsewhere or the chat started: recorded, never retried.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.customers.models import IdentityKind
from backend.customers.service import find_by_identity
from backend.org.models import OrgUnit, Staff
from backend.platform.db import DuplicateKey, unique_savepoint, utcnow
from backend.platform.ports import UpstreamError
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import record
from backend.wecom import service as svc
from backend.wecom.events import parse_event
from backend.wecom.models import RawEventStatus, WeComRawEvent, WelcomeMessage, WelcomeTemplate

ALREADY_SENT = 41051
VARIABLES = ("customer_name", "advisor_name", "store_name")


def render(text: str, values: dict[str, str]) -> str:
    """Only the known {variables} are replaced; any other brace is left as written."""
    for name in VARIABLES:
        text = text.replace("{" + name + "}", values.get(name) or "")
    return text


def send_welcome(session: Session, raw_event_id: int) -> str:
    """Send the welcome, lean: the code dies 20 s after the callback and a burst queues every
    add's welcome at once, so this job does only what the message needs (template, advisor,
    the contact's name) and leaves the customer link and the touchpoint to `settle`."""
    raw = session.get(WeComRawEvent, raw_event_id)
    if raw is None:
        return "skipped"
    fields = parse_event(raw.xml)
    code = fields.get("WelcomeCode")
    userid = str(fields.get("UserID") or "")
    external_userid = str(fields.get("ExternalUserID") or "")
    channel = svc.channel_by_state(session, raw.corp_id, fields.get("State"))
    template = (
        session.get(WelcomeTemplate, channel.welcome_template_id) if channel and channel.welcome_template_id else None
    )
    if template is None or not code:
        _remember(session, raw, None, "no_template", None, None)
        return "no_template"
    gateway = svc.gateway_for(raw.corp_id, raw.agent_id)
    try:
        detail = svc.fetch_contact(gateway, external_userid)
    except UpstreamError:
        # A welcome without the customer's name beats none (a retry with backoff would usually
        # come too late).
        detail = None
    # Names only: the Staff entity loads its roles and scopes, which a message does not need.
    names = session.execute(
        select(Staff.name, OrgUnit.name)
        .outerjoin(OrgUnit, OrgUnit.id == Staff.org_unit_id)
        .where(Staff.corp_id == raw.corp_id, Staff.wecom_userid == userid)
    ).first()
    values = {
        "customer_name": ((detail or {}).get("external_contact") or {}).get("name") or "",
        "advisor_name": (names[0] if names else "") or "",
        "store_name": (names[1] if names else "") or "",
    }
    payload: dict[str, Any] = {"welcome_code": code}
    if template.text:
        payload["text"] = {"content": render(template.text, values)}
    if template.attachments:
        payload["attachments"] = template.attachments
    try:
        gateway.post("externalcontact/send_welcome_msg", payload)
    except UpstreamError as exc:
        if exc.reason == "rejected" and exc.errcode == ALREADY_SENT:
            _remember(session, raw, template.id, "already_sent", ALREADY_SENT, payload)
            return "already_sent"
        raise
    latency = int((utcnow() - raw.received_at).total_seconds() * 1000)
    # The event's processing may be running now. Both take the raw event's row lock before
    # they look at each other's work, so exactly one of them settles the welcome: this job if
    # the event was processed first, the processing if this row was committed first.
    session.execute(select(WeComRawEvent.id).where(WeComRawEvent.id == raw.id).with_for_update())
    session.refresh(raw, ["status"])
    row = _remember(session, raw, template.id, "sent", None, payload, latency)
    if row is not None and raw.status == RawEventStatus.PROCESSED:
        settle(session, raw, row)
    return "sent"


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


def _remember(
    session: Session,
    raw: WeComRawEvent,
    template_id: int | None,
    status: str,
    errcode: int | None,
    payload: dict[str, Any] | None,
    latency_ms: int | None = None,
) -> WelcomeMessage | None:
    """The welcome's outcome, once per event; None when a row was already there."""
    row = WelcomeMessage(
        raw_event_id=raw.id,
        template_id=template_id,
        status=status,
        errcode=errcode,
        payload={k: v for k, v in (payload or {}).items() if k != "welcome_code"} or None,
        latency_ms=latency_ms,
        created_at=utcnow(),
    )
    try:
        with unique_savepoint(session):
            session.add(row)
    except DuplicateKey:
        return None
    return row
