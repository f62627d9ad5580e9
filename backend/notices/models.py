"""One-time subscribe grants per owner and template, and every notice decided for an owner."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.platform.db import Base, BigId, ExactString, utcnow


class SubscribeGrant(Base):
    """How many one-time grants the owner has left for a template. Each "accept" reported by the
    mini-program (wx.requestSubscribeMessage) adds one; each message sent takes one.

    Keyed by openid, as WeChat counts them: when two customers are merged the openid identity
    moves and its grants with it, with nothing to re-key."""

    __tablename__ = "subscribe_grant"

    openid: Mapped[str] = mapped_column(ExactString(64), primary_key=True)
    template_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    remaining: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class NoticeStatus:
    PENDING = "pending"
    SENT = "sent"
    NO_GRANT = "no_grant"  # we counted none, or WeChat answered 43101: final, never retried
    NO_TEMPLATE = "no_template"  # the template setting is empty: recorded, not sent
    NO_OPENID = "no_openid"  # a customer known only from WeCom has no mini-program openid


class SubscribeNotice(Base):
    """A notice decided for an owner (booking reminder, reply to a consultation, seat offered ...).
    `dedup_key` makes the deciding code record it once however often it runs."""

    __tablename__ = "subscribe_notice"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    # The setting naming the template (SUBSCRIBE_TEMPLATE_...), resolved when it is sent.
    template_setting: Mapped[str] = mapped_column(String(64))
    template_id: Mapped[str | None] = mapped_column(String(64), default=None)
    dedup_key: Mapped[str] = mapped_column(String(191), unique=True)
    data: Mapped[dict] = mapped_column()
    page: Mapped[str | None] = mapped_column(String(255), default=None)
    store_id: Mapped[int | None] = mapped_column(default=None)
    advisor_id: Mapped[int | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default=NoticeStatus.PENDING, index=True)
    errcode: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
