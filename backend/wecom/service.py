"""WeCom customer contact: customers and friend relations, tags, alerts, app messages, channel
facts and daily caps, customer group chats and their membership.

Everything here runs in the caller's transaction and only flushes. Upstream calls go through
the `WeComGateway` port; `gateway_for(corp_id, agent_id)` picks the app of a corp (and agent).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from flask import current_app
from sqlalchemy import delete, distinct, func, select, update
from sqlalchemy.orm import Session

from backend.customers.models import Customer, CustomerAdvisor, IdentityKind
from backend.customers.service import attach_identity, attach_unionid, find_by_identity, live_customer, vault
from backend.org.models import ADVISOR_ROLES, OrgKind, OrgUnit, Staff, StaffStatus
from backend.org.service import managers_of_store
from backend.platform.actors import StaffActor
from backend.platform.db import DuplicateKey, insert_or_lock, unique_savepoint, utcnow
from backend.platform.errors import AppError, register_messages
from backend.platform.logs import mask_phone, mask_phones
from backend.platform.pii import PhoneVault
from backend.platform.ports import UpstreamError, WeComGateway
from backend.touchpoints.models import Channel, Kind, Touchpoint
from backend.touchpoints.service import rebuild_profiles, record
from backend.wecom import notify
from backend.wecom.models import (
    AlertKind,
    ChannelFactKind,
    FriendStatus,
    GroupChatStatus,
    TagKind,
    WeComAlert,
    WeComChannel,
    WeComChannelFact,
    WeComFriend,
    WeComFriendMobile,
    WeComFriendTag,
    WeComGroupChat,
    WeComGroupMember,
    WeComRawEvent,
    WeComSyncState,
    WeComTag,
)

log = logging.getLogger("dealerloop.wecom")

SOURCE = "wecom_callback"
STRATEGY_TAG_TYPE = 3  # follow_user[].tags[].type of a rule-group tag
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
        "wecom.tag_not_markable": (
            "该规则组标签不是本应用创建的，不能通过本系统打标签",
            "This rule-group tag was not created by this app: it cannot be marked from here",
        ),
        "wecom.tags_empty": ("请至少选择一个要添加或移除的标签", "Add or remove at least one tag"),
        "wecom.tags_conflict": ("同一标签不能同时添加和移除", "A tag cannot be added and removed at once"),
        "wecom.not_a_friend": ("该客户不是企业微信好友", "The customer is not a WeCom friend"),
        "wecom.fallback_without_cap": ("设置备用顾问需要先设置每日添加上限", "Fallback advisors need a daily cap"),
        "wecom.fallback_overlaps": ("备用顾问不能与接待顾问重复", "Fallback advisors must differ from the advisors"),
        "wecom.userid_repeated": ("同一顾问不能重复添加", "An advisor is named twice"),
        "wecom.corp_not_configured": ("该企业未配置企业微信应用", "No WeCom app is configured for this corp"),
        "wecom.chat_not_found": ("客户群不存在", "Group chat not found"),
        "wecom.stats_range_invalid": ("统计日期范围无效（最多366天）", "Invalid date range (at most 366 days)"),
        "wecom.store_invalid": ("所选组织不是门店", "Not a store"),
        "wecom.channel_single_person": (
            "单人活码只能有一位顾问且不能设置每日上限，请新建多人活码",
            "A single-person QR code takes one advisor and no daily cap: create a multi-person channel",
        ),
        "wecom.userid_unknown": ("顾问不存在或已离职", "Unknown or resigned advisor"),
        "wecom.userid_out_of_scope": ("不能使用其他门店的顾问", "Advisors of other stores cannot be used"),
        "wecom.template_store": ("欢迎语模板属于其他门店", "The welcome template belongs to another store"),
        "wecom.material_not_found": ("素材不存在", "Material not found"),
        "wecom.material_size": ("素材大小不符合要求", "The file is too small or too large"),
        "wecom.material_format": ("素材格式不符合要求", "The file format is not accepted"),
        "wecom.material_kind": ("素材类型与附件不符", "The material is of another kind"),
        "wecom.material_store": ("素材属于其他门店", "The material belongs to another store"),
        "wecom.material_in_use": ("素材正在被欢迎语使用", "The material is attached to a welcome template"),
    }
)


# ---------------------------------------------------------------------------------------------
# Gateways and small lookups


def wecom_apps() -> list[WeComGateway]:
    """Every configured WeCom app: the primary one, then `WECOM_EXTRA_APPS` (wired by create_app)."""
    gateways = current_app.extensions["dealerloop.gateways"]
    return [gateways.wecom, *gateways.extra.get("wecom_apps", [])]


APP_KEY_LENGTH = 16  # hex digits: apps are few, and a link stays short


def app_key(gateway: WeComGateway) -> str:
    """The opaque name of one app in links (the card's `?app=`, the login's `app`): derived
    from its corp and agent, so it is stable across restarts and the order of the settings,
    says nothing secret, and needs no setting of its own."""
    return hashlib.sha256(f"{gateway.corp_id}:{gateway.agent_id}".encode()).hexdigest()[:APP_KEY_LENGTH]


def app_by_key(key: str) -> WeComGateway | None:
    """The configured app a link or a login names; None for a key no app has (any more)."""
    for gateway in wecom_apps():
        if app_key(gateway) == key:
            return gateway
    return None


def corp_ids() -> list[str]:
    """Every configured corp, the primary one first (a corp may have several apps)."""
    return list(dict.fromkeys(g.corp_id for g in wecom_apps()))


def gateway_for(corp_id: str, agent_id: str = "") -> WeComGateway:
    """The app of a corp (and agent, when the event named one): its own secret and token."""
    apps = [g for g in wecom_apps() if g.corp_id == corp_id]
    for gateway in apps:
        if agent_id and str(gateway.agent_id) == str(agent_id):
            return gateway
    if apps:
        return apps[0]
    raise LookupError(f"no WeCom app configured for corp {corp_id}")


def configured_gateway(corp_id: str, field: str = "corp_id") -> WeComGateway:
    """The app of `corp_id` for a request naming it (in `field`); a corp dealerloop has no app
    for (never configured, or taken out of the settings) is the request's problem: 422."""
    try:
        return gateway_for(corp_id)
    except LookupError as exc:
        raise corp_not_configured(corp_id, field) from exc


def corp_not_configured(corp_id: str, field: str = "corp_id") -> AppError:
    return AppError("wecom.corp_not_configured", 422, errors={field: [f"no WeCom app for {corp_id}"]})


def event_time(create_time: int) -> datetime:
    return datetime.fromtimestamp(create_time, UTC) if create_time > 0 else utcnow()


def staff_by_userid(session: Session, corp_id: str, userid: str) -> Staff | None:
    if not userid:
        return None
    return session.scalars(select(Staff).where(Staff.corp_id == corp_id, Staff.wecom_userid == userid)).one_or_none()


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


def find_friend(session: Session, corp_id: str, userid: str, external_userid: str) -> WeComFriend | None:
    """The relation if we have it, locked; never created."""
    return session.scalars(
        select(WeComFriend)
        .where(
            WeComFriend.corp_id == corp_id,
            WeComFriend.userid == userid,
            WeComFriend.external_userid == external_userid,
        )
        .with_for_update()
    ).one_or_none()


def follow_of(detail: dict[str, Any] | None, userid: str) -> dict[str, Any] | None:
    """The advisor's entry in `follow_user` (userids compared without case, as WeCom does)."""
    wanted = userid.casefold()
    for follow in (detail or {}).get("follow_user") or []:
        if str(follow.get("userid") or "").casefold() == wanted:
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
                customer = Customer(name=(contact.get("name") or "")[:64] or None, acquisition_channel="wecom")
                session.add(customer)
                session.flush()
                if not attach_identity(session, customer, IdentityKind.EXTERNAL_USERID, external_userid):
                    raise DuplicateKey("external_userid taken by a concurrent writer")
        except DuplicateKey:
            customer = find_by_identity(session, IdentityKind.EXTERNAL_USERID, external_userid)
            if customer is None:
                raise
    if unionid:
        customer = attach_unionid(session, customer, unionid, "wecom_unionid")
    # The relation, advisor and tags written next must not land on the source of a merge that
    # was committing while the customer was looked up.
    customer = live_customer(session, customer.id)
    name = str(contact.get("name") or "")[:64]
    if name and (not customer.name or (customer.name != name and _named_by_wecom(customer))):
        customer.name = name
    return customer


def _named_by_wecom(customer: Customer) -> bool:
    """Whether the customer's name is their WeChat nickname as WeCom gave it (so it follows a
    change): a customer WeCom brought who never signed in to the mini-program, where a member
    writes their own name, which a nickname must never replace."""
    return (customer.acquisition_channel or "").startswith("wecom") and not any(
        i.kind == IdentityKind.OPENID for i in customer.identities
    )


def advisor_role(staff: Staff) -> str | None:
    return next((r.value for r in sorted(staff.roles) if r in ADVISOR_ROLES), None)


def assign_advisor(session: Session, customer: Customer, staff: Staff) -> None:
    """The advisor who added the customer becomes their advisor for that role, if none yet."""
    role = advisor_role(staff)
    if role is None:
        return
    try:
        with unique_savepoint(session):
            session.add(CustomerAdvisor(customer_id=customer.id, staff_id=staff.id, role=role))
    except DuplicateKey:
        pass
    if customer.home_store_id is None:
        customer.home_store_id = staff.org_unit_id


def adopt_relations(session: Session, staff: Staff) -> int:
    """Relations WeCom's events stored before the advisor was in our directory (no staff): now
    theirs, with their lost-customer alerts, which then reach the store's lost list; open ones
    give the customer their advisor, as the add would have. Returns the relations adopted."""
    session.flush()  # the new staff row's id
    friends = session.scalars(
        select(WeComFriend).where(
            WeComFriend.corp_id == staff.corp_id,
            WeComFriend.userid == staff.wecom_userid,
            WeComFriend.staff_id.is_(None),
        )
    ).all()
    for friend in friends:
        friend.staff_id = staff.id
        if friend.status in (FriendStatus.ACTIVE, FriendStatus.HALF):
            customer = session.get(Customer, friend.customer_id)
            if customer is not None:
                assign_advisor(session, customer, staff)
    if friends:
        session.execute(
            update(WeComAlert)
            .where(WeComAlert.friend_id.in_([f.id for f in friends]), WeComAlert.staff_id.is_(None))
            .values(staff_id=staff.id, store_id=staff.org_unit_id)
        )
    # Their group chats (owner) and memberships, which the store's manager then sees.
    session.execute(
        update(WeComGroupChat)
        .where(
            WeComGroupChat.corp_id == staff.corp_id,
            WeComGroupChat.owner_userid == staff.wecom_userid,
            WeComGroupChat.owner_staff_id.is_(None),
        )
        .values(owner_staff_id=staff.id)
    )
    session.execute(
        update(WeComGroupMember)
        .where(
            WeComGroupMember.chat_pk.in_(select(WeComGroupChat.id).where(WeComGroupChat.corp_id == staff.corp_id)),
            WeComGroupMember.userid == staff.wecom_userid,
            WeComGroupMember.member_type == 1,
            WeComGroupMember.staff_id.is_(None),
        )
        .values(staff_id=staff.id)
        .execution_options(synchronize_session=False)
    )
    return len(friends)


def role_holder(session: Session, customer_id: int, staff: Staff) -> int | None:
    """Who holds the customer for `staff`'s advisor role (a staff id), if anyone."""
    role = advisor_role(staff)
    if role is None:
        return None
    return session.scalar(
        select(CustomerAdvisor.staff_id).where(CustomerAdvisor.customer_id == customer_id, CustomerAdvisor.role == role)
    )


def transferred_advisors(session: Session, corp_id: str, customer_id: int) -> list[int]:
    """The staff whose relation with the customer WeCom transferred away (DELETE_BY_TRANSFER)."""
    return list(
        session.scalars(
            select(WeComFriend.staff_id)
            .where(
                WeComFriend.corp_id == corp_id,
                WeComFriend.customer_id == customer_id,
                WeComFriend.status == FriendStatus.TRANSFERRED,
                WeComFriend.staff_id.is_not(None),
            )
            .distinct()
        )
    )


TRANSFER_WINDOW = timedelta(minutes=5)  # a transfer's delete and the takeover's add share their moment


def follow_transfer(session: Session, corp_id: str, customer_id: int, handed_over_by: int) -> bool:
    """A transfer WeCom reports by callback (made in WeCom's admin console, outside our
    handovers): `handed_over_by`'s relation with the customer is `transferred`, and the advisor
    whose add came with it takes over the role they held for the customer, as a handover's
    result does, with its advisor_assigned touchpoint. The takeover is the advisor of the same
    role whose relation with the customer opened within TRANSFER_WINDOW of the transfer (the
    DELETE_BY_TRANSFER's CreateTime), whatever became of it since: a customer who deleted the
    takeover a minute later had still been handed to them, and the result must not depend on
    whether that loss was processed first. None (their add not applied yet: it will call this
    again), nothing moves. When the takeover holds the role already (their add was processed
    before the handed-over advisor's, and the first add processed takes a free role), only the
    touchpoint is written, so that the timeline does not depend on the processing order.
    Returns whether the role moved."""
    handed_over = session.get(Staff, handed_over_by)
    role = advisor_role(handed_over) if handed_over is not None else None
    holder = session.scalars(
        select(CustomerAdvisor)
        .where(CustomerAdvisor.customer_id == customer_id, CustomerAdvisor.role == role)
        .with_for_update()
    ).first()
    if holder is None:
        return False
    relations = session.scalars(
        select(WeComFriend).where(
            WeComFriend.corp_id == corp_id,
            WeComFriend.customer_id == customer_id,
            WeComFriend.staff_id == handed_over_by,
        )
    ).all()
    transferred = [f for f in relations if f.status == FriendStatus.TRANSFERRED]
    if not transferred or any(f.status in (FriendStatus.ACTIVE, FriendStatus.HALF) for f in relations):
        return False
    old = max(transferred, key=lambda f: f.version)
    transfer_at = event_time(old.version)
    candidates = session.execute(
        select(Staff, WeComFriend)
        .join(WeComFriend, WeComFriend.staff_id == Staff.id)
        .where(
            WeComFriend.corp_id == corp_id,
            WeComFriend.customer_id == customer_id,
            WeComFriend.staff_id != handed_over_by,
            WeComFriend.added_at >= transfer_at - TRANSFER_WINDOW,
            WeComFriend.added_at <= transfer_at + TRANSFER_WINDOW,
        )
        .order_by(WeComFriend.added_at.desc(), WeComFriend.id.desc())
    ).all()
    found = next(((s, f) for s, f in candidates if advisor_role(s) == holder.role), None)
    if found is None or holder.staff_id not in (handed_over_by, found[0].id):
        return False  # no takeover yet, or the role is someone else's (assigned since)
    takeover, relation = found
    moved = holder.staff_id == handed_over_by
    from_store = handed_over.org_unit_id if handed_over else None
    moved_to = None
    if moved:
        holder.staff_id = takeover.id
        holder.assigned_at = utcnow()
        moved_to = follow_advisor_store(session, customer_id, from_store, takeover)
    record(
        session,
        customer_id=customer_id,
        kind=Kind.ADVISOR_ASSIGNED,
        channel=Channel.WECOM,
        source=SOURCE,
        source_ref=f"wecom:transfer:{old.id}:{old.version}:{Kind.ADVISOR_ASSIGNED.value}",
        occurred_at=relation.added_at or transfer_at,
        advisor_id=takeover.id,
        store_id=takeover.org_unit_id,
        payload={
            "transfer": "wecom_console",
            "role": holder.role,
            "from_staff_id": handed_over_by,
            "handover_userid": old.userid,
            "takeover_userid": relation.userid,
            "external_userid": relation.external_userid,
        }
        | ({"home_store_moved": {"from": from_store, "to": moved_to}} if moved_to is not None else {}),
    )
    return moved


def follow_advisor_store(session: Session, customer_id: int, from_store_id: int | None, takeover: Staff) -> int | None:
    """A customer handed from an advisor of their home store to an advisor of another store now
    belongs to that store: its manager follows them up (the customer scope is by home store),
    the old store's no longer has an advisor for them. Returns the new home store, if it moved."""
    customer = session.get(Customer, customer_id)
    if (
        customer is None
        or from_store_id is None
        or customer.home_store_id != from_store_id
        or takeover.org_unit_id == from_store_id
    ):
        return None
    unit = session.get(OrgUnit, takeover.org_unit_id)
    if unit is None or unit.kind != OrgKind.STORE:
        return None
    customer.home_store_id = unit.id
    return unit.id


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
    friend, created = insert_or_lock(
        session,
        WeComFriend(
            corp_id=corp_id,
            userid=userid,
            external_userid=external_userid,
            customer_id=customer.id,
            staff_id=staff.id if staff else None,
            status=initial_status,
            version=0,
        ),
        WeComFriend.corp_id == corp_id,
        WeComFriend.userid == userid,
        WeComFriend.external_userid == external_userid,
    )
    if staff is not None and friend.staff_id is None:
        friend.staff_id = staff.id
    return friend, created


def deleted_tag_ids(session: Session, corp_id: str, tag_ids: list[str]) -> set[str]:
    """Those of these tags the library knows as deleted in WeCom."""
    return set(
        session.scalars(
            select(WeComTag.tag_id).where(
                WeComTag.corp_id == corp_id, WeComTag.tag_id.in_(tag_ids), WeComTag.deleted.is_(True)
            )
        )
    )


def friend_tag_ids(session: Session, friend_id: int) -> set[str]:
    return set(session.scalars(select(WeComFriendTag.tag_id).where(WeComFriendTag.friend_id == friend_id)))


def set_friend_tags(
    session: Session,
    friend: WeComFriend,
    wanted: set[str],
    ref: str,
    occurred_at: datetime,
    *,
    source: str = SOURCE,
    actor_staff_id: int | None = None,
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
                source=source,
                source_ref=f"wecom:{ref}:{kind.value}:{friend.id}:{tag_id}",
                occurred_at=occurred_at,
                advisor_id=friend.staff_id,
                store_id=advisor_store(session, friend),
                payload={"tag_id": tag_id, "userid": friend.userid}
                | ({"by_staff_id": actor_staff_id} if actor_staff_id else {}),
            )
    return added, removed


def apply_follow(
    session: Session, friend: WeComFriend, follow: dict[str, Any] | None, ref: str, occurred_at: datetime
) -> None:
    """Remark, description, remark mobiles and tags from `follow_user[]` of externalcontact/get."""
    if follow is None:
        return
    phone_vault = vault()
    friend.remark_encrypted = _sealed(phone_vault, follow.get("remark"), 128)
    friend.description_encrypted = _sealed(phone_vault, follow.get("description"), 255)
    set_friend_mobiles(session, friend, list(follow.get("remark_mobiles") or []), phone_vault)
    if friend.add_way is None and follow.get("add_way") is not None:
        friend.add_way = int(follow["add_way"])
    # type 1: corporate tags; 3: rule-group tags (规则组标签); 2: the advisor's own tags, which
    # carry no tag_id and are not the corp's. Type 3 is not on the get page we found (it lists
    # 1 and 2): it is how SDKs quoting the current page name rule-group tags.
    tags = follow.get("tags") or []
    wanted = {t["tag_id"] for t in tags if t.get("tag_id") and t.get("type", 1) == 1}
    wanted |= learn_strategy_tags(
        session, friend.corp_id, [t for t in tags if t.get("tag_id") and t.get("type") == STRATEGY_TAG_TYPE]
    )
    set_friend_tags(session, friend, wanted, ref, occurred_at)


def _sealed(phone_vault: PhoneVault, text: object, limit: int) -> bytes | None:
    value = str(text or "")[:limit]
    return phone_vault.encrypt(value) if value else None


def friend_notes(friend: WeComFriend, phone_vault: PhoneVault | None = None) -> dict[str, str | None]:
    """The relation's remark and description as the advisor typed them in WeCom."""
    opened = phone_vault or vault()
    return {
        "remark": opened.decrypt(friend.remark_encrypted) if friend.remark_encrypted else None,
        "description": opened.decrypt(friend.description_encrypted) if friend.description_encrypted else None,
    }


def relations_view(session: Session, customer_id: int) -> list[dict[str, Any]]:
    """The customer's WeCom relations for the customer 360: each advisor's, with what they
    noted in WeCom (remark, description, numbers: phone numbers masked) and the corporate tags
    by name."""
    phone_vault = vault()
    friends = session.scalars(
        select(WeComFriend).where(WeComFriend.customer_id == customer_id).order_by(WeComFriend.id)
    ).all()
    if not friends:
        return []
    ids = [f.id for f in friends]
    names = dict(session.execute(select(Staff.id, Staff.name).where(Staff.id.in_({f.staff_id for f in friends}))).all())
    tags: dict[int, list[dict[str, Any]]] = {}
    for friend_id, tag_id, tag_name, group_name in session.execute(
        select(WeComFriendTag.friend_id, WeComFriendTag.tag_id, WeComTag.name, WeComTag.group_name)
        .join(WeComFriend, WeComFriend.id == WeComFriendTag.friend_id)
        .outerjoin(WeComTag, (WeComTag.corp_id == WeComFriend.corp_id) & (WeComTag.tag_id == WeComFriendTag.tag_id))
        .where(WeComFriendTag.friend_id.in_(ids))
        .order_by(WeComFriendTag.friend_id, WeComTag.group_order.desc(), WeComTag.sort_order.desc())
    ):
        tags.setdefault(friend_id, []).append({"tag_id": tag_id, "name": tag_name, "group_name": group_name})
    mobiles: dict[int, list[str]] = {}
    for friend_id, encrypted in session.execute(
        select(WeComFriendMobile.friend_id, WeComFriendMobile.phone_encrypted)
        .where(WeComFriendMobile.friend_id.in_(ids))
        .order_by(WeComFriendMobile.id)
    ):
        mobiles.setdefault(friend_id, []).append(mask_phone(phone_vault.decrypt(encrypted)))
    return [
        {
            "corp_id": f.corp_id,
            "userid": f.userid,
            "advisor_id": f.staff_id,
            "advisor_name": names.get(f.staff_id),
            "status": f.status.value,
            "added_at": f.added_at,
            "lost_at": f.lost_at,
            "channel_id": f.channel_id,
            # Shown masked: the full numbers are for the audited reveal, not for every viewer.
            **{k: mask_phones(v) if v else v for k, v in friend_notes(f, phone_vault).items()},
            "remark_mobiles": mobiles.get(f.id, []),
            "tags": tags.get(f.id, []),
        }
        for f in friends
    ]


def set_friend_mobiles(session: Session, friend: WeComFriend, mobiles: list[str], phone_vault: PhoneVault) -> None:
    """Make the relation's noted numbers exactly `mobiles` (WeCom is authoritative), stored
    encrypted. Mainland mobiles are kept normalised, with their blind index; anything else an
    advisor typed (a landline, a Hong Kong number) is kept as typed, without one. Runs under the
    relation's row lock (`lock_friend`), so two events never write the same set at once."""
    wanted: dict[str, str | None] = {}  # number -> blind index, each number once
    for raw in mobiles:
        if typed := str(raw or "").strip()[:64]:
            number, index = phone_vault.noted(typed)
            wanted.setdefault(number, index)
    for row in session.scalars(select(WeComFriendMobile).where(WeComFriendMobile.friend_id == friend.id)):
        number = phone_vault.decrypt(row.phone_encrypted)
        if number in wanted:
            del wanted[number]  # already stored
        else:
            session.delete(row)
    for number, index in wanted.items():
        session.add(
            WeComFriendMobile(friend_id=friend.id, phone_encrypted=phone_vault.encrypt(number), phone_index=index)
        )
    session.flush()


def customers_noted_with_phone(session: Session, phone_index: str) -> list[int]:
    """Customers on whose WeCom contact an advisor noted this number (any relation, any status:
    a lost friend's note still says whose number it is). The caller scopes them."""
    return list(
        session.scalars(
            select(WeComFriend.customer_id)
            .join(WeComFriendMobile, WeComFriendMobile.friend_id == WeComFriend.id)
            .where(WeComFriendMobile.phone_index == phone_index)
            .distinct()
        )
    )


def advisor_store(session: Session, friend: WeComFriend) -> int | None:
    """The store of the relation's advisor: where the relation's touchpoints count."""
    staff = session.get(Staff, friend.staff_id) if friend.staff_id is not None else None
    return staff.org_unit_id if staff else None


def touch(
    session: Session, friend: WeComFriend, kind: Kind, ref: str, occurred_at: datetime, payload: dict | None = None
) -> None:
    record(
        session,
        customer_id=friend.customer_id,
        kind=kind,
        channel=Channel.WECOM,
        source=SOURCE,
        source_ref=f"wecom:{ref}:{kind.value}",
        occurred_at=occurred_at,
        advisor_id=friend.staff_id,
        store_id=advisor_store(session, friend),
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
    applied first, even when a still later loss was applied too) is born resolved — it stays
    in the history, not on the lost list."""
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
    came_back = friend.status in (FriendStatus.ACTIVE, FriendStatus.HALF) or (
        friend.added_at is not None and friend.added_at > occurred_at  # re-added since, lost again since
    )
    if kind != AlertKind.TRANSFER_FAILED and came_back:
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
    managers = managers_of_store(session, staff.org_unit_id) if staff else []
    key = f"alert:{alert.id}"
    if kind == AlertKind.TRANSFER_FAILED:
        text = f"客户「{name}」转接失败（{(detail or {}).get('reason', '')}），请处理。"
        sent = notify.notify_staff(session, notify.NotifyKind.HANDOVER_FAILED, key, managers, text=text)
    else:
        who = "客户删除了顾问" if kind == AlertKind.DELETED_BY_CUSTOMER else "顾问删除了客户"
        text = f"流失提醒：客户「{name}」与顾问 {staff.name if staff else friend.userid} 的好友关系已解除（{who}）。"
        if staff is None:  # an advisor not in our directory (yet): WeCom knows them in this corp
            sent = notify.notify(session, raw.corp_id, notify.NotifyKind.LOST_CUSTOMER, key, [friend.userid], text=text)
        else:  # one message per person: a manager at their rate limit holds back no one else's
            people = [staff, *managers]
            sent = notify.notify_staff(session, notify.NotifyKind.LOST_CUSTOMER, key, people, text=text)
    if not sent:
        log.warning("alert %s (%s): nobody to tell", alert.id, kind.value)
    return alert


def move_alert(
    session: Session, raw: WeComRawEvent, friend: WeComFriend, kind: AlertKind, occurred_at: datetime, at: datetime
) -> None:
    """The episode's lost-customer alert, raised for its loss at `at`, is for this earlier loss
    (processed later): it says what happened first, as in order, and so does its touchpoint.
    No second message is sent."""
    alert = session.scalars(
        select(WeComAlert).where(
            WeComAlert.friend_id == friend.id,
            WeComAlert.kind.in_([AlertKind.DELETED_BY_CUSTOMER, AlertKind.DELETED_BY_ADVISOR]),
            WeComAlert.occurred_at == at,
        )
    ).first()
    if alert is None:
        return
    alert.raw_event_id, alert.kind, alert.occurred_at = raw.id, kind, occurred_at
    moved = session.execute(
        update(Touchpoint)
        .where(Touchpoint.source_ref == f"wecom:alert:{alert.id}:{Kind.LOST_CUSTOMER_ALERTED.value}")
        .values(
            occurred_at=occurred_at,
            payload={"userid": friend.userid, "external_userid": friend.external_userid, "alert": kind.value},
        )
    )
    if moved.rowcount:
        rebuild_profiles(session, [friend.customer_id])  # the timeline's times changed


def deliver_app_message(session: Session, message_id: int) -> None:
    """Send a recorded app message (rate limit per recipient, retries, recipient rows: notify.py)."""
    from backend.wecom.notify import deliver

    deliver(session, message_id)


# ---------------------------------------------------------------------------------------------
# Tag library


def lock_sync(session: Session, corp_id: str, subject: str) -> WeComSyncState:
    """Queue behind any other sync of `subject` for this corp (held until commit): call before
    reading WeCom, so that the copy written last is the copy read last."""
    state, _ = insert_or_lock(
        session,
        WeComSyncState(corp_id=corp_id, subject=subject),
        WeComSyncState.corp_id == corp_id,
        WeComSyncState.subject == subject,
    )
    return state


# A sync stands down for a change only if it began reading WeCom this long after the change's
# callback arrived here (our app servers' clocks may differ by a little).
SYNC_CLOCK_MARGIN = timedelta(seconds=2)


@dataclass(frozen=True)
class TagLibrary:
    """One of a corp's two tag libraries: where WeCom lists it and which rows of `wecom_tag`
    it is."""

    kind: TagKind
    subject: str  # wecom_sync_state: each library has its own sync lock and last read
    endpoint: str


CORP_TAGS = TagLibrary(TagKind.CORP, "tags", "externalcontact/get_corp_tag_list")
# Read without `strategy_id` (optional, doc 94882): every rule group's tags WeCom lists to the
# app in one call, each group naming its `strategy_id`.
STRATEGY_TAGS = TagLibrary(TagKind.STRATEGY, "strategy_tags", "externalcontact/get_strategy_tag_list")


def sync_tag_libraries(session: Session, corp_id: str, gateway: WeComGateway) -> None:
    """Both of a corp's tag libraries (the nightly job and an admin's sync)."""
    for library in (CORP_TAGS, STRATEGY_TAGS):
        sync_tag_library(session, corp_id, gateway, library=library)


def sync_tag_library(
    session: Session,
    corp_id: str,
    gateway: WeComGateway,
    changed_before: datetime | None = None,
    library: TagLibrary = CORP_TAGS,
) -> int | None:
    """Bring the library's rows of `wecom_tag` in line with WeCom's list of it. A tag WeCom no
    longer has (or lists as deleted) stays in the library marked deleted (touchpoints name it),
    and leaves every relation that carried it: WeCom removed it from those customers and sends
    no edit event per customer. Returns how many tags WeCom listed.

    Rule-group tags WeCom does not list to this app (made in the admin console) are not judged
    by their absence: only a tag listed before and listed no more is gone.

    `changed_before`: the sync is for a change WeCom told us of by then (a change_external_tag
    callback). If a sync began reading WeCom after that, it saw the change: nothing to do
    (None) — a burst of tag events costs one read, not one each."""
    state = lock_sync(session, corp_id, library.subject)
    if changed_before is not None and state.fetched_at and state.fetched_at >= changed_before + SYNC_CLOCK_MARGIN:
        return None
    state.fetched_at = utcnow()
    result = gateway.post(library.endpoint, {})
    # Every row of the corp: a tag id is one in a corp whichever library first named it.
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
                "group_order": int(group.get("order") or 0),
                "name": str(tag.get("name", ""))[:64],
                "sort_order": int(tag.get("order") or 0),
                "deleted": bool(tag.get("deleted")) or bool(group.get("deleted")),
                "kind": library.kind,
                "strategy_id": _rule_group_of(group) if library.kind == TagKind.STRATEGY else None,
                "listed": True,
            }
            row = existing.get(tag_id)
            if row is None:
                # Not the only writer of new rows: an edit or a rule-group event learning a
                # rule-group tag makes its row without this sync's lock (`_ensure_strategy_tag`;
                # the two libraries' locks differ anyway). Insert, or take over the row it made.
                row, created = insert_or_lock(
                    session,
                    WeComTag(corp_id=corp_id, tag_id=tag_id, synced_at=now, **values),
                    WeComTag.corp_id == corp_id,
                    WeComTag.tag_id == tag_id,
                )
                existing[tag_id] = row
                if created:
                    continue
            if any(getattr(row, key) != value for key, value in values.items()):
                for key, value in values.items():
                    setattr(row, key, value)
                row.synced_at = now  # when the row last changed: unchanged rows are not rewritten
    mine = {tag_id: row for tag_id, row in existing.items() if row.kind == library.kind}
    for tag_id, row in mine.items():
        if tag_id not in seen and row.listed and not row.deleted:
            row.deleted = True
            row.synced_at = now
    session.flush()
    gone = {tag_id for tag_id, row in mine.items() if row.deleted}
    if library.kind == TagKind.CORP:
        # Tags relations carry that the library never knew (an edit brought them before a sync
        # did) and WeCom no longer lists: deleted there too. Only those carried since before this
        # read of WeCom's list: a tag created after it may be on a relation already. (Rule-group
        # tags a relation carries are in the library from the moment it carries them.)
        gone |= set(
            session.scalars(
                select(WeComFriendTag.tag_id)
                .join(WeComFriend, WeComFriend.id == WeComFriendTag.friend_id)
                .where(
                    WeComFriend.corp_id == corp_id,
                    WeComFriendTag.tag_id.not_in(sorted(seen | set(existing))),
                    WeComFriendTag.created_at < state.fetched_at,
                )
                .distinct()
            )
        )
    if gone:
        _drop_deleted_tags(session, corp_id, gone, now)
    return len(seen)


def _rule_group_of(group: dict[str, Any]) -> int | None:
    """A listed tag group's `strategy_id` (an integer in the doc's example), None if missing."""
    try:
        return int(group.get("strategy_id")) or None
    except (TypeError, ValueError):
        return None


def apply_strategy_tag_event(
    session: Session,
    gateway: WeComGateway,
    strategy_id: int,
    item_id: str,
    item_type: str,
    change_type: str,
    at: datetime,
) -> None:
    """What a change_external_tag of a rule group (`StrategyId`) says of tags WeCom does not
    list to this app (the re-read of the listed ones is `sync_tag_library`): they belong to
    that rule group, and a `delete` deletes the tag (TagType tag) or every tag known in the
    group (TagType tag_group) and takes it off the relations carrying it.

    A tag the library does not know yet is kept by id (no name: it is not listed until a
    customer carrying it names it), so that what the event said holds whichever comes first,
    the event or the customer: a deletion is final in WeCom (ids are not reused), and a
    customer's tags never bring back a tag known deleted (`apply_follow`). Touchpoints are
    keyed by relation and tag: applying an event again ends the same. An `update` of such a
    tag (renamed in the console) reads its names again from a customer carrying it."""
    if not item_id or item_type not in ("tag", "tag_group"):
        return
    corp_id = gateway.corp_id
    deleting = change_type == "delete"
    if item_type == "tag":
        _ensure_strategy_tag(session, corp_id, item_id[:64], strategy_id, deleted=deleting, exclusive=True)
    column = WeComTag.tag_id if item_type == "tag" else WeComTag.group_id
    rows = list(
        session.scalars(
            select(WeComTag)
            .where(WeComTag.corp_id == corp_id, column == item_id, WeComTag.kind == TagKind.STRATEGY)
            .order_by(WeComTag.id)
            .with_for_update()
        )
    )
    now = utcnow()
    for row in rows:
        if row.strategy_id is None:
            row.strategy_id = strategy_id
        if deleting and not row.deleted:
            row.deleted = True
            row.synced_at = now
    if deleting and rows:
        _drop_deleted_tags(session, corp_id, {row.tag_id for row in rows}, at)
    if change_type == "update":
        for row in rows:
            if not row.listed and not row.deleted:
                _rename_from_a_carrier(session, gateway, row)


def _rename_from_a_carrier(session: Session, gateway: WeComGateway, row: WeComTag) -> None:
    """A tag WeCom does not list to us takes the names a customer carrying it shows now
    (externalcontact/get of one relation carrying it): WeCom's current state, so a late or
    repeated update ends the same. No relation carries it: its names come with the next one."""
    carrier = session.execute(
        select(WeComFriend.userid, WeComFriend.external_userid)
        .join(WeComFriendTag, WeComFriendTag.friend_id == WeComFriend.id)
        .where(
            WeComFriendTag.tag_id == row.tag_id,
            WeComFriend.corp_id == row.corp_id,
            WeComFriend.status.in_([FriendStatus.ACTIVE, FriendStatus.HALF]),
        )
        .order_by(WeComFriend.id)
        .limit(1)
    ).first()
    if carrier is None:
        return
    follow = follow_of(fetch_contact(gateway, carrier.external_userid), carrier.userid)
    for tag in (follow or {}).get("tags") or []:
        if tag.get("tag_id") == row.tag_id and tag.get("type") == STRATEGY_TAG_TYPE:
            learn_strategy_tags(session, row.corp_id, [tag])


def _ensure_strategy_tag(
    session: Session,
    corp_id: str,
    tag_id: str,
    strategy_id: int | None,
    *,
    deleted: bool = False,
    exclusive: bool = False,
    **names: str,
) -> WeComTag | None:
    """The library's row of a rule-group tag, made (unlisted) if none, held until commit: None
    when the library knows the id as a corporate tag. A tag learned at once by two events is
    made once (the unique key); the other reads it.

    Held `exclusive` by a rule-group event, which writes it; else shared: a customer's edit
    reading it waits for an event deleting it (or a sync writing it) to commit, and then reads
    it deleted, while edits of customers carrying the same tag go on side by side."""
    new = WeComTag(
        corp_id=corp_id,
        tag_id=tag_id,
        group_id="",
        group_name=names.get("group_name", ""),
        name=names.get("name", ""),
        kind=TagKind.STRATEGY,
        strategy_id=strategy_id,
        listed=False,
        deleted=deleted,
    )
    key = (WeComTag.corp_id == corp_id, WeComTag.tag_id == tag_id)
    if exclusive:
        row, _ = insert_or_lock(session, new, *key)
    else:
        shared = select(WeComTag).where(*key).with_for_update(read=True).execution_options(populate_existing=True)
        row = session.scalars(shared).one_or_none()
        if row is None:
            try:
                with unique_savepoint(session):
                    session.add(new)
                row = new
            except DuplicateKey:
                row = session.scalars(shared).one()
    return row if row.kind == TagKind.STRATEGY else None


def learn_strategy_tags(session: Session, corp_id: str, tags: list[dict[str, Any]]) -> set[str]:
    """Rule-group tags (type 3) a customer carries in `follow_user[].tags`, into the library:
    WeCom lists the app only the rule-group tags it created, so one made in the admin console
    is first seen here (with its name and its group's name; not its group id or rule group).
    A tag the library lists keeps the list's names; one only learned takes WeCom's current
    names. Returns the ids the relation may carry: not those known deleted (a deletion is
    final; this read of WeCom may predate it). Each row is read under a shared lock, so a
    deletion being committed meanwhile is waited for and seen (`_ensure_strategy_tag`).

    Renaming a learned tag takes its row's exclusive lock over the shared one: two edits doing
    so at once may deadlock, and MariaDB's choice of victim is retried by the outbox (its retry
    finds the names current and writes nothing)."""
    usable: set[str] = set()
    # In id order: two events learning the same tags lock their rows in the same order.
    for tag in sorted(tags, key=lambda t: str(t["tag_id"])):
        names = {"name": str(tag.get("tag_name") or "")[:64], "group_name": str(tag.get("group_name") or "")[:64]}
        row = _ensure_strategy_tag(session, corp_id, str(tag["tag_id"])[:64], None, **names)
        if row is None or row.deleted:
            continue
        usable.add(row.tag_id)
        if not row.listed and any(getattr(row, key) != value for key, value in names.items()):
            for key, value in names.items():
                setattr(row, key, value)
            row.synced_at = utcnow()
    return usable


def _drop_deleted_tags(session: Session, corp_id: str, tag_ids: set[str], at: datetime) -> None:
    """Take tags WeCom deleted off the relations still carrying them, each with its tag_removed
    touchpoint (keyed by relation and tag: a later sync finds nothing left to do)."""
    carried = session.execute(
        select(WeComFriendTag.tag_id, WeComFriend)
        .join(WeComFriend, WeComFriend.id == WeComFriendTag.friend_id)
        .where(WeComFriendTag.tag_id.in_(sorted(tag_ids)), WeComFriend.corp_id == corp_id)
        .order_by(WeComFriendTag.friend_id, WeComFriendTag.tag_id)
    ).all()
    for tag_id, friend in carried:
        session.execute(
            delete(WeComFriendTag).where(WeComFriendTag.friend_id == friend.id, WeComFriendTag.tag_id == tag_id)
        )
        touch(
            session,
            friend,
            Kind.TAG_REMOVED,
            f"tag_deleted:{tag_id}:{friend.id}",
            at,
            {"tag_id": tag_id, "reason": "deleted_in_wecom"},
        )


def current_corp_id() -> str:
    return current_app.extensions["dealerloop.gateways"].wecom.corp_id


def actor_corp_id(session: Session, actor: StaffActor) -> str:
    """The corp the actor works in: their own (`Staff.corp_id`). Userids, tag ids and contact
    ways are a corp's own, so a manager of a second corp's app acts in that corp; a group admin
    of the primary corp stays in the primary one."""
    me = session.get(Staff, actor.staff_id)
    return me.corp_id if me is not None else current_corp_id()


# ---------------------------------------------------------------------------------------------
# Channel facts (statistics) and daily add caps

CHINA_TZ = timezone(timedelta(hours=8))


def china_day(at: datetime) -> date:
    return at.astimezone(CHINA_TZ).date()


def record_channel_add(
    session: Session, friend: WeComFriend, channel_id: int | None, ref: str, at: datetime
) -> list[WeComChannelFact] | None:
    """Record an add of the relation (once per event) and recount its facts. Returns the other
    adds recorded for the same episode (the customer a friend all along between them: an
    add_half then its add, or the nightly reconciliation's recovery of the add, then the add's
    own late event), None for an event recorded before. The caller holds the relation's row lock."""
    return _record_in_episode(session, friend, ChannelFactKind.ADDED, channel_id, ref, at)


def record_channel_loss(session: Session, friend: WeComFriend, ref: str, at: datetime) -> list[WeComChannelFact] | None:
    """Record a loss of the relation (once per event) and recount its facts. Returns the other
    losses recorded for the same episode (from the add that made the customer a friend to the
    next such add) — empty for the episode's first, which raises the lost-customer alert — or
    None for an event recorded before. An advisor removing a customer who had already deleted
    them (a one-way contact), processed in either order, is one loss of the customer. Closings
    by the nightly reconciliation are left out: they raise no alert, so the loss's own event,
    if it comes later, still does."""
    others = _record_in_episode(session, friend, ChannelFactKind.LOST, None, ref, at)
    return None if others is None else [other for other in others if not is_reconciled(other)]


def _record_in_episode(
    session: Session, friend: WeComFriend, kind: ChannelFactKind, channel_id: int | None, ref: str, at: datetime
) -> list[WeComChannelFact] | None:
    fact = _record_fact(session, friend, kind, channel_id, ref, at)
    if fact is None:
        return None
    episodes = recount_facts(session, friend.id)
    mine = next(episode for other, episode in episodes if other is fact)
    return [other for other, episode in episodes if other.kind == kind and other is not fact and episode == mine]


def is_reconciled(fact: WeComChannelFact) -> bool:
    return fact.source_ref.startswith(RECONCILED_FACT)


RECONCILED_FACT = "wecom:reconcile:"  # the source_ref prefix of the facts the reconciliation records


def drop_reconciled_losses(session: Session, friend: WeComFriend) -> None:
    """Forget the losses the nightly reconciliation recorded for this relation (a closure it
    made by mistake: WeCom lists the same add again) and recount its facts."""
    session.execute(
        delete(WeComChannelFact).where(
            WeComChannelFact.friend_id == friend.id,
            WeComChannelFact.kind == ChannelFactKind.LOST,
            WeComChannelFact.source_ref.startswith(f"{RECONCILED_FACT}{friend.id}:closed:"),
        )
    )
    recount_facts(session, friend.id)


def _record_fact(
    session: Session, friend: WeComFriend, kind: ChannelFactKind, channel_id: int | None, ref: str, at: datetime
) -> WeComChannelFact | None:
    fact = WeComChannelFact(
        source_ref=f"wecom:{ref}:{kind.value}"[:191],
        friend_id=friend.id,
        channel_id=channel_id,
        userid=friend.userid,
        kind=kind,
        day=china_day(at),
        occurred_at=at,
    )
    try:
        with unique_savepoint(session):
            session.add(fact)
    except DuplicateKey:
        return None
    return fact


def recount_facts(session: Session, friend_id: int) -> list[tuple[WeComChannelFact, int]]:
    """Walk the relation's facts in event time: an add counts when the customer was not a friend
    just before it (it opens an episode), a loss counts when they were (it closes one), and a
    loss belongs to the channel of its episode's add. History before the first fact is unknown:
    a first add or a first loss counts. Returns the facts with their episode numbers (a loss
    before any add is in episode 0). A relation has a handful of facts; the caller holds its row lock."""
    facts = session.scalars(
        select(WeComChannelFact)
        .where(WeComChannelFact.friend_id == friend_id)
        .order_by(WeComChannelFact.occurred_at, WeComChannelFact.id)
    ).all()
    is_friend: bool | None = None  # unknown before the first fact
    episode, channel_id = 0, None
    episodes: list[tuple[WeComChannelFact, int]] = []
    for fact in facts:
        if fact.kind == ChannelFactKind.ADDED:
            fact.counted = is_friend is not True
            if fact.counted:
                episode, channel_id = episode + 1, fact.channel_id
            is_friend = True
        else:
            fact.counted = is_friend is not False
            fact.channel_id = channel_id
            is_friend = False
        episodes.append((fact, episode))
    session.flush()
    return episodes


def channel_stats(session: Session, channel: WeComChannel, date_from: date, date_to: date) -> list[dict[str, Any]]:
    """New friends, lost friends and net per China day, every day of the range (zeros included)."""
    rows = session.execute(
        select(WeComChannelFact.day, WeComChannelFact.kind, func.count())
        .where(
            WeComChannelFact.channel_id == channel.id,
            WeComChannelFact.counted.is_(True),
            WeComChannelFact.day >= date_from,
            WeComChannelFact.day <= date_to,
        )
        .group_by(WeComChannelFact.day, WeComChannelFact.kind)
    ).all()
    counts = {(day, ChannelFactKind(kind)): n for day, kind, n in rows}
    out = []
    day = date_from
    while day <= date_to:
        added = counts.get((day, ChannelFactKind.ADDED), 0)
        lost = counts.get((day, ChannelFactKind.LOST), 0)
        out.append({"day": day, "added": added, "lost": lost, "net": added - lost})
        day += timedelta(days=1)
    return out


def adds_today(session: Session, channel: WeComChannel, now: datetime | None = None) -> dict[str, int]:
    """New customers per advisor (casefolded userid) on this channel today, for the daily cap:
    customers, not adds — one who removes the advisor and scans again the same day has taken
    one place, not two."""
    rows = session.execute(
        select(WeComChannelFact.userid, func.count(distinct(WeComChannelFact.friend_id)))
        .where(
            WeComChannelFact.channel_id == channel.id,
            WeComChannelFact.kind == ChannelFactKind.ADDED,
            WeComChannelFact.counted.is_(True),
            WeComChannelFact.day == china_day(now or utcnow()),
        )
        .group_by(WeComChannelFact.userid)
    ).all()
    counts: dict[str, int] = {}  # by casefold: the events' spelling of a userid may differ in case
    for userid, n in rows:
        counts[userid.casefold()] = counts.get(userid.casefold(), 0) + n
    return counts


def active_members(session: Session, userids: list[str]) -> set[tuple[str, str]]:
    """(corp, casefolded userid) of the active staff among these userids. WeCom userids are
    case-insensitive: a channel's list, the directory's spelling and the events' may differ in
    case (the database's collation already ignores it)."""
    if not userids:
        return set()
    return {
        (corp_id, userid.casefold())
        for corp_id, userid in session.execute(
            select(Staff.corp_id, Staff.wecom_userid).where(
                Staff.wecom_userid.in_(sorted(set(userids))), Staff.status == StaffStatus.ACTIVE
            )
        )
    }


def users_for_today(session: Session, channel: WeComChannel, now: datetime | None = None) -> list[str]:
    """The contact way's user list for now: the advisors under today's cap; when every advisor
    is at the cap, the fallback advisors. Advisors who have left (or are no longer WeCom members
    of the corp) are skipped: WeCom refuses a list naming them (60111). Never an empty list:
    WeCom requires a user."""
    members = active_members(session, [*channel.userids, *channel.fallback_userids])

    def active(userid: str) -> bool:
        return (channel.corp_id, userid.casefold()) in members

    if channel.daily_cap is None:
        return [u for u in channel.userids if active(u)] or list(channel.userids)
    counts = adds_today(session, channel, now)
    under = [u for u in channel.userids if active(u) and counts.get(u.casefold(), 0) < channel.daily_cap]
    if under:
        return under
    fallbacks = [u for u in channel.fallback_userids if active(u)]
    return fallbacks or [u for u in channel.userids if active(u)] or list(channel.userids)


def contact_way_body(channel: WeComChannel, users: list[str]) -> dict[str, Any]:
    """What add/update_contact_way set from the channel (its config_id aside)."""
    return {
        "remark": channel.name[:30],
        "skip_verify": channel.skip_verify,
        "state": channel.state,
        "user": list(users),
    }


def rebalance_channel(
    session: Session, channel_id: int, now: datetime | None = None, resend: bool = False
) -> list[str] | None:
    """Apply today's user list to the contact way in WeCom when it differs from what it has.
    Returns the new list, or None when nothing had to change.

    `resend`: an update whose answer was lost may have been applied by WeCom all the same
    (`admin.update_channel`): the whole contact way is set again from what the channel holds."""
    channel = session.get(WeComChannel, channel_id, with_for_update=True)
    if channel is None or not channel.active or not channel.config_id:
        return None
    wanted = users_for_today(session, channel, now)
    if not any(corp == channel.corp_id for corp, _ in active_members(session, wanted)):
        # Everyone on it has left: WeCom would refuse the list (60111) at every pass. The QR
        # code stays as it is until a manager names an advisor.
        log.warning("wecom channel %s has no active advisor left; its contact way is left as it is", channel.id)
        return None
    if list(channel.applied_userids) == wanted and not resend:
        return None
    body = contact_way_body(channel, wanted) if resend else {"user": wanted}
    gateway_for(channel.corp_id).post("externalcontact/update_contact_way", {"config_id": channel.config_id, **body})
    channel.applied_userids = wanted
    session.flush()
    log.info("wecom channel %s now routes to %s", channel.id, wanted)
    return wanted


def channels_to_rebalance(session: Session) -> list[int]:
    """The channels whose user list may change by itself: capped ones (a new day resets the
    counts), any routing to an advisor who is no longer active (left, or gone from WeCom: the
    QR code must stop routing customers to them, and WeCom refuses a list naming them), and
    any leaving out one of its advisors who is active again (back in WeCom: taken off by a
    pass like this one, so put back by one)."""
    channels = session.scalars(
        select(WeComChannel).where(WeComChannel.active.is_(True), WeComChannel.config_id.is_not(None))
    ).all()
    active = active_members(session, [u for c in channels for u in (*c.applied_userids, *c.userids)])

    def changes_by_itself(c: WeComChannel) -> bool:
        applied = {u.casefold() for u in c.applied_userids}
        return (
            c.daily_cap is not None
            or any((c.corp_id, u) not in active for u in applied)
            or any((c.corp_id, u.casefold()) in active and u.casefold() not in applied for u in c.userids)
        )

    return [c.id for c in channels if changes_by_itself(c)]


# ---------------------------------------------------------------------------------------------
# Customer group chats

CHAT_GONE = 40050  # "chatid not found": dismissed, or not a customer group of ours


def fetch_group_chat(gateway: WeComGateway, chat_id: str) -> dict[str, Any] | None:
    try:
        result = gateway.post("externalcontact/groupchat/get", {"chat_id": chat_id, "need_name": 1})
    except UpstreamError as exc:
        if exc.reason == "rejected" and exc.errcode == CHAT_GONE:
            return None
        raise
    return result.get("group_chat") or None


def lock_chat(session: Session, corp_id: str, chat_id: str) -> WeComGroupChat:
    chat, _ = insert_or_lock(
        session,
        WeComGroupChat(corp_id=corp_id, chat_id=chat_id, status=GroupChatStatus.ACTIVE, version=0),
        WeComGroupChat.corp_id == corp_id,
        WeComGroupChat.chat_id == chat_id,
    )
    return chat


def apply_chat_snapshot(session: Session, chat: WeComGroupChat, snapshot: dict[str, Any] | None, version: int) -> None:
    """Name, owner and notice from groupchat/get — the current state, applied by the newest event."""
    if snapshot is None or version < chat.version:
        return
    chat.name = (snapshot.get("name") or None) and str(snapshot["name"])[:128]
    chat.owner_userid = snapshot.get("owner") or None
    chat.notice = snapshot.get("notice") or None
    if snapshot.get("create_time"):
        chat.created_time = int(snapshot["create_time"])
    owner = staff_by_userid(session, chat.corp_id, chat.owner_userid or "")
    chat.owner_staff_id = owner.id if owner else None
    chat.version = version


def lock_member(session: Session, chat: WeComGroupChat, userid: str, info: dict[str, Any] | None) -> WeComGroupMember:
    staff = None
    if info is not None and info.get("type") in (1, 2):
        external = info["type"] == 2
    else:
        # Not on the roster (they left before we asked): a userid we know as staff is staff
        # ("wong.wei" starts like an external id); WeCom's external_userid prefixes decide only
        # for ids nobody knows.
        staff = staff_by_userid(session, chat.corp_id, userid)
        external = staff is None and userid.startswith(("wm", "wo"))
    member, _ = insert_or_lock(
        session,
        WeComGroupMember(chat_pk=chat.id, userid=userid, member_type=2 if external else 1, active=False, version=0),
        WeComGroupMember.chat_pk == chat.id,
        WeComGroupMember.userid == userid,
    )
    if info is not None and info.get("type") in (1, 2) and member.member_type != info["type"]:
        # First seen leaving (no roster entry), the kind was guessed; the roster says what it is.
        member.member_type = info["type"]
        member.customer_id = member.staff_id = None
    unionid = (info or {}).get("unionid")
    if member.member_type == 2 and (member.customer_id is None or unionid):
        # With a unionid, again for a member already known: a WeCom-only customer made when they
        # were first seen is stitched to the mini-program member that unionid belongs to.
        contact = {"name": (info or {}).get("name"), "unionid": unionid}
        member.customer_id = ensure_customer(session, userid, {"external_contact": contact}).id
    if member.member_type == 1 and member.staff_id is None:
        staff = staff or staff_by_userid(session, chat.corp_id, userid)
        member.staff_id = staff.id if staff else None
    return member


def _chat_touch(
    session: Session,
    chat: WeComGroupChat,
    member: WeComGroupMember,
    kind: Kind,
    source_ref: str,
    at: datetime,
    payload: dict[str, Any] | None = None,
) -> None:
    if member.customer_id is None:  # a corp member joining or leaving: no customer timeline
        return
    owner = session.get(Staff, chat.owner_staff_id) if chat.owner_staff_id else None
    record(
        session,
        customer_id=member.customer_id,
        kind=kind,
        channel=Channel.WECOM,
        source=SOURCE,
        source_ref=source_ref,
        occurred_at=at,
        advisor_id=chat.owner_staff_id,
        store_id=owner.org_unit_id if owner else None,
        payload={"chat_id": chat.chat_id, "chat_name": chat.name, "external_userid": member.userid, **(payload or {})},
    )


def dismissal_ref(chat: WeComGroupChat, userid: str) -> str:
    # The same ref whether the member's leave comes from the dismiss event or from a join that
    # was processed after it: the dismissal ends each membership once.
    return f"wecom:chat{chat.id}:dismissed:{Kind.GROUP_LEFT.value}:{userid}"


def member_joined(
    session: Session,
    chat: WeComGroupChat,
    userid: str,
    info: dict[str, Any] | None,
    version: int,
    ref: str,
    at: datetime,
    scene: int | None = None,
) -> WeComGroupMember:
    member = lock_member(session, chat, userid, info)
    # One join, one touchpoint. A member who joined in the chat's creation second is reported by
    # both the `create` and their own add_member: keyed by the join's time when the roster's
    # join is this event's (a later re-join shows a later time in the roster, read when the
    # event is processed, which may be long after).
    join_time = int((info or {}).get("join_time") or 0)
    joined_ref = f"wecom:chat{chat.id}:{userid}:joined:{join_time}" if join_time == version else f"wecom:{ref}"
    _chat_touch(
        session,
        chat,
        member,
        Kind.GROUP_JOINED,
        f"{joined_ref}:{Kind.GROUP_JOINED.value}:{userid}",
        at,
        {"join_scene": scene},
    )
    # A leave in the same second: the roster settles it (listed now, so the join came last).
    if version > member.version or (version == member.version and info is not None and not member.active):
        # Dismissed in the same second or later: a dismissal ranks above anything in its second.
        if chat.status == GroupChatStatus.DISMISSED and chat.version >= version:
            # joined, then the chat was dismissed (that event was processed first)
            member.active = False
            member.version = chat.version
            member.left_at = chat.dismissed_at
            _chat_touch(
                session,
                chat,
                member,
                Kind.GROUP_LEFT,
                dismissal_ref(chat, userid),
                chat.dismissed_at or at,
                {"reason": "dismissed"},
            )
        else:
            member.active = True
            member.version = version
            member.left_at = None
        if info is not None:
            member.join_time = int(info.get("join_time") or 0) or member.join_time
            member.join_scene = info.get("join_scene", member.join_scene)
    return member


def member_left(
    session: Session,
    chat: WeComGroupChat,
    userid: str,
    version: int,
    ref: str,
    at: datetime,
    scene: int | None = None,
    listed: bool | None = None,
) -> WeComGroupMember:
    """`listed`: whether the roster fetched with this event lists the member (None: unknown),
    which settles a join in the same second."""
    member = lock_member(session, chat, userid, None)
    _chat_touch(
        session,
        chat,
        member,
        Kind.GROUP_LEFT,
        f"wecom:{ref}:{Kind.GROUP_LEFT.value}:{userid}",
        at,
        {"quit_scene": scene},
    )
    if version > member.version or (version == member.version and listed is False and member.active):
        member.active = False
        member.version = version
        member.left_at = at
    return member


def dismiss_chat(session: Session, chat: WeComGroupChat, version: int, at: datetime) -> None:
    if version < chat.version:
        return
    chat.status = GroupChatStatus.DISMISSED
    chat.version = version
    chat.dismissed_at = at
    members = session.scalars(
        select(WeComGroupMember)
        # <=: a dismissal ranks above a join in its own second (nobody stays in a dismissed chat)
        .where(WeComGroupMember.chat_pk == chat.id, WeComGroupMember.version <= version)
        .with_for_update()
    ).all()
    for member in members:
        if member.active:
            _chat_touch(
                session, chat, member, Kind.GROUP_LEFT, dismissal_ref(chat, member.userid), at, {"reason": "dismissed"}
            )
        member.active = False
        member.version = version
        member.left_at = member.left_at or at


# ---------------------------------------------------------------------------------------------
# Tags marked from dealerloop (API actions produce no callback: we write the touchpoints)

WORKBENCH_SOURCE = "workbench"


def customer_friend(
    session: Session,
    corp_id: str,
    customer_id: int,
    actor_userid: str | None,
    userid: str | None,
    advisor_in_scope: Any = None,
) -> WeComFriend | None:
    """The friend relation to tag: the one named, else the actor's own, else the latest added;
    among the relations whose advisor meets `advisor_in_scope` (a condition on Staff)."""
    stmt = select(WeComFriend).where(
        WeComFriend.corp_id == corp_id,
        WeComFriend.customer_id == customer_id,
        WeComFriend.status.in_([FriendStatus.ACTIVE, FriendStatus.HALF]),
    )
    if advisor_in_scope is not None:
        stmt = stmt.outerjoin(Staff, Staff.id == WeComFriend.staff_id).where(advisor_in_scope)
    if userid:
        stmt = stmt.where(WeComFriend.userid == userid)
    friends = list(session.scalars(stmt.order_by(WeComFriend.added_at.desc(), WeComFriend.id.desc())))
    for friend in friends:
        if actor_userid and friend.userid == actor_userid:
            return friend
    return friends[0] if friends else None


def check_markable_tags(session: Session, corp_id: str, tag_ids: set[str], field: str) -> None:
    """422 unless every tag is a live tag of the corp's library that dealerloop can mark (not
    another app's rule-group tag), the refused ids under `field`."""
    if unknown := tag_ids - known_tag_ids(session, corp_id, tag_ids):
        raise AppError("wecom.tag_unknown", 422, errors={field: sorted(unknown)})
    if unmarkable := unlisted_tag_ids(session, corp_id, tag_ids):
        raise AppError("wecom.tag_not_markable", 422, errors={field: sorted(unmarkable)})


def unlisted_tag_ids(session: Session, corp_id: str, tag_ids: set[str]) -> set[str]:
    """Those of these tags that are rule-group tags WeCom does not list to this app: made by
    someone else (the admin console), so mark_tag refuses them ("规则组必须由同一个应用创建",
    doc 92697) and dealerloop does not offer them."""
    if not tag_ids:
        return set()
    return set(
        session.scalars(
            select(WeComTag.tag_id).where(
                WeComTag.corp_id == corp_id, WeComTag.tag_id.in_(sorted(tag_ids)), WeComTag.listed.is_(False)
            )
        )
    )


def known_tag_ids(session: Session, corp_id: str, tag_ids: set[str]) -> set[str]:
    if not tag_ids:
        return set()
    return set(
        session.scalars(
            select(WeComTag.tag_id).where(
                WeComTag.corp_id == corp_id, WeComTag.tag_id.in_(sorted(tag_ids)), WeComTag.deleted.is_(False)
            )
        )
    )
