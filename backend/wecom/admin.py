"""Admin side of the WeCom integration: dead letters, channels (contact ways), welcome templates,
the tag library and the lost-customer list. Scopes: raw events are group-admin only; channels,
templates and alerts follow their store (a group-wide one only for group admins)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import date, timedelta
from typing import Any

from sqlalchemy import ColumnElement, false, func, or_, select, true
from sqlalchemy.orm import Session

from backend.org.models import OrgKind, OrgUnit, Staff, StaffStatus
from backend.org.scope import get_scoped_or_404, register_scope, scope_query, store_filter
from backend.platform.actors import StaffActor
from backend.platform.audit import write_audit
from backend.platform.db import DuplicateKey, unique_savepoint, utcnow
from backend.platform.errors import AppError, register_messages, upstream_error
from backend.platform.jobs import enqueue
from backend.platform.ports import UpstreamError
from backend.wecom import handlers, media
from backend.wecom import service as svc
from backend.wecom.events import REBALANCE_JOB
from backend.wecom.models import (
    AlertKind,
    GroupChatStatus,
    RawEventStatus,
    WeComAlert,
    WeComChannel,
    WeComGroupChat,
    WeComGroupMember,
    WeComMaterial,
    WeComRawEvent,
    WeComTag,
    WelcomeTemplate,
)


def _group_admin_only(actor: StaffActor) -> ColumnElement[bool]:
    return true() if actor.scope.everything else false()


def _by_store(model: Any) -> Any:
    def rule(actor: StaffActor) -> ColumnElement[bool]:
        if actor.scope.everything:
            return true()
        if actor.scope.own_customers_only:
            return false()
        return store_filter(actor, model.store_id)

    return rule


def _store_or_group(model: Any) -> Any:
    """A store's rows, and the group's (brand pictures, the group's welcome templates: every
    store may use them, only group admins change them)."""

    def rule(actor: StaffActor) -> ColumnElement[bool]:
        if actor.scope.everything:
            return true()
        if actor.scope.own_customers_only or not actor.scope.store_ids:
            return false()  # advisors and staff without a role see none
        return or_(model.store_id.is_(None), store_filter(actor, model.store_id))

    return rule


def _alert_rule(actor: StaffActor) -> ColumnElement[bool]:
    if actor.scope.everything:
        return true()
    if actor.scope.own_customers_only:
        return WeComAlert.staff_id == actor.staff_id
    return store_filter(actor, WeComAlert.store_id)


def _chat_rule(actor: StaffActor) -> ColumnElement[bool]:
    """A group chat follows its owner: the advisor who owns it, the owner's store and above."""
    if actor.scope.everything:
        return true()
    if actor.scope.own_customers_only:
        return WeComGroupChat.owner_staff_id == actor.staff_id
    return WeComGroupChat.owner_staff_id.in_(select(Staff.id).where(store_filter(actor, Staff.org_unit_id)))


register_scope("wecom_raw_event", WeComRawEvent, _group_admin_only, "wecom.event_not_found")
register_scope("wecom_group_chat", WeComGroupChat, _chat_rule, "wecom.chat_not_found")


def _channel_rule(actor: StaffActor) -> ColumnElement[bool]:
    """A channel is a contact way of one corp: seen and changed by staff of that corp only (who
    create channels in their own corp), within their stores."""
    actor_corp = select(Staff.corp_id).where(Staff.id == actor.staff_id).scalar_subquery()
    return (WeComChannel.corp_id == actor_corp) & _by_store(WeComChannel)(actor)


register_scope("wecom_channel", WeComChannel, _channel_rule, "wecom.channel_not_found")
register_scope("wecom_template", WelcomeTemplate, _store_or_group(WelcomeTemplate), "wecom.template_not_found")
register_scope("wecom_material", WeComMaterial, _store_or_group(WeComMaterial), "wecom.material_not_found")
register_scope("wecom_alert", WeComAlert, _alert_rule, "wecom.event_not_found")


def paginate(session: Session, stmt: Any, page: int, size: int, order: Any) -> dict[str, Any]:
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    items = session.scalars(stmt.order_by(order).limit(size).offset((page - 1) * size)).all()
    return {"items": items, "total": total, "page": page, "page_size": size}


def _check_store(session: Session, actor: StaffActor, store_id: int | None) -> None:
    """The store a template, material or channel is for: one of the actor's, or none (the
    group's) for those who see everything; and a store, not a region or an unknown id."""
    if not actor.scope.everything and (
        store_id is None or actor.scope.store_ids is None or store_id not in actor.scope.store_ids
    ):
        raise AppError("wecom.store_forbidden", 403)
    if store_id is not None:
        unit = session.get(OrgUnit, store_id)
        if unit is None or unit.kind != OrgKind.STORE:
            raise AppError("wecom.store_invalid", 422, errors={"store_id": ["not a store"]})


# --- raw events ----------------------------------------------------------------------------


def list_events(session: Session, actor: StaffActor, args: dict[str, Any]) -> dict[str, Any]:
    stmt = scope_query(select(WeComRawEvent), actor, "wecom_raw_event")
    if args.get("status"):
        stmt = stmt.where(WeComRawEvent.status == RawEventStatus(args["status"]))
    return paginate(session, stmt, args["page"], args["page_size"], WeComRawEvent.id.desc())


def replay_event(session: Session, actor: StaffActor, raw_event_id: int, reason: str = "") -> WeComRawEvent:
    raw = session.scalars(
        scope_query(select(WeComRawEvent), actor, "wecom_raw_event")
        .where(WeComRawEvent.id == raw_event_id)
        .with_for_update()
    ).one_or_none()
    if raw is None:
        raise AppError("wecom.event_not_found", 404)
    if raw.status not in (RawEventStatus.DEAD, RawEventStatus.IGNORED):
        raise AppError("wecom.event_not_replayable", 409)
    handlers.replay(session, raw)
    write_audit(session, actor, "wecom.event_replayed", "wecom_raw_event", raw.id, {"reason": reason})
    return raw


# --- templates -----------------------------------------------------------------------------

register_messages(
    {
        "wecom.template_empty": ("欢迎语需要文字或至少一个附件", "A welcome template needs a text or an attachment"),
        "wecom.channel_inactive": ("该渠道已删除，不能修改", "This channel is deleted and cannot be changed"),
    }
)

CONTACT_WAY_SWEEP_JOB = "wecom.contact_way.sweep"
CONTACT_WAY_SWEEP_DELAY = timedelta(minutes=2)  # WeCom has answered (or dropped) the lost call by then


def create_template(session: Session, actor: StaffActor, data: dict[str, Any]) -> WelcomeTemplate:
    _check_store(session, actor, data.get("store_id"))
    _check_content(data.get("text") or "", data.get("attachments") or [])
    _check_materials(session, actor, data.get("store_id"), data.get("attachments") or [])
    template = WelcomeTemplate(**data)
    session.add(template)
    session.flush()
    write_audit(
        session, actor, "wecom.template_created", "wecom_template", template.id, {"store_id": template.store_id}
    )
    return template


def update_template(session: Session, actor: StaffActor, template_id: int, data: dict[str, Any]) -> WelcomeTemplate:
    template = get_scoped_or_404(session, actor, "wecom_template", template_id)
    _check_store(session, actor, template.store_id)  # a group-wide template is the group's to change
    # Checked as the template will be, not as the request has it: clearing the text of a
    # template without attachments empties it as surely as sending neither. Under the row lock,
    # so that two edits (one clearing the text, one the attachments) cannot both pass.
    session.refresh(template, with_for_update=True)
    _check_content(data.get("text", template.text) or "", data.get("attachments", template.attachments) or [])
    if "attachments" in data:
        _check_materials(session, actor, template.store_id, data["attachments"])
    for key, value in data.items():
        setattr(template, key, value)
    session.flush()
    write_audit(session, actor, "wecom.template_updated", "wecom_template", template.id, {"fields": sorted(data)})
    return template


def _check_content(text: str, attachments: list) -> None:
    """A welcome carries a text or an attachment: WeCom refuses one with neither (40058), so a
    template without would fail every welcome of its channels. Blank text is no text."""
    if not text.strip() and not attachments:
        raise AppError("wecom.template_empty", 422, errors={"text": ["a text or at least one attachment"]})


def _check_materials(session: Session, actor: StaffActor, store_id: int | None, attachments: list) -> None:
    """Every material a template names exists within the actor's scope, is of the kind its
    attachment needs and belongs to the template's store or to the whole group."""
    for index, (material_id, kind) in enumerate(media.references(attachments)):
        material = get_scoped_or_404(session, actor, "wecom_material", material_id)
        if material.kind != kind:
            raise AppError("wecom.material_kind", 422, errors={"attachments": {index: [f"needs a {kind} material"]}})
        if material.store_id is not None and material.store_id != store_id:
            raise AppError("wecom.material_store", 422, errors={"attachments": {index: ["material of another store"]}})


# --- materials (素材) ------------------------------------------------------------------------


def create_material(
    session: Session,
    actor: StaffActor,
    *,
    kind: str,
    name: str,
    content: bytes,
    content_type: str | None,
    store_id: int | None,
) -> WeComMaterial:
    """Keep an uploaded picture, video or file (checked against WeCom's sizes and formats);
    its media ids are made when it is first needed (backend.wecom.media)."""
    _check_store(session, actor, store_id)
    if not media.MIN_SIZE <= len(content) <= media.MAX_SIZE[kind]:
        limit = f"{media.MIN_SIZE} bytes to {media.MAX_SIZE[kind] // media.MB} MB for {kind}"
        raise AppError("wecom.material_size", 422, errors={"file": [limit]})
    sniffed = media.sniff(kind, content)
    if sniffed is None:
        raise AppError("wecom.material_format", 422, errors={"file": [f"{kind}: {media.FORMATS[kind]} only"]})
    material = WeComMaterial(
        kind=kind,
        name=name[:128],
        store_id=store_id,
        content_type=(content_type or sniffed)[:100] if kind == "file" else sniffed,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content=content,
    )
    session.add(material)
    session.flush()
    write_audit(session, actor, "wecom.material_created", "wecom_material", material.id, {"kind": kind, "name": name})
    return material


def delete_material(session: Session, actor: StaffActor, material_id: int) -> None:
    """Refused while a template (one the actor cannot see too) still attaches it; a group-wide
    material is the group's to delete."""
    material = get_scoped_or_404(session, actor, "wecom_material", material_id)
    _check_store(session, actor, material.store_id)
    users = [
        template_id
        for template_id, attachments in session.execute(
            select(WelcomeTemplate.id, WelcomeTemplate.attachments).order_by(WelcomeTemplate.id)
        )
        if material.id in {m for m, _ in media.references(attachments)}
    ]
    if users:
        raise AppError("wecom.material_in_use", 409, errors={"templates": users})
    write_audit(session, actor, "wecom.material_deleted", "wecom_material", material.id, {"name": material.name})
    session.delete(material)
    session.flush()


# --- channels (contact ways) ---------------------------------------------------------------


def _check_cap(data: dict[str, Any], channel: WeComChannel | None = None) -> None:
    cap = data.get("daily_cap", channel.daily_cap if channel else None)
    fallbacks = data.get("fallback_userids", channel.fallback_userids if channel else [])
    userids = data.get("userids", channel.userids if channel else [])
    if fallbacks and cap is None:
        raise AppError("wecom.fallback_without_cap", 422, errors={"fallback_userids": ["needs daily_cap"]})
    # WeCom userids are case-insensitive: "ADVISOR.ZHANG" is advisor.zhang (as a fallback it
    # would keep routing to the advisor the cap is meant to spare).
    for field, values in (("userids", userids), ("fallback_userids", fallbacks)):
        folded = [u.casefold() for u in values]
        if len(set(folded)) != len(folded):
            raise AppError("wecom.userid_repeated", 422, errors={field: ["an advisor named twice"]})
    if {u.casefold() for u in fallbacks} & {u.casefold() for u in userids}:
        raise AppError("wecom.fallback_overlaps", 422, errors={"fallback_userids": ["already in userids"]})


def _check_advisors(session: Session, actor: StaffActor, corp_id: str, data: dict[str, Any]) -> None:
    """A channel's advisors (and fallbacks) are active members of this corp whom the actor
    manages: a store manager cannot put another store's advisor on a QR code of theirs (that
    advisor's new customers would get this store's welcome, tags and statistics)."""
    userids = [*data.get("userids", []), *data.get("fallback_userids", [])]
    if not userids:
        return
    found = {  # by casefold: WeCom userids are case-insensitive
        staff.wecom_userid.casefold(): staff
        for staff in session.scalars(
            select(Staff).where(
                Staff.corp_id == corp_id, Staff.wecom_userid.in_(userids), Staff.status == StaffStatus.ACTIVE
            )
        )
    }
    unknown = sorted({u for u in userids if u.casefold() not in found})
    if unknown:
        raise AppError("wecom.userid_unknown", 422, errors={"userids": unknown})
    if actor.scope.everything:
        return
    allowed = actor.scope.store_ids or frozenset()
    outside = sorted({u for u in userids if found[u.casefold()].org_unit_id not in allowed})
    if outside:
        raise AppError("wecom.userid_out_of_scope", 403, errors={"userids": outside})


def _check_template_store(session: Session, actor: StaffActor, template_id: int | None, store_id: int | None) -> None:
    if template_id is None:
        return
    template = get_scoped_or_404(session, actor, "wecom_template", template_id)
    if template.store_id is not None and template.store_id != store_id:
        raise AppError("wecom.template_store", 422, errors={"welcome_template_id": ["template of another store"]})


def _check_auto_tags(session: Session, corp_id: str, data: dict[str, Any]) -> None:
    """Auto-tags come from the corp's tag library: WeCom would refuse an unknown one at every
    add, and the add goes through without it (see handlers.auto_tag)."""
    svc.check_markable_tags(session, corp_id, set(data.get("auto_tag_ids") or []), "auto_tag_ids")


def create_channel(session: Session, actor: StaffActor, data: dict[str, Any]) -> WeComChannel:
    _check_store(session, actor, data.get("store_id"))
    _check_template_store(session, actor, data.get("welcome_template_id"), data.get("store_id"))
    _check_cap(data)
    gateway = svc.configured_gateway(svc.actor_corp_id(session, actor))
    _check_advisors(session, actor, gateway.corp_id, data)
    _check_auto_tags(session, gateway.corp_id, data)
    channel = WeComChannel(corp_id=gateway.corp_id, **data)
    # A single-person way (the advisor's own card) can never take a second advisor or a cap
    # (WeCom cannot change a way's type): only an advisor's own QR code is made one. A store's,
    # a poster's or a campaign's starts with whoever is on duty and may have to grow.
    channel.single_person = channel.kind == "advisor" and _one_person(channel.userids, channel.daily_cap)
    try:
        with unique_savepoint(session):
            # The new row's unique (corp, state) entry stays locked until this commits: a sweep
            # of this state (`sweep_contact_ways`) waits for it, and sees the way it holds.
            session.add(channel)
    except DuplicateKey as exc:
        raise AppError("wecom.channel_state_taken", 409) from exc
    users = svc.users_for_today(session, channel)
    # A capped channel may have to hand over to several fallbacks: a multi-person contact way.
    body = {"type": 1 if channel.single_person else 2, "scene": 2, **svc.contact_way_body(channel, users)}
    try:
        result = gateway.post("externalcontact/add_contact_way", body)
    except UpstreamError as exc:
        if not exc.transient or exc.reason == "rejected":
            raise upstream_error(exc) from exc
        # No answer (timeout, 5xx): WeCom may have made the contact way all the same, and a
        # config_id nobody holds can never be deleted. The channel is not kept (the manager
        # may try again at once), and a sweep removes such a way once WeCom has settled.
        session.delete(channel)
        session.flush()
        enqueue(
            session,
            CONTACT_WAY_SWEEP_JOB,
            {"corp_id": gateway.corp_id, "state": channel.state, "since": int(utcnow().timestamp()) - 60},
            delay=CONTACT_WAY_SWEEP_DELAY,
        )
        session.info["commit_despite_error"] = True  # the sweep's job, and nothing else
        raise upstream_error(exc) from exc
    channel.config_id = result.get("config_id")
    channel.qr_code = result.get("qr_code")
    channel.applied_userids = users
    write_audit(session, actor, "wecom.channel_created", "wecom_channel", channel.id, {"state": channel.state})
    return channel


def update_channel(session: Session, actor: StaffActor, channel_id: int, data: dict[str, Any]) -> WeComChannel:
    channel = get_scoped_or_404(session, actor, "wecom_channel", channel_id)
    # Under the row lock the cap's rebalance job takes too: both compare and set what the
    # contact way routes to (`applied_userids`), so neither may work from a stale copy.
    session.refresh(channel, with_for_update=True)
    if not channel.active:
        # Its contact way is deleted in WeCom: an edit would be stored and reach no QR code.
        raise AppError("wecom.channel_inactive", 409)
    _check_template_store(session, actor, data.get("welcome_template_id"), channel.store_id)
    _check_cap(data, channel)
    _check_advisors(session, actor, channel.corp_id, data)
    _check_auto_tags(session, channel.corp_id, data)
    several = not _one_person(data.get("userids", channel.userids), data.get("daily_cap", channel.daily_cap))
    if several and _single_person(channel):
        raise AppError("wecom.channel_single_person", 422, errors={"userids": ["one advisor, no daily cap"]})
    before = {key: getattr(channel, key) for key in data}
    for key, value in data.items():
        setattr(channel, key, value)
    users = svc.users_for_today(session, channel)
    changed = {"name", "skip_verify"} & set(data) or users != list(channel.applied_userids)
    if channel.config_id and channel.active and changed:
        try:
            svc.gateway_for(channel.corp_id).post(
                "externalcontact/update_contact_way",
                {"config_id": channel.config_id, **svc.contact_way_body(channel, users)},
            )
        except UpstreamError as exc:
            if exc.transient and exc.reason != "rejected":
                _undo_unanswered_update(session, channel, before)
            raise upstream_error(exc) from exc
        channel.applied_userids = users
    session.flush()
    write_audit(
        session,
        actor,
        "wecom.channel_updated",
        "wecom_channel",
        channel.id,
        {"fields": sorted(data), "applied_userids": list(channel.applied_userids or [])},
    )
    return channel


def _undo_unanswered_update(session: Session, channel: WeComChannel, before: dict[str, Any]) -> None:
    """An update_contact_way with no answer (timeout, 5xx) may have been applied by WeCom all
    the same. The change is not kept (the manager is told it failed and may try again), and once
    WeCom has settled a job sets the contact way again from what the channel still holds, so
    that the QR code never routes to advisors dealerloop does not show on it."""
    for key, value in before.items():
        setattr(channel, key, value)
    session.flush()
    enqueue(session, REBALANCE_JOB, {"channel_id": channel.id, "resend": True}, delay=CONTACT_WAY_SWEEP_DELAY)
    session.info["commit_despite_error"] = True  # the job, and the channel as it was


def sweep_contact_ways(session: Session, corp_id: str, state: str, since: int) -> int:
    """Delete the contact ways with this state that WeCom made since `since` and no channel
    holds (a create whose answer was lost). Returns how many were deleted."""
    gateway = svc.gateway_for(corp_id)
    # Only the channel of this state (one per corp) can hold a way with this state. It is read
    # with a locking read: a create of this state in flight (WeCom has made its way, the channel
    # is not committed yet) is waited for, and one starting now waits for this sweep — a way
    # made for a live channel is never taken for an orphan. Locking reads see the latest
    # commit, whatever this transaction read before.
    held = set(
        session.scalars(
            select(WeComChannel.config_id)
            .where(WeComChannel.corp_id == corp_id, WeComChannel.state == state)
            .with_for_update(read=True)
        )
    )
    deleted, cursor = 0, ""
    while True:
        page = gateway.post(
            "externalcontact/list_contact_way",
            {"start_time": since, "end_time": int(utcnow().timestamp()), "cursor": cursor, "limit": 1000},
        )
        for config_id in [w.get("config_id") for w in page.get("contact_way") or []]:
            if not config_id or config_id in held:
                continue
            way = gateway.post("externalcontact/get_contact_way", {"config_id": config_id}).get("contact_way") or {}
            if way.get("state") == state:
                gateway.post("externalcontact/del_contact_way", {"config_id": config_id})
                deleted += 1
        cursor = page.get("next_cursor") or ""
        if not cursor:
            return deleted


def _one_person(userids: list[str], daily_cap: int | None) -> bool:
    """One advisor and no cap: what a single-person way (WeCom shows the advisor's card) takes."""
    return len(userids) == 1 and daily_cap is None


def _single_person(channel: WeComChannel) -> bool:
    """Whether the channel's contact way is single-person (type 1); for a channel from before
    that was kept, WeCom is asked and its answer kept with the update."""
    if channel.single_person is None and channel.config_id and channel.active:
        try:
            way = svc.gateway_for(channel.corp_id).post(
                "externalcontact/get_contact_way", {"config_id": channel.config_id}
            )
        except UpstreamError as exc:
            raise upstream_error(exc) from exc
        channel.single_person = (way.get("contact_way") or {}).get("type") == 1
    return bool(channel.single_person)


def channel_stats(
    session: Session, actor: StaffActor, channel_id: int, date_from: date | None, date_to: date | None
) -> list[dict[str, Any]]:
    channel = get_scoped_or_404(session, actor, "wecom_channel", channel_id)
    date_to = date_to or svc.china_day(utcnow())
    date_from = date_from or date_to - timedelta(days=29)
    if date_from > date_to or (date_to - date_from).days >= 366:
        raise AppError("wecom.stats_range_invalid", 422, errors={"date_from": ["1..366 days, from <= to"]})
    return svc.channel_stats(session, channel, date_from, date_to)


def delete_channel(session: Session, actor: StaffActor, channel_id: int) -> None:
    """Deletes the contact way in WeCom; the row stays (friends keep their attribution)."""
    channel = get_scoped_or_404(session, actor, "wecom_channel", channel_id)
    gone = False
    if channel.config_id and channel.active:
        gateway = svc.gateway_for(channel.corp_id)
        try:
            gateway.post("externalcontact/del_contact_way", {"config_id": channel.config_id})
        except UpstreamError as exc:
            if exc.transient or _contact_way_exists(gateway, channel.config_id):
                raise upstream_error(exc) from exc
            # Deleted in WeCom already (an earlier delete whose answer was lost, another tool):
            # the channel would otherwise stay active for good, its state never reusable.
            gone = True
    channel.active = False
    write_audit(
        session, actor, "wecom.channel_deleted", "wecom_channel", channel.id, {"gone_in_wecom": gone} if gone else None
    )


INVALID_PARAMETER = 40058  # what WeCom answers for a config_id it does not know


def _contact_way_exists(gateway: Any, config_id: str) -> bool:
    """Whether WeCom may still have the contact way: only get_contact_way refusing the config_id
    itself says it has not (busy, rate limits or a missing permission say nothing)."""
    try:
        gateway.post("externalcontact/get_contact_way", {"config_id": config_id})
    except UpstreamError as exc:
        return not (exc.reason == "rejected" and exc.errcode == INVALID_PARAMETER)
    return True


# --- tags and lost customers ---------------------------------------------------------------


def list_tags(session: Session, actor: StaffActor) -> list[WeComTag]:
    """The tag library of the actor's corp (a tag id is a corp's own): the corporate tags, then
    the rule-group tags by rule group (`strategy_id`; `markable` False for those WeCom does not
    let this app mark)."""
    return list(
        session.scalars(
            select(WeComTag)
            .where(
                WeComTag.corp_id == svc.actor_corp_id(session, actor),
                WeComTag.deleted.is_(False),
                WeComTag.name != "",  # a rule-group tag known only by id from a callback
            )
            # As WeCom lists them: a larger `order` first, for groups and for tags in a group.
            .order_by(
                WeComTag.kind,  # "corp" before "strategy"
                WeComTag.strategy_id,
                WeComTag.group_order.desc(),
                WeComTag.group_id,
                WeComTag.group_name,
                WeComTag.sort_order.desc(),
                WeComTag.id,
            )
        )
    )


def request_tag_sync(session: Session) -> None:
    """Re-read every configured corp's tag library, one job per corp (one corp's failure is
    retried without rereading the others')."""
    for corp_id in svc.corp_ids():
        enqueue(session, "wecom.sync_tags", {"corp_id": corp_id})


def lost_customers(session: Session, actor: StaffActor, page: int, size: int) -> dict[str, Any]:
    stmt = scope_query(select(WeComAlert), actor, "wecom_alert").where(
        WeComAlert.kind.in_([AlertKind.DELETED_BY_CUSTOMER, AlertKind.DELETED_BY_ADVISOR]),
        WeComAlert.resolved_at.is_(None),
    )
    return paginate(session, stmt, page, size, WeComAlert.occurred_at.desc())


def mark_customer_tags(
    session: Session,
    actor: StaffActor,
    customer_id: int,
    add: list[str],
    remove: list[str],
    userid: str | None = None,
) -> dict[str, Any]:
    """Mark / unmark corporate tags of a customer in my scope through `mark_tag`, then record
    the change ourselves (API actions produce no callback). Through a relation in the actor's
    corp, with that corp's tags: a group admin of the primary corp marks in the primary corp,
    whose library is the one they are shown (list_tags)."""
    customer = get_scoped_or_404(session, actor, "customer", customer_id)
    add_set, remove_set = set(add), set(remove)
    if not add_set and not remove_set:
        raise AppError("wecom.tags_empty", 422, errors={"add_tag_ids": ["add or remove at least one tag"]})
    if add_set & remove_set:
        raise AppError("wecom.tags_conflict", 422, errors={"add_tag_ids": ["also in remove_tag_ids"]})
    # The relation is looked for in this corp only, so this is the corp the relation
    # (friend.corp_id) will be of: its tags can be checked before the lookup (422 before 409).
    corp_id = svc.actor_corp_id(session, actor)
    svc.check_markable_tags(session, corp_id, add_set | remove_set, "tag_ids")
    me = session.get(Staff, actor.staff_id)
    if actor.scope.own_customers_only:
        # An advisor tags through their own relation only: marking through a colleague's would
        # act in WeCom as that colleague.
        if userid and (me is None or userid.casefold() != me.wecom_userid.casefold()):
            raise AppError("wecom.userid_out_of_scope", 403, errors={"userid": [userid]})
        userid = (me.wecom_userid if me else None) or ""
        if not userid:
            raise AppError("wecom.not_a_friend", 409)
    # Marking acts in WeCom as the relation's advisor: a manager only through an advisor of
    # their stores (the customer may also be the friend of another store's advisor).
    in_scope = None if actor.scope.own_customers_only else store_filter(actor, Staff.org_unit_id)
    actor_userid = me.wecom_userid if me else None
    friend = svc.customer_friend(session, corp_id, customer.id, actor_userid, userid, in_scope)
    if friend is None:
        if userid and svc.customer_friend(session, corp_id, customer.id, actor_userid, userid) is not None:
            raise AppError("wecom.userid_out_of_scope", 403, errors={"userid": [userid]})
        raise AppError("wecom.not_a_friend", 409)
    friend, _ = svc.lock_friend(
        session, friend.corp_id, friend.userid, friend.external_userid, customer, None, friend.status
    )
    body: dict[str, Any] = {"userid": friend.userid, "external_userid": friend.external_userid}
    if add_set:
        body["add_tag"] = sorted(add_set)
    if remove_set:
        body["remove_tag"] = sorted(remove_set)
    try:
        svc.configured_gateway(friend.corp_id).post("externalcontact/mark_tag", body)
    except UpstreamError as exc:
        if exc.reason == "rejected" and exc.errcode == svc.CONTACT_GONE:
            raise AppError("wecom.not_a_friend", 409) from exc
        raise upstream_error(exc) from exc
    wanted = (svc.friend_tag_ids(session, friend.id) | add_set) - remove_set
    added, removed = svc.set_friend_tags(
        session,
        friend,
        wanted,
        f"api:{uuid.uuid4().hex}",
        utcnow(),
        source=svc.WORKBENCH_SOURCE,
        actor_staff_id=actor.staff_id,
    )
    write_audit(
        session,
        actor,
        "wecom.tags_marked",
        "customer",
        customer.id,
        {"userid": friend.userid, "added": sorted(added), "removed": sorted(removed)},
    )
    return {
        "customer_id": customer.id,
        "userid": friend.userid,
        "external_userid": friend.external_userid,
        "tag_ids": sorted(svc.friend_tag_ids(session, friend.id)),
        "added": sorted(added),
        "removed": sorted(removed),
    }


def list_group_chats(session: Session, actor: StaffActor, args: dict[str, Any]) -> dict[str, Any]:
    """Customer group chats in my scope, with how many customers are in each now."""
    stmt = scope_query(select(WeComGroupChat), actor, "wecom_group_chat")
    if args.get("status"):
        stmt = stmt.where(WeComGroupChat.status == GroupChatStatus(args["status"]))
    page = paginate(session, stmt, args["page"], args["page_size"], WeComGroupChat.id.desc())
    ids = [c.id for c in page["items"]]
    # One grouped count for the page (not a query per chat).
    counts = (
        dict(
            session.execute(
                select(WeComGroupMember.chat_pk, func.count())
                .where(
                    WeComGroupMember.chat_pk.in_(ids),
                    WeComGroupMember.active.is_(True),
                    WeComGroupMember.member_type == 2,
                )
                .group_by(WeComGroupMember.chat_pk)
            ).all()
        )
        if ids
        else {}
    )
    page["items"] = [
        {
            "id": c.id,
            "chat_id": c.chat_id,
            "name": c.name,
            "owner_userid": c.owner_userid,
            "owner_staff_id": c.owner_staff_id,
            "status": c.status.value,
            "customer_count": counts.get(c.id, 0),
            "dismissed_at": c.dismissed_at,
        }
        for c in page["items"]
    ]
    return page
