"""Welcome messages: the channel's template, rendered and sent with the event's WelcomeCode.

WeCom accepts a WelcomeCode once and only for 20 seconds, so this runs as its own job on the
high queue as soon as the event is stored (not behind the event's processing). 41051 means the
code was used elsewhere or the chat started: recorded, never retried.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from backend.org.models import OrgUnit, Staff
from backend.platform.db import DuplicateKey, unique_savepoint, utcnow
from backend.platform.ports import UpstreamError
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import record
from backend.wecom import service as svc
from backend.wecom.events import parse_event
from backend.wecom.models import WeComRawEvent, WelcomeMessage, WelcomeTemplate

ALREADY_SENT = 41051
VARIABLES = ("customer_name", "advisor_name", "store_name")


def render(text: str, values: dict[str, str]) -> str:
    """Only the known {variables} are replaced; any other brace is left as written."""
    for name in VARIABLES:
        text = text.replace("{" + name + "}", values.get(name) or "")
    return text


def send_welcome(session: Session, raw_event_id: int) -> str:
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
        _remember(session, raw, None, None, "no_template", None, None)
        return "no_template"
    gateway = svc.gateway_for(raw.corp_id, raw.agent_id)
    try:
        detail = svc.fetch_contact(gateway, external_userid)
    except UpstreamError:
        # The code dies in 20 s: a welcome without the customer's name beats none (a retry
        # with backoff would usually come too late).
        detail = None
    customer = svc.ensure_customer(session, external_userid, detail)
    staff = svc.staff_by_userid(session, raw.corp_id, userid)
    store = session.get(OrgUnit, staff.org_unit_id) if isinstance(staff, Staff) else None
    values = {
        "customer_name": customer.name or "",
        "advisor_name": staff.name if staff else "",
        "store_name": store.name if store else "",
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
            _remember(session, raw, template.id, customer.id, "already_sent", ALREADY_SENT, payload)
            return "already_sent"
        raise
    latency = int((utcnow() - raw.received_at).total_seconds() * 1000)
    if _remember(session, raw, template.id, customer.id, "sent", None, payload, latency):
        advisor_id = staff.id if staff else None
        record(
            session,
            customer_id=customer.id,
            kind=Kind.WELCOME_SENT,
            channel=Channel.WECOM,
            source=svc.SOURCE,
            source_ref=f"wecom:ev{raw.id}:welcome_sent",
            occurred_at=utcnow(),
            advisor_id=advisor_id,
            store_id=store.id if store else None,
            payload={"template_id": template.id, "userid": userid},
        )
    return "sent"


def _remember(
    session: Session,
    raw: WeComRawEvent,
    template_id: int | None,
    customer_id: int | None,
    status: str,
    errcode: int | None,
    payload: dict[str, Any] | None,
    latency_ms: int | None = None,
) -> bool:
    row = WelcomeMessage(
        raw_event_id=raw.id,
        template_id=template_id,
        customer_id=customer_id,
        status=status,
        errcode=errcode,
        payload={k: v for k, v in (payload or {}).items() if k != "welcome_code"} or None,
        latency_ms=latency_ms,
    )
    try:
        with unique_savepoint(session):
            session.add(row)
    except DuplicateKey:
        return False
    return True
