"""Tables of the WeCom customer-contact feature.

- `wecom_raw_event`: every accepted callback, decrypted, with its dedup key (the intake log and
  the dead-letter store);
- `wecom_friend`: one row per (corp, advisor userid, external_userid) — the friend relation,
  with the CreateTime of the last event applied to it so that late deliveries cannot undo a
  newer state;
- `wecom_friend_tag`: the corporate tags on a relation (a relation table, WeCom authoritative);
- `wecom_friend_mobile`: the phone numbers the advisor noted on the contact in WeCom, encrypted
  like every phone at rest;
- `wecom_tag`: the tag library: corporate tags and rule-group (规则组) tags;
- `wecom_sync_state`: per corp, the lock and last read of the wholesale copies (tags, directory);
- `wecom_channel` / `wecom_welcome_template`: 「联系我」 contact ways and their welcome messages;
- `wecom_material` / `wecom_media_upload`: pictures, videos and files for welcome messages (素材),
  kept here because WeCom's media ids expire after three days, and their current media id per
  corp;
- `wecom_welcome_message`: what was sent with which WelcomeCode (41051 kept, not retried);
- `wecom_alert`: lost-customer and failed-handover alerts (one per event that raised it);
- `wecom_app_message`: every WeCom app message sent to staff;
- `wecom_group_chat` / `wecom_group_member`: customer group chats and their membership, each
  member row carrying the CreateTime of the last change applied to it (late events leave history);
- `wecom_channel_fact`: one row per add / loss attributed to a channel (the per-day statistics
  are counted from these rows, never kept as counters).
"""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import VARBINARY, BigInteger, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.mysql import LONGBLOB
from sqlalchemy.orm import Mapped, mapped_column

from backend.platform.db import Base, BigId, StrEnumType, TimestampMixin, utcnow


class RawEventStatus(enum.StrEnum):
    ACCEPTED = "accepted"  # stored and acknowledged; its jobs are not created yet (intake admits it)
    RECEIVED = "received"  # admitted: processing job pending
    RETRYING = "retrying"  # a try failed, the next one is scheduled
    PROCESSED = "processed"
    IGNORED = "ignored"  # an event type we do not handle (kept for inspection)
    DEAD = "dead"  # every try failed: waits for an admin (inspect, replay)
    PRUNED = "pruned"  # processed long ago; its XML removed, kept for the welcome or alert it caused


class FriendStatus(enum.StrEnum):
    ACTIVE = "active"
    HALF = "half"  # customer added the advisor without verification, not yet accepted
    DELETED_BY_CUSTOMER = "deleted_by_customer"
    DELETED_BY_ADVISOR = "deleted_by_advisor"
    TRANSFERRED = "transferred"
    CLOSED = "closed"  # gone from WeCom, found by the nightly reconciliation (no event seen)


LOST_STATUSES = frozenset({FriendStatus.DELETED_BY_CUSTOMER, FriendStatus.DELETED_BY_ADVISOR})


class AlertKind(enum.StrEnum):
    DELETED_BY_CUSTOMER = "deleted_by_customer"
    DELETED_BY_ADVISOR = "deleted_by_advisor"
    TRANSFER_FAILED = "transfer_failed"


class WeComRawEvent(Base):
    __tablename__ = "wecom_raw_event"
    __table_args__ = (Index("ix_wecom_raw_event_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    corp_id: Mapped[str] = mapped_column(String(64))
    agent_id: Mapped[str] = mapped_column(String(32), default="")
    # sha256 of (corp, Event, ChangeType, CreateTime, UserID, ExternalUserID|ChatId|Id): unique,
    # so a redelivery is refused by the database, not by a check.
    dedup_hash: Mapped[str] = mapped_column(String(64), unique=True)
    dedup_key: Mapped[str] = mapped_column(String(512))
    event: Mapped[str] = mapped_column(String(64))
    change_type: Mapped[str] = mapped_column(String(64), default="")
    create_time: Mapped[int] = mapped_column(BigInteger, default=0)
    xml: Mapped[str] = mapped_column(Text)
    status: Mapped[RawEventStatus] = mapped_column(StrEnumType(RawEventStatus, 16), default=RawEventStatus.ACCEPTED)
    attempts: Mapped[int] = mapped_column(default=0)
    replays: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)


class TagKind(enum.StrEnum):
    CORP = "corp"  # 企业标签: get_corp_tag_list
    STRATEGY = "strategy"  # 规则组标签: a tag under a customer-contact rule group, get_strategy_tag_list


class WeComTag(Base):
    """A tag of a corp's library. Tag ids are one space in a corp (corporate and rule-group
    tags alike carry `et...` ids and are marked through the same mark_tag), so one row per id."""

    __tablename__ = "wecom_tag"
    __table_args__ = (UniqueConstraint("corp_id", "tag_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    corp_id: Mapped[str] = mapped_column(String(64))
    tag_id: Mapped[str] = mapped_column(String(64))
    group_id: Mapped[str] = mapped_column(String(64))
    group_name: Mapped[str] = mapped_column(String(64))
    # WeCom's `order` of the group and of the tag in it: a larger one is listed first.
    group_order: Mapped[int] = mapped_column(default=0, server_default="0")
    name: Mapped[str] = mapped_column(String(64))
    sort_order: Mapped[int] = mapped_column(default=0)
    deleted: Mapped[bool] = mapped_column(default=False)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[TagKind] = mapped_column(StrEnumType(TagKind, 16), default=TagKind.CORP, server_default="corp")
    # The rule group of a rule-group tag; None for a corporate tag, and for a rule-group tag
    # known only from a customer's tags (follow_user names its group, not its rule group) until
    # a callback or a list names it.
    strategy_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # Whether WeCom lists the tag to this app. It lists an app only the rule-group tags that app
    # created (doc 99544, its version for provider-built apps; assumed for ours): others (made
    # in the admin console) are known from the customers carrying them and from their
    # callbacks; mark_tag refuses them (doc 92697), and their absence from a list says nothing.
    listed: Mapped[bool] = mapped_column(default=True, server_default=text("1"))


class WeComSyncState(Base):
    """One row per corp and what is copied from WeCom wholesale ("tags", "directory"). Two syncs
    of the same thing queue on its row lock and read WeCom under it, so a copy read earlier is
    never written after a newer one; `fetched_at` (when the last sync began reading) lets a
    sync for a change that an earlier read already saw stand down."""

    __tablename__ = "wecom_sync_state"

    corp_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(32), primary_key=True)
    fetched_at: Mapped[datetime | None]


class WelcomeTemplate(Base, TimestampMixin):
    __tablename__ = "wecom_welcome_template"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    # None: a group-wide template (group admins); otherwise the store it belongs to.
    store_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True, default=None)
    text: Mapped[str] = mapped_column(Text, default="")
    # The current `attachments` format, <= 9: [{"msgtype": "image"|"link"|"miniprogram"|"video"|"file",
    # <msgtype>: {...}}], where pictures, videos and files are materials (`material_id`, for a
    # mini-program card `pic_material_id`), resolved to fresh media ids when sent.
    attachments: Mapped[list] = mapped_column(default=list)


class WeComMaterial(Base, TimestampMixin):
    """A picture, video or file that welcome templates attach (素材). Templates refer to it by
    id, never by a WeCom media id: those expire three days after their upload, so the file is
    kept here and uploaded again before its media id does (backend.wecom.media)."""

    __tablename__ = "wecom_material"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))  # the file name WeCom shows with a file
    # None: group-wide (group admins, marketing); otherwise the store it belongs to.
    store_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True, default=None)
    kind: Mapped[str] = mapped_column(String(16))  # WeCom's media type: image | video | file
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    # Deferred: lists and checks never load the file, only an upload does.
    content: Mapped[bytes] = mapped_column(LargeBinary().with_variant(LONGBLOB(), "mysql", "mariadb"), deferred=True)


class WeComMediaUpload(Base):
    """A material's current media id in one corp (media ids are shared by a corp's apps)."""

    __tablename__ = "wecom_media_upload"
    __table_args__ = (UniqueConstraint("material_id", "corp_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    material_id: Mapped[int] = mapped_column(ForeignKey("wecom_material.id", ondelete="CASCADE"))
    corp_id: Mapped[str] = mapped_column(String(64))
    media_id: Mapped[str] = mapped_column(String(255))
    uploaded_at: Mapped[datetime]  # WeCom's created_at: the three days run from here


class WeComChannel(Base, TimestampMixin):
    """A 「联系我」 contact way. Its `state` comes back in add events: the attribution key."""

    __tablename__ = "wecom_channel"
    __table_args__ = (UniqueConstraint("corp_id", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    corp_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # store | advisor | group | campaign | event | poster
    state: Mapped[str] = mapped_column(String(30))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True, default=None)
    userids: Mapped[list] = mapped_column(default=list)
    skip_verify: Mapped[bool] = mapped_column(default=True)
    auto_tag_ids: Mapped[list] = mapped_column(default=list)
    welcome_template_id: Mapped[int | None] = mapped_column(ForeignKey("wecom_welcome_template.id"), default=None)
    config_id: Mapped[str | None] = mapped_column(String(64), default=None)
    qr_code: Mapped[str | None] = mapped_column(String(255), default=None)
    active: Mapped[bool] = mapped_column(default=True)
    # Daily add cap per advisor (None: no cap). An advisor at the cap leaves the contact way for
    # the rest of the (China) day; when every advisor is capped the fallbacks take over.
    daily_cap: Mapped[int | None] = mapped_column(default=None)
    fallback_userids: Mapped[list] = mapped_column(default=list)
    # The user list the contact way has in WeCom right now (what update_contact_way last set).
    applied_userids: Mapped[list] = mapped_column(default=list)
    # Created as a single-person contact way (type 1: one advisor, shown with their card); WeCom
    # cannot change a way's type, and such a way takes exactly one user. None: not known (a
    # channel from before this was kept), asked from WeCom when needed.
    single_person: Mapped[bool | None] = mapped_column(default=None)


class WeComFriend(Base, TimestampMixin):
    __tablename__ = "wecom_friend"
    __table_args__ = (
        UniqueConstraint("corp_id", "userid", "external_userid"),
        Index("ix_wecom_friend_customer", "customer_id"),
        Index("ix_wecom_friend_staff_status", "staff_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    corp_id: Mapped[str] = mapped_column(String(64))
    userid: Mapped[str] = mapped_column(String(64))  # the advisor's WeCom userid (kept if unknown to us)
    external_userid: Mapped[str] = mapped_column(String(64))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    status: Mapped[FriendStatus] = mapped_column(StrEnumType(FriendStatus, 24))
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("wecom_channel.id"), index=True, default=None)
    state: Mapped[str | None] = mapped_column(String(64), default=None)
    add_way: Mapped[int | None] = mapped_column(default=None)
    # The advisor's free-text notes on the contact in WeCom (up to 128 / 255 characters): they
    # often hold a phone number or a plate, so they are encrypted at rest like phones are
    # (service.friend_notes reads them).
    remark_encrypted: Mapped[bytes | None] = mapped_column(VARBINARY(576), default=None)
    description_encrypted: Mapped[bytes | None] = mapped_column(VARBINARY(1088), default=None)
    added_at: Mapped[datetime | None] = mapped_column(default=None)
    lost_at: Mapped[datetime | None] = mapped_column(default=None)
    # CreateTime of the newest status-changing event applied: an older one arriving late only
    # leaves its touchpoint.
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class WeComFriendTag(Base):
    __tablename__ = "wecom_friend_tag"
    # Who carries a tag: a tag deleted in WeCom leaves every relation, segments filter by tag.
    __table_args__ = (Index("ix_wecom_friend_tag_tag_id", "tag_id"),)

    friend_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("wecom_friend.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    tag_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WeComFriendMobile(Base):
    """One of a relation's `remark_mobiles`: a number the advisor typed on the contact in WeCom.
    Encrypted like every phone at rest (backend.platform.pii); a mainland mobile also carries its
    blind index, which is what a staff phone search matches. WeCom is authoritative: each edit
    event replaces the set."""

    __tablename__ = "wecom_friend_mobile"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    friend_id: Mapped[int] = mapped_column(BigId, ForeignKey("wecom_friend.id", ondelete="CASCADE"), index=True)
    phone_encrypted: Mapped[bytes] = mapped_column(VARBINARY(128))
    phone_index: Mapped[str | None] = mapped_column(String(64), index=True, default=None)


class WelcomeMessage(Base):
    __tablename__ = "wecom_welcome_message"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    raw_event_id: Mapped[int] = mapped_column(BigId, ForeignKey("wecom_raw_event.id"), unique=True)
    template_id: Mapped[int | None] = mapped_column(ForeignKey("wecom_welcome_template.id"), default=None)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"), index=True, default=None)
    # sent | already_sent (41051) | no_template | expired (the code died before a try) | failed
    # (the last try's error, with WeCom's errcode: no later try could succeed)
    status: Mapped[str] = mapped_column(String(16))
    errcode: Mapped[int | None] = mapped_column(default=None)
    payload: Mapped[dict | None] = mapped_column(default=None)
    latency_ms: Mapped[int | None] = mapped_column(default=None)  # callback received -> sent
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WeComAlert(Base):
    __tablename__ = "wecom_alert"
    __table_args__ = (Index("ix_wecom_alert_kind_resolved", "kind", "resolved_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # One alert per event that raised it: a redelivery or a replay cannot alert twice.
    raw_event_id: Mapped[int] = mapped_column(BigId, ForeignKey("wecom_raw_event.id"), unique=True)
    kind: Mapped[AlertKind] = mapped_column(StrEnumType(AlertKind, 24))
    friend_id: Mapped[int] = mapped_column(BigId, ForeignKey("wecom_friend.id"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True, default=None)
    detail: Mapped[dict | None] = mapped_column(default=None)
    occurred_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)  # the customer came back


class AppMessage(Base):
    """Every WeCom app message to staff (alerts, later notifications): recorded, sent by a job."""

    __tablename__ = "wecom_app_message"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(String(191), unique=True)
    touser: Mapped[list] = mapped_column(default=list)
    msgtype: Mapped[str] = mapped_column(String(16), default="text")
    content: Mapped[dict] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent | failed
    msgid: Mapped[str | None] = mapped_column(String(64), default=None)
    invalid_users: Mapped[str | None] = mapped_column(String(255), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    # What the message is about (new_lead, handover_failed, ...; None for callback alerts) and how
    # many delivery tries failed (retried with backoff through the outbox, `failed` after the last).
    kind: Mapped[str | None] = mapped_column(String(32), default=None)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")


class ChannelFactKind(enum.StrEnum):
    ADDED = "added"
    LOST = "lost"


class WeComChannelFact(Base):
    """An add or a loss of a friend relation, for the channel statistics.

    `source_ref` (the event) is unique, so a redelivered or replayed event is recorded once.
    Every add and loss is recorded; `counted` says which of them the statistics and the daily
    cap count: the add that made the customer a friend and the first loss after it (a half add
    confirmed later, a relation the reconciliation repaired, an advisor removing a customer who
    had already deleted them are recorded but not counted). A loss belongs to the channel of the
    add that opened its episode. Both are worked out from all the relation's facts in event
    time, so they come out the same whichever order the events were processed in (see
    `service.recount_facts`)."""

    __tablename__ = "wecom_channel_fact"
    __table_args__ = (
        Index("ix_wecom_channel_fact_channel_day", "channel_id", "day"),
        Index("ix_wecom_channel_fact_friend_at", "friend_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_ref: Mapped[str] = mapped_column(String(191), unique=True)
    friend_id: Mapped[int] = mapped_column(BigId, ForeignKey("wecom_friend.id", ondelete="CASCADE"))
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("wecom_channel.id"), default=None)
    userid: Mapped[str] = mapped_column(String(64))
    kind: Mapped[ChannelFactKind] = mapped_column(StrEnumType(ChannelFactKind, 8))
    day: Mapped[date]  # the China (UTC+8) calendar day of the event
    occurred_at: Mapped[datetime]
    counted: Mapped[bool] = mapped_column(default=True, server_default=text("1"))


class GroupChatStatus(enum.StrEnum):
    ACTIVE = "active"
    DISMISSED = "dismissed"


class WeComGroupChat(Base, TimestampMixin):
    __tablename__ = "wecom_group_chat"
    __table_args__ = (UniqueConstraint("corp_id", "chat_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    corp_id: Mapped[str] = mapped_column(String(64))
    chat_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(128), default=None)
    owner_userid: Mapped[str | None] = mapped_column(String(64), default=None)
    owner_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True, default=None)
    notice: Mapped[str | None] = mapped_column(Text, default=None)
    status: Mapped[GroupChatStatus] = mapped_column(StrEnumType(GroupChatStatus, 16), default=GroupChatStatus.ACTIVE)
    created_time: Mapped[int | None] = mapped_column(BigInteger, default=None)  # WeCom's create_time
    dismissed_at: Mapped[datetime | None] = mapped_column(default=None)
    # CreateTime of the newest event whose snapshot (name, owner, notice, status) was applied.
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class WeComGroupMember(Base):
    __tablename__ = "wecom_group_member"
    __table_args__ = (
        UniqueConstraint("chat_pk", "userid"),
        Index("ix_wecom_group_member_customer", "customer_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    chat_pk: Mapped[int] = mapped_column(BigId, ForeignKey("wecom_group_chat.id", ondelete="CASCADE"))
    userid: Mapped[str] = mapped_column(String(64))  # a member's userid or a customer's external_userid
    member_type: Mapped[int] = mapped_column(default=2)  # 1 corp member, 2 external contact
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"), default=None)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
    active: Mapped[bool] = mapped_column(default=True)
    join_time: Mapped[int | None] = mapped_column(BigInteger, default=None)
    join_scene: Mapped[int | None] = mapped_column(default=None)
    left_at: Mapped[datetime | None] = mapped_column(default=None)
    # CreateTime of the newest join/leave applied: an older event arriving late changes nothing.
    version: Mapped[int] = mapped_column(BigInteger, default=0)
