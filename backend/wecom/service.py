"""WeCom customer contact: customers and friend relations, tags, alerts, app messages.

Everything here runs in the caller's transaction and only flushes. Upstream calls go through
the `WeComGateway` port; `gateway_for(corp_id)` picks the app of a corp.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from backend.customers.models import Customer, CustomerAdvisor, IdentityKind
from backend.customers.service import attach_identity, find_by_identity
from backend.org.models import ADVISOR_ROLES, Role, Staff, StaffRole, StaffStatus
from backend.platform.db import DuplicateKey, unique_savepoint, utcnow
from backend.platform.errors import register_messages
from backend.platform.jobs import enqueue
from backend.platform.ports import UpstreamError, WeComGateway
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import record
from backend.wecom.models import (
    AlertKind,
    AppMessage,
    FriendStatus,
    WeComAlert,
    WeComChannel,
    WeComFriend,
    WeComFriendTag,
    WeComRawEvent,
    WeComTag,
)

log = logging.getLogger("dealerloop.wecom")

SOURCE = "wecom_callback"
APP_MESSAGE_JOB = "wecom.send_app_message"
CONTACT_GONE = 84061  # "not an external contact": deleted, or never our customer

register_messages(
    {
        "wecom.signature_invalid": ("回调签名校验失败", "Invalid callback signature"),
        "wecom.receive_id_mismatch": ("回调不属于本企业", "The callback is not for this corp"),
        "wecom.callback_stale": ("回调时间戳超出允许范围", "Callback timestamp outside the allowed window"),
        "wecom.callback_malformed": ("回调内容无法解析", "The callback could not be parsed"),
        "wecom.unknown_app": ("未配置的企业微信应用", "Unknown WeCom app"),
        "wecom.event_not_found": ("回调事件不存在", "Callback event not found"),
        "wecom.event_not_replayable": ("该事件无需重放", "Only dead or ignored events can be replayed"),
        "wecom.channel_not_found": ("渠道活码不存在", "Channel not found"),
        "wecom.channel_state_taken": ("渠道标识已被使用", "This channel state is already used"),
        "wecom.template_not_found": ("欢迎语模板不存在", "Welcome template not found"),
        "wecom.store_forbidden": ("不能为该门店创建", "Not allowed for this store"),
        "wecom.tag_unknown": ("标签不存在", "Unknown tag"),
    }
)


# ---------------------------------------------------------------------------------------------
# Gateways and small lookups


def gateway_for(corp_id: str) -> WeComGateway:
    gateway: WeComGateway = current_app.extensions["dealerloop.gateways"].wecom
    if gateway.corp_id != corp_id:
        raise LookupError(f"no WeCom app configured for corp {corp_id}")
    return gateway


def event_time(create_time: int) -> datetime:
    return datetime.fromtimestamp(create_time, UTC) if create_time > 0 else utcnow()


def staff_by_userid(session: Session, corp_id: str, userid: str) -> Staff | None:
    if not userid:
        return None
    return session.scalars(select(Staff).where(Staff.corp_id == corp_id, Staff.wecom_userid == userid)).one_or_none()


def store_managers(session: Session, store_id: int) -> list[Staff]:
    return list(
        session.scalars(
            select(Staff)
            .join(StaffRole)
            .where(
                Staff.org_unit_id == store_id,
                Staff.status == StaffStatus.ACTIVE,
                StaffRole.role == Role.STORE_MANAGER,
            )
            .order_by(Staff.id)
        )
    )


def channel_by_state(session: Session, corp_id: str, state: str | None) -> WeComChannel | None:
    if not state:
        return None
    return session.scalars(
        select(WeComChannel).where(WeComChannel.corp_id == corp_id, WeComChannel.state == state)
    ).one_or_none()


def fetch_contact(gateway: WeComGateway, external_userid: str) -> dict[str, Any] | None:
    """`externalcontact/get`; None when WeCom no longer knows the contact (84061)."""
    try:
        return gateway.get("externalcontact/get", {"external_userid": external_userid})
    except UpstreamError as exc:
        if exc.reason == "rejected" and exc.errcode == CONTACT_GONE:
            return None
        raise


def follow_of(detail: dict[str, Any] | None, userid: str) -> dict[str, Any] | None:
    for follow in (detail or {}).get("follow_user") or []:
        if follow.get("userid") == userid:
            return follow
    return None


# ---------------------------------------------------------------------------------------------
# Customers


def ensure_customer(session: Session, external_userid: str, detail: dict[str, Any] | None) -> Customer:
    """The customer of an external contact: by external_userid, else by unionid (a mini-program
    member who is now a WeCom friend), else a new customer. Races are decided by the unique
    identity key."""
    contact = (detail or {}).get("external_contact") or {}
    unionid = contact.get("unionid") or None
    customer = find_by_identity(session, IdentityKind.EXTERNAL_USERID, external_userid)
    if customer is None and unionid:
        customer = find_by_identity(session, IdentityKind.UNIONID, unionid)
        if customer is not None:
            attach_identity(session, customer, IdentityKind.EXTERNAL_USERID, external_userid)
    if customer is None:
        try:
            with unique_savepoint(session):
                customer = Customer(name=(contact.get("name") or None), acquisition_channel="wecom")
                session.add(customer)
                session.flush()
                if not attach_identity(session, customer, IdentityKind.EXTERNAL_USERID, external_userid):
                    raise DuplicateKey("external_userid taken by a concurrent writer")
        except DuplicateKey:
            customer = find_by_identity(session, IdentityKind.EXTERNAL_USERID, external_userid)
            if customer is None:
                raise
    if unionid:
        attach_identity(session, customer, IdentityKind.UNIONID, unionid)
    if not customer.name and contact.get("name"):
        customer.name = contact["name"][:64]
    return customer


def assign_advisor(session: Session, customer: Customer, staff: Staff) -> None:
    """The advisor who added the customer becomes their advisor for that role, if none yet."""
    role = next((r.value for r in sorted(staff.roles) if r in ADVISOR_ROLES), None)
    if role is None:
        return
    try:
        with unique_savepoint(session):
            session.add(CustomerAdvisor(customer_id=customer.id, staff_id=staff.id, role=role))
    except DuplicateKey:
        pass
    if customer.home_store_id is None:
        customer.home_store_id = staff.org_unit_id


# ---------------------------------------------------------------------------------------------
# Friend relations


def lock_friend(
    session: Session,
    corp_id: str,
    userid: str,
    external_userid: str,
    customer: Customer,
    staff: Staff | None,
    initial_status: FriendStatus,
) -> tuple[WeComFriend, bool]:
    """Insert the relation or find it, then hold its row lock until commit (two workers with
    events of the same pair apply them one after the other)."""
    created = False
    try:
        with unique_savepoint(session):
            session.add(
                WeComFriend(
                    corp_id=corp_id,
                    userid=userid,
                    external_userid=external_userid,
                    customer_id=customer.id,
                    staff_id=staff.id if staff else None,
                    status=initial_status,
                    version=0,
                )
            )
        created = True
    except DuplicateKey:
        pass
    friend = session.scalars(
        select(WeComFriend)
        .where(
            WeComFriend.corp_id == corp_id,
            WeComFriend.userid == userid,
            WeComFriend.external_userid == external_userid,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if staff is not None and friend.staff_id is None:
        friend.staff_id = staff.id
    return friend, created


def friend_tag_ids(session: Session, friend_id: int) -> set[str]:
    return set(session.scalars(select(WeComFriendTag.tag_id).where(WeComFriendTag.friend_id == friend_id)))


def set_friend_tags(
    session: Session, friend: WeComFriend, wanted: set[str], ref: str, occurred_at: datetime
) -> tuple[set[str], set[str]]:
    """Make the relation's tags exactly `wanted` (WeCom is authoritative); touchpoints per change."""
    current = friend_tag_ids(session, friend.id)
    added, removed = wanted - current, current - wanted
    for tag_id in sorted(added):
        try:
            with unique_savepoint(session):
                session.add(WeComFriendTag(friend_id=friend.id, tag_id=tag_id))
        except DuplicateKey:
            continue
    if removed:
        from sqlalchemy import delete

        session.execute(
            delete(WeComFriendTag).where(WeComFriendTag.friend_id == friend.id, WeComFriendTag.tag_id.in_(removed))
        )
    for kind, tags in ((Kind.TAG_ADDED, added), (Kind.TAG_REMOVED, removed)):
        for tag_id in sorted(tags):
            record(
                session,
                customer_id=friend.customer_id,
                kind=kind,
                channel=Channel.WECOM,
                source=SOURCE,
                source_ref=f"wecom:{ref}:{kind.value}:{friend.id}:{tag_id}",
                occurred_at=occurred_at,
                advisor_id=friend.staff_id,
                payload={"tag_id": tag_id, "userid": friend.userid},
            )
    return added, removed


def apply_follow(
    session: Session, friend: WeComFriend, follow: dict[str, Any] | None, ref: str, occurred_at: datetime
) -> None:
    """Remark, description, remark mobiles and tags from `follow_user[]` of externalcontact/get."""
    if follow is None:
        return
    friend.remark = (follow.get("remark") or None) and follow["remark"][:128]
    friend.description = (follow.get("description") or None) and follow["description"][:255]
    friend.remark_mobiles = list(follow.get("remark_mobiles") or [])
    if friend.add_way is None and follow.get("add_way") is not None:
        friend.add_way = int(follow["add_way"])
    wanted = {t["tag_id"] for t in follow.get("tags") or [] if t.get("type", 1) == 1 and t.get("tag_id")}
    set_friend_tags(session, friend, wanted, ref, occurred_at)


def touch(
    session: Session, friend: WeComFriend, kind: Kind, ref: str, occurred_at: datetime, payload: dict | None = None
) -> None:
    store_id = None
    if friend.staff_id is not None:
        staff = session.get(Staff, friend.staff_id)
        store_id = staff.org_unit_id if staff else None
    record(
        session,
        customer_id=friend.customer_id,
        kind=kind,
        channel=Channel.WECOM,
        source=SOURCE,
        source_ref=f"wecom:{ref}:{kind.value}",
        occurred_at=occurred_at,
        advisor_id=friend.staff_id,
        store_id=store_id,
        payload={"userid": friend.userid, "external_userid": friend.external_userid, **(payload or {})},
    )


def resolve_alerts(session: Session, friend: WeComFriend, at: datetime) -> None:
    """A customer who is a friend again leaves the lost list."""
    session.execute(
        update(WeComAlert)
        .where(
            WeComAlert.friend_id == friend.id,
            WeComAlert.resolved_at.is_(None),
            WeComAlert.kind.in_([AlertKind.DELETED_BY_CUSTOMER, AlertKind.DELETED_BY_ADVISOR]),
        )
        .values(resolved_at=at)
    )


# ---------------------------------------------------------------------------------------------
# Alerts and app messages


def raise_alert(
    session: Session,
    raw: WeComRawEvent,
    friend: WeComFriend,
    kind: AlertKind,
    occurred_at: datetime,
    detail: dict[str, Any] | None = None,
) -> WeComAlert | None:
    """One alert per event (unique raw_event_id), its touchpoint, and the app message to the
    advisor and the store managers. An alert whose customer has come back since (a later add
    applied first) is born resolved — it stays in the history, not on the lost list."""
    staff = session.get(Staff, friend.staff_id) if friend.staff_id else None
    alert = WeComAlert(
        raw_event_id=raw.id,
        kind=kind,
        friend_id=friend.id,
        customer_id=friend.customer_id,
        staff_id=friend.staff_id,
        store_id=staff.org_unit_id if staff else None,
        detail=detail,
        occurred_at=occurred_at,
    )
    if kind != AlertKind.TRANSFER_FAILED and friend.status in (FriendStatus.ACTIVE, FriendStatus.HALF):
        alert.resolved_at = utcnow()
    try:
        with unique_savepoint(session):
            session.add(alert)
    except DuplicateKey:
        return None
    if kind != AlertKind.TRANSFER_FAILED:
        touch(session, friend, Kind.LOST_CUSTOMER_ALERTED, f"alert:{alert.id}", occurred_at, {"alert": kind.value})
    customer = session.get(Customer, friend.customer_id)
    name = (customer.name if customer else None) or friend.external_userid
    managers = store_managers(session, staff.org_unit_id) if staff else []
    if kind == AlertKind.TRANSFER_FAILED:
        recipients = [m.wecom_userid for m in managers]
        text = f"客户「{name}」转接失败（{(detail or {}).get('reason', '')}），请处理。"
    else:
        recipients = [friend.userid] + [m.wecom_userid for m in managers if m.wecom_userid != friend.userid]
        who = "客户删除了顾问" if kind == AlertKind.DELETED_BY_CUSTOMER else "顾问删除了客户"
        text = f"流失提醒：客户「{name}」与顾问 {staff.name if staff else friend.userid} 的好友关系已解除（{who}）。"
    if recipients:
        send_app_message(session, f"alert:{alert.id}", raw.corp_id, recipients, text)
    return alert


def send_app_message(session: Session, dedup: str, corp_id: str, userids: list[str], text: str) -> AppMessage | None:
    """Record a text app message to staff and send it after commit (deduplicated by key)."""
    message = AppMessage(
        dedup_key=dedup[:191], touser=list(dict.fromkeys(userids)), msgtype="text", content={"content": text}
    )
    message.content["corp_id"] = corp_id
    try:
        with unique_savepoint(session):
            session.add(message)
    except DuplicateKey:
        return None
    enqueue(session, APP_MESSAGE_JOB, {"message_id": message.id}, dedup_key=f"{APP_MESSAGE_JOB}:{message.id}")
    return message


def deliver_app_message(session: Session, message_id: int) -> None:
    message = session.get(AppMessage, message_id, with_for_update=True)
    if message is None or message.status == "sent":
        return
    gateway = gateway_for(message.content.get("corp_id", ""))
    result = gateway.post(
        "message/send",
        {
            "touser": "|".join(message.touser),
            "msgtype": message.msgtype,
            "agentid": int(gateway.agent_id) if str(gateway.agent_id).isdigit() else gateway.agent_id,
            message.msgtype: {"content": message.content["content"]},
        },
    )
    message.status = "sent"
    message.msgid = result.get("msgid")
    message.invalid_users = (result.get("invaliduser") or None) and str(result["invaliduser"])[:255]
    message.sent_at = utcnow()


# ---------------------------------------------------------------------------------------------
# Tag library


def sync_tag_library(session: Session, corp_id: str, gateway: WeComGateway) -> int:
    """Bring `wecom_tag` in line with `get_corp_tag_list` (tags WeCom no longer has are marked
    deleted, not removed: relations may still name them)."""
    result = gateway.post("externalcontact/get_corp_tag_list", {})
    existing = {t.tag_id: t for t in session.scalars(select(WeComTag).where(WeComTag.corp_id == corp_id))}
    seen: set[str] = set()
    now = utcnow()
    for group in result.get("tag_group") or []:
        for tag in group.get("tag") or []:
            tag_id = tag["id"]
            seen.add(tag_id)
            values = {
                "group_id": group["group_id"],
                "group_name": str(group.get("group_name", ""))[:64],
                "name": str(tag.get("name", ""))[:64],
                "sort_order": int(tag.get("order") or 0),
                "deleted": bool(tag.get("deleted")) or bool(group.get("deleted")),
                "synced_at": now,
            }
            row = existing.get(tag_id)
            if row is None:
                try:
                    with unique_savepoint(session):
                        session.add(WeComTag(corp_id=corp_id, tag_id=tag_id, **values))
                except DuplicateKey:
                    row = session.scalars(
                        select(WeComTag).where(WeComTag.corp_id == corp_id, WeComTag.tag_id == tag_id)
                    ).one()
            if row is not None:
                for key, value in values.items():
                    setattr(row, key, value)
    for tag_id, row in existing.items():
        if tag_id not in seen and not row.deleted:
            row.deleted = True
            row.synced_at = now
    session.flush()
    return len(seen)


def current_corp_id() -> str:
    return current_app.extensions["dealerloop.gateways"].wecom.corp_id
