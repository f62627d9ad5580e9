"""Tables of the WeCom operations room: directory, handovers, behaviour figures, notifications.

- `wecom_department`: the WeCom departments as last synced, and the store each one maps to;
- `wecom_handover` / `wecom_handover_item`: our own transfer ledger (WeCom's `transfer_fail`
  event does not say which flow or who handed over, so every customer's transfer is tracked
  here until WeCom reports a final status);
- `wecom_behaviour_day`: `get_user_behavior_data` per advisor per day; `reply_percentage` and
  `avg_reply_time` stay NULL on days without chats (NULL is "no figure", not 0);
- `wecom_app_message_recipient`: one row per recipient of each app message actually sent (the
  rate limiter's database fallback and the per-recipient history).
"""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.platform.db import Base, BigId, StrEnumType, TimestampMixin, utcnow


class WeComDepartment(Base):
    __tablename__ = "wecom_department"
    __table_args__ = (UniqueConstraint("corp_id", "department_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    corp_id: Mapped[str] = mapped_column(String(64))
    department_id: Mapped[int] = mapped_column(BigInteger)
    parent_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    name: Mapped[str] = mapped_column(String(64))
    # The store (or any org node) the department's members work at; None: not mapped (its
    # members are not created as staff).
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True, default=None)
    # True once a group admin set the mapping (then the sync never re-maps it by name).
    manual: Mapped[bool] = mapped_column(default=False)
    present: Mapped[bool] = mapped_column(default=True)  # False: gone from WeCom at the last sync
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class HandoverKind(enum.StrEnum):
    RESIGNED = "resigned"  # externalcontact/resigned/transfer_customer
    ON_DUTY = "on_duty"  # externalcontact/transfer_customer


class HandoverStatus(enum.StrEnum):
    COLLECTING = "collecting"  # WeCom's unassigned list still being read (a long one)
    SUBMITTING = "submitting"  # items still to be sent to WeCom
    POLLING = "polling"  # waiting for WeCom's final statuses
    FINISHED = "finished"  # every item final


class ItemStatus(enum.StrEnum):
    PENDING = "pending"  # not yet sent to WeCom
    WAITING = "waiting"  # accepted by WeCom (errcode 0), takeover not final yet (status 2)
    DONE = "done"  # status 1
    REFUSED = "refused"  # status 3
    LIMIT = "limit"  # status 4: the takeover member hit the customer limit
    NO_RECORD = "no_record"  # status 5
    REJECTED = "rejected"  # WeCom refused the customer at submission (errcode != 0)
    # Not sent: the customer was already transferred on duty twice in 90 days, WeCom's limit.
    QUOTA_EXCEEDED = "quota_exceeded"
    # Beyond the handover's MAX_ITEMS: not handed over by this one (no open key), for the next.
    LEFT_OVER = "left_over"


FINAL_ITEM_STATUSES = frozenset(
    {
        ItemStatus.DONE,
        ItemStatus.REFUSED,
        ItemStatus.LIMIT,
        ItemStatus.NO_RECORD,
        ItemStatus.REJECTED,
        ItemStatus.QUOTA_EXCEEDED,
    }
)
FAILED_ITEM_STATUSES = FINAL_ITEM_STATUSES - {ItemStatus.DONE}


class WeComHandover(Base, TimestampMixin):
    __tablename__ = "wecom_handover"
    __table_args__ = (Index("ix_wecom_handover_status", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    corp_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[HandoverKind] = mapped_column(StrEnumType(HandoverKind, 16))
    handover_userid: Mapped[str] = mapped_column(String(64))
    takeover_userid: Mapped[str] = mapped_column(String(64))
    handover_staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    takeover_staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    # The handover advisor's store: the scope of the handover (managers see their stores').
    store_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"), index=True)
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
    transfer_success_msg: Mapped[str | None] = mapped_column(String(200), default=None)
    status: Mapped[HandoverStatus] = mapped_column(StrEnumType(HandoverStatus, 16), default=HandoverStatus.SUBMITTING)
    polls: Mapped[int] = mapped_column(default=0)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # Where reading WeCom's unassigned list goes on (while `collecting`); kept after `collecting`
    # only when the list could not be read to the end.
    collect_cursor: Mapped[str | None] = mapped_column(Text, default=None)  # WeCom sets its length
    collect_pages: Mapped[int] = mapped_column(default=0, server_default="0")  # pages of it read so far
    # When the submission could start (the list read): its retries count a day from here.
    collected_at: Mapped[datetime | None] = mapped_column(default=None)
    # The advisor's customers beyond MAX_ITEMS (items `left_over`): a new request hands them over.
    left_over: Mapped[int] = mapped_column(default=0, server_default="0")


class WeComHandoverItem(Base):
    __tablename__ = "wecom_handover_item"
    __table_args__ = (
        UniqueConstraint("handover_id", "external_userid"),
        Index("ix_wecom_handover_item_handover_status", "handover_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    handover_id: Mapped[int] = mapped_column(BigId, ForeignKey("wecom_handover.id", ondelete="CASCADE"))
    external_userid: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"), index=True, default=None)
    # "<corp>:<handover userid>:<external_userid>" while the item is open, NULL once final: a
    # customer cannot be in two open handovers of the same advisor (the database decides).
    open_key: Mapped[str | None] = mapped_column(String(191), unique=True, default=None)
    status: Mapped[ItemStatus] = mapped_column(StrEnumType(ItemStatus, 16), default=ItemStatus.PENDING)
    errcode: Mapped[int | None] = mapped_column(default=None)
    takeover_time: Mapped[datetime | None] = mapped_column(default=None)
    submitted_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class WeComBehaviourDay(Base):
    __tablename__ = "wecom_behaviour_day"
    __table_args__ = (
        UniqueConstraint("corp_id", "userid", "stat_date"),
        Index("ix_wecom_behaviour_day_staff_date", "staff_id", "stat_date"),
        Index("ix_wecom_behaviour_day_store_date", "store_id", "stat_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    corp_id: Mapped[str] = mapped_column(String(64))
    userid: Mapped[str] = mapped_column(String(64))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
    # The advisor's store when the day was first stored: figures stay with the store they were
    # earned at (its manager keeps seeing them after the advisor moves; the new store's does not).
    store_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), default=None)
    stat_date: Mapped[date] = mapped_column(Date)  # the China-time day of WeCom's stat_time
    chat_cnt: Mapped[int] = mapped_column(default=0)
    message_cnt: Mapped[int] = mapped_column(default=0)
    reply_percentage: Mapped[float | None] = mapped_column(Float, default=None)
    avg_reply_time: Mapped[float | None] = mapped_column(Float, default=None)  # minutes
    negative_feedback_cnt: Mapped[int] = mapped_column(default=0)
    new_apply_cnt: Mapped[int] = mapped_column(default=0)
    new_contact_cnt: Mapped[int] = mapped_column(default=0)
    pulled_at: Mapped[datetime] = mapped_column(default=utcnow)


class AppMessageRecipient(Base):
    __tablename__ = "wecom_app_message_recipient"
    __table_args__ = (
        UniqueConstraint("message_id", "userid"),
        Index("ix_wecom_app_message_recipient_user_sent", "corp_id", "userid", "sent_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(BigId, ForeignKey("wecom_app_message.id", ondelete="CASCADE"))
    corp_id: Mapped[str] = mapped_column(String(64))
    userid: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
