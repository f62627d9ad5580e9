"""Subscribe messages to owners (订阅消息), shared by every feature that notifies them.

WeChat lets a mini-program send an owner one message per grant: the owner accepts a template in
`wx.requestSubscribeMessage`, the app reports the accepts (`record_grants`), and each message
sent uses one up. So:

- A feature decides a notice in its own transaction with `send_subscribe(...)`: recorded once
  per `dedup_key`, sent by a job through the outbox, so nothing goes out for a rolled-back
  change and a re-run decision records nothing new.
- The job takes one counted grant with a conditional update (`remaining > 0`). Without one the
  notice is final `no_grant` and nothing is sent. WeChat answering 43101 (the owner has no
  grant after all) is final too and consumes nothing: the grant taken is given back.
- A missing template setting is recorded `no_template`; an owner without an openid (known only
  from WeCom) `no_openid`. Upstream failures (5xx, timeout) roll the job back, grant included,
  and the outbox retries it.
- A message that reached WeChat is a `notice_sent` touchpoint.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from backend.customers.models import CustomerIdentity, IdentityKind
from backend.notices.models import NoticeStatus, SubscribeGrant, SubscribeNotice
from backend.platform.db import DuplicateKey, unique_savepoint, utcnow
from backend.platform.errors import AppError, register_messages
from backend.platform.jobs import enqueue
from backend.platform.ports import UpstreamError
from backend.platform.upsert import upsert
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import record

SEND_JOB = "notices.send"
NO_GRANT_ERRCODE = 43101
# Every template a feature may use; the values are settings holding the template ids.
TEMPLATE_SETTINGS = (
    "SUBSCRIBE_TEMPLATE_BOOKING_CONFIRMED",
    "SUBSCRIBE_TEMPLATE_BOOKING_REMINDER",
    "SUBSCRIBE_TEMPLATE_BOOKING_CHANGED",
    "SUBSCRIBE_TEMPLATE_BOOKING_CANCELLED",
    "SUBSCRIBE_TEMPLATE_CONSULT_REPLIED",
    "SUBSCRIBE_TEMPLATE_EVENT_NOTICE",
    "SUBSCRIBE_TEMPLATE_COUPON_NOTICE",
    "SUBSCRIBE_TEMPLATE_LEAD_UPDATE",
    "SUBSCRIBE_TEMPLATE_POINTS_EXPIRING",
    "SUBSCRIBE_TEMPLATE_TIER_CHANGED",
)
# wx.requestSubscribeMessage answers one of these per template; only "accept" is a grant.
RESULTS = ("accept", "reject", "ban", "filter")

register_messages(
    {
        "notices.unknown_template": ("订阅消息模板不存在", "Unknown subscribe-message template"),
        "notices.no_openid": ("请在小程序中登录后再订阅", "Log in to the mini-program to subscribe"),
    },
)


def thing(text: str, limit: int = 20) -> str:
    """A `thing` value is at most 20 characters; longer text is cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def configured_templates() -> dict[str, str]:
    """Template id -> its setting, for the templates configured in this deployment."""
    return {current_app.config[name]: name for name in TEMPLATE_SETTINGS if current_app.config.get(name)}


def _openid(session: Session, customer_id: int) -> str | None:
    return session.scalar(
        select(CustomerIdentity.value).where(
            CustomerIdentity.customer_id == customer_id, CustomerIdentity.kind == IdentityKind.OPENID
        )
    )


def record_grants(session: Session, customer_id: int, results: dict[str, str]) -> dict[str, int]:
    """Count the owner's accepts (one grant each) and answer the grants left per template id."""
    known = configured_templates()
    unknown = sorted(t for t in results if t not in known)
    if unknown:
        raise AppError("notices.unknown_template", 422, errors={"results": {t: ["unknown template"] for t in unknown}})
    openid = _openid(session, customer_id)
    if openid is None:
        raise AppError("notices.no_openid", 409)
    for template_id, result in sorted(results.items()):  # sorted: a fixed lock order
        if result == "accept":
            upsert(
                session,
                SubscribeGrant,
                {"openid": openid, "template_id": template_id, "remaining": 1, "updated_at": utcnow()},
                ["openid", "template_id"],
                lambda new: [("remaining", SubscribeGrant.remaining + 1), ("updated_at", new.updated_at)],
            )
    return grants(session, customer_id)


def grants(session: Session, customer_id: int) -> dict[str, int]:
    """Grants left per configured template id (0 for those never accepted)."""
    openid = _openid(session, customer_id)
    left = dict(
        session.execute(
            select(SubscribeGrant.template_id, SubscribeGrant.remaining).where(SubscribeGrant.openid == openid)
        ).all()
    )
    return {template_id: left.get(template_id, 0) for template_id in configured_templates()}


def send_subscribe(
    session: Session,
    *,
    customer_id: int,
    template_setting: str,
    dedup_key: str,
    data: dict[str, dict[str, str]],
    page: str | None = None,
    store_id: int | None = None,
    advisor_id: int | None = None,
) -> SubscribeNotice | None:
    """Record a notice once and schedule its sending; None if this dedup_key was recorded before."""
    if template_setting not in TEMPLATE_SETTINGS:
        raise ValueError(f"unknown template setting {template_setting!r}")  # a programming error
    notice = SubscribeNotice(
        customer_id=customer_id,
        template_setting=template_setting,
        dedup_key=dedup_key,
        data=data,
        page=page,
        store_id=store_id,
        advisor_id=advisor_id,
    )
    try:
        with unique_savepoint(session):
            session.add(notice)
    except DuplicateKey:
        return None
    enqueue(session, SEND_JOB, {"notice_id": notice.id}, dedup_key=f"{SEND_JOB}:{notice.id}", key_is_new=True)
    return notice


def _take_grant(session: Session, openid: str, template_id: str, delta: int) -> bool:
    condition = [SubscribeGrant.openid == openid, SubscribeGrant.template_id == template_id]
    if delta < 0:
        condition.append(SubscribeGrant.remaining >= -delta)
    result = session.execute(
        update(SubscribeGrant).where(*condition).values(remaining=SubscribeGrant.remaining + delta, updated_at=utcnow())
    )
    return result.rowcount == 1


def deliver(session: Session, notice_id: int, now: datetime | None = None) -> str:
    """The job body: send one notice or record why not. A notice already final is skipped."""
    notice = session.scalars(
        select(SubscribeNotice).where(SubscribeNotice.id == notice_id).with_for_update()
    ).one_or_none()
    if notice is None or notice.status != NoticeStatus.PENDING:
        return "skipped"
    template_id = current_app.config.get(notice.template_setting, "")
    openid = _openid(session, notice.customer_id)
    notice.template_id = template_id or None
    if not template_id:
        notice.status = NoticeStatus.NO_TEMPLATE
    elif not openid:
        notice.status = NoticeStatus.NO_OPENID
    elif not _take_grant(session, openid, template_id, -1):
        notice.status = NoticeStatus.NO_GRANT
    else:
        gateway = current_app.extensions["dealerloop.gateways"].miniprogram
        try:
            gateway.send_subscribe_message(openid, template_id, notice.data, notice.page)
        except UpstreamError as exc:
            if exc.errcode != NO_GRANT_ERRCODE:
                raise  # 5xx, timeout, rate limit: the job rolls back (grant too) and is retried
            _take_grant(session, openid, template_id, +1)
            notice.status = NoticeStatus.NO_GRANT
            notice.errcode = exc.errcode
        else:
            notice.status = NoticeStatus.SENT
            notice.sent_at = now or utcnow()
            record(
                session,
                customer_id=notice.customer_id,
                kind=Kind.NOTICE_SENT,
                channel=Channel.MINIPROGRAM,
                source="notices",
                source_ref=f"notice:{notice.id}",
                occurred_at=notice.sent_at,
                advisor_id=notice.advisor_id,
                store_id=notice.store_id,
                payload={"template_setting": notice.template_setting, "dedup_key": notice.dedup_key},
            )
    session.flush()
    return notice.status


def member_notices(session: Session, customer_id: int, limit: int = 50) -> list[SubscribeNotice]:
    return list(
        session.scalars(
            select(SubscribeNotice)
            .where(SubscribeNotice.customer_id == customer_id)
            .order_by(SubscribeNotice.id.desc())
            .limit(limit)
        )
    )


def as_dict(notice: SubscribeNotice) -> dict[str, Any]:
    return {
        "id": notice.id,
        "template_setting": notice.template_setting,
        "status": notice.status,
        "created_at": notice.created_at,
        "sent_at": notice.sent_at,
    }
