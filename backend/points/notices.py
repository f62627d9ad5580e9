"""Notices to members about their points (expiry reminders, tier changes), sent as WeChat
subscribe messages.

A notice is recorded once (`dedup_key`) in the transaction that decided it, and its sending is a
job through the outbox. Subscribe messages need a one-time grant the owner gave in the
mini-program for that template: without one WeChat answers 43101, which is final for this notice
(`no_grant`), never retried. A notice kind without a configured template is recorded and left
`no_template`; an owner without an openid (a customer known only from WeCom) `no_openid`.
Upstream failures (5xx, timeout) are retried by the outbox.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.customers.models import CustomerIdentity, IdentityKind
from backend.platform.db import DuplicateKey, unique_savepoint, utcnow
from backend.platform.jobs import enqueue
from backend.platform.ports import UpstreamError
from backend.points.models import PointsNotice

SEND_JOB = "points.send_notice"
NO_GRANT = 43101
# Notice kind -> the setting holding its subscribe-message template id.
TEMPLATE_SETTINGS = {
    "points_expiring": "SUBSCRIBE_TEMPLATE_POINTS_EXPIRING",
    "tier_changed": "SUBSCRIBE_TEMPLATE_TIER_CHANGED",
}
PAGE = "pages/points/index"


def record_notice(
    session: Session, customer_id: int, kind: str, dedup_key: str, payload: dict[str, Any]
) -> PointsNotice | None:
    """Record a notice once and schedule its sending; None if it was recorded before."""
    notice = PointsNotice(customer_id=customer_id, kind=kind, dedup_key=dedup_key, payload=payload)
    try:
        with unique_savepoint(session):
            session.add(notice)
    except DuplicateKey:
        return None
    enqueue(session, SEND_JOB, {"notice_id": notice.id}, dedup_key=f"{SEND_JOB}:{notice.id}", key_is_new=True)
    return notice


def _clip(text: str, limit: int = 20) -> str:
    """`thing` values are at most 20 characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def message_data(notice: PointsNotice) -> dict[str, dict[str, str]]:
    p = notice.payload or {}
    if notice.kind == "points_expiring":
        return {
            "thing1": {"value": "您有积分即将过期"},
            "number2": {"value": str(p.get("points", 0))},
            "date3": {"value": str(p.get("expires_on", ""))},
            "thing4": {"value": "可在积分商城兑换礼品"},
        }
    if notice.kind == "tier_changed":
        upgraded = p.get("reason") == "upgrade"  # the cycle review may lower it
        return {
            "thing1": {"value": _clip(f"会员等级{'升级' if upgraded else '调整'}为{p.get('name', '')}")},
            "number2": {"value": str(p.get("growth", 0))},
            "thing3": {"value": "点击查看会员权益"},
        }
    raise ValueError(f"no message for notice kind {notice.kind!r}")


def send(session: Session, notice_id: int, now: datetime | None = None) -> str:
    """The job body: send one notice (or record why not). Re-running a final notice does nothing."""
    notice = session.scalars(select(PointsNotice).where(PointsNotice.id == notice_id).with_for_update()).one_or_none()
    if notice is None or notice.status != "pending":
        return "skipped"
    template_id = current_app.config.get(TEMPLATE_SETTINGS.get(notice.kind, ""), "")
    openid = session.scalar(
        select(CustomerIdentity.value).where(
            CustomerIdentity.customer_id == notice.customer_id, CustomerIdentity.kind == IdentityKind.OPENID
        )
    )
    if not template_id:
        notice.status = "no_template"
    elif not openid:
        notice.status = "no_openid"
    else:
        gateway = current_app.extensions["dealerloop.gateways"].miniprogram
        try:
            gateway.send_subscribe_message(openid, template_id, message_data(notice), PAGE)
            notice.status = "sent"
            notice.sent_at = now or utcnow()
        except UpstreamError as exc:
            if exc.errcode != NO_GRANT:
                raise  # 5xx, timeout, rate limit: the outbox retries the job
            notice.status = "no_grant"
            notice.errcode = exc.errcode
    session.flush()
    return notice.status
