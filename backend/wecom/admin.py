"""Admin side of the WeCom integration: dead letters, channels (contact ways), welcome templates,
the tag library and the lost-customer list. Scopes: raw events are group-admin only; channels,
templates and alerts follow their store (a group-wide one only for group admins)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, false, func, select, true
from sqlalchemy.orm import Session

from backend.org.scope import get_scoped_or_404, register_scope, scope_query, store_filter
from backend.platform.actors import StaffActor
from backend.platform.audit import write_audit
from backend.platform.db import DuplicateKey, unique_savepoint
from backend.platform.errors import AppError
from backend.platform.ports import UpstreamError
from backend.wecom import handlers
from backend.wecom import service as svc
from backend.wecom.models import (
    AlertKind,
    RawEventStatus,
    WeComAlert,
    WeComChannel,
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


def _alert_rule(actor: StaffActor) -> ColumnElement[bool]:
    if actor.scope.everything:
        return true()
    if actor.scope.own_customers_only:
        return WeComAlert.staff_id == actor.staff_id
    return store_filter(actor, WeComAlert.store_id)


register_scope("wecom_raw_event", WeComRawEvent, _group_admin_only, "wecom.event_not_found")
register_scope("wecom_channel", WeComChannel, _by_store(WeComChannel), "wecom.channel_not_found")
register_scope("wecom_template", WelcomeTemplate, _by_store(WelcomeTemplate), "wecom.template_not_found")
register_scope("wecom_alert", WeComAlert, _alert_rule, "wecom.event_not_found")


def paginate(session: Session, stmt: Any, page: int, size: int, order: Any) -> dict[str, Any]:
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    items = session.scalars(stmt.order_by(order).limit(size).offset((page - 1) * size)).all()
    return {"items": items, "total": total, "page": page, "page_size": size}


def _check_store(actor: StaffActor, store_id: int | None) -> None:
    if actor.scope.everything:
        return
    if store_id is None or actor.scope.store_ids is None or store_id not in actor.scope.store_ids:
        raise AppError("wecom.store_forbidden", 403)


def _upstream(exc: UpstreamError) -> AppError:
    if exc.reason == "timeout":
        return AppError("upstream.timeout", 504)
    if exc.reason == "unavailable":
        return AppError("upstream.unavailable", 502)
    return AppError("upstream.rejected", 502, errors={"upstream": {"errcode": exc.errcode}})


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


def create_template(session: Session, actor: StaffActor, data: dict[str, Any]) -> WelcomeTemplate:
    _check_store(actor, data.get("store_id"))
    template = WelcomeTemplate(**data)
    session.add(template)
    session.flush()
    return template


def update_template(session: Session, actor: StaffActor, template_id: int, data: dict[str, Any]) -> WelcomeTemplate:
    template = get_scoped_or_404(session, actor, "wecom_template", template_id)
    for key, value in data.items():
        setattr(template, key, value)
    session.flush()
    return template


# --- channels (contact ways) ---------------------------------------------------------------


def _contact_way_body(channel: WeComChannel) -> dict[str, Any]:
    return {
        "remark": channel.name[:30],
        "skip_verify": channel.skip_verify,
        "state": channel.state,
        "user": list(channel.userids),
    }


def create_channel(session: Session, actor: StaffActor, data: dict[str, Any]) -> WeComChannel:
    _check_store(actor, data.get("store_id"))
    if data.get("welcome_template_id") is not None:
        get_scoped_or_404(session, actor, "wecom_template", data["welcome_template_id"])
    gateway = svc.gateway_for(svc.current_corp_id())
    channel = WeComChannel(corp_id=gateway.corp_id, **data)
    try:
        with unique_savepoint(session):
            session.add(channel)
    except DuplicateKey as exc:
        raise AppError("wecom.channel_state_taken", 409) from exc
    body = {"type": 1 if len(channel.userids) == 1 else 2, "scene": 2, **_contact_way_body(channel)}
    try:
        result = gateway.post("externalcontact/add_contact_way", body)
    except UpstreamError as exc:
        raise _upstream(exc) from exc
    channel.config_id = result.get("config_id")
    channel.qr_code = result.get("qr_code")
    write_audit(session, actor, "wecom.channel_created", "wecom_channel", channel.id, {"state": channel.state})
    return channel


def update_channel(session: Session, actor: StaffActor, channel_id: int, data: dict[str, Any]) -> WeComChannel:
    channel = get_scoped_or_404(session, actor, "wecom_channel", channel_id)
    if data.get("welcome_template_id") is not None:
        get_scoped_or_404(session, actor, "wecom_template", data["welcome_template_id"])
    for key, value in data.items():
        setattr(channel, key, value)
    if channel.config_id and channel.active and {"name", "userids", "skip_verify"} & set(data):
        try:
            svc.gateway_for(channel.corp_id).post(
                "externalcontact/update_contact_way", {"config_id": channel.config_id, **_contact_way_body(channel)}
            )
        except UpstreamError as exc:
            raise _upstream(exc) from exc
    session.flush()
    return channel


def delete_channel(session: Session, actor: StaffActor, channel_id: int) -> None:
    """Deletes the contact way in WeCom; the row stays (friends keep their attribution)."""
    channel = get_scoped_or_404(session, actor, "wecom_channel", channel_id)
    if channel.config_id and channel.active:
        try:
            svc.gateway_for(channel.corp_id).post("externalcontact/del_contact_way", {"config_id": channel.config_id})
        except UpstreamError as exc:
            raise _upstream(exc) from exc
    channel.active = False
    write_audit(session, actor, "wecom.channel_deleted", "wecom_channel", channel.id)


# --- tags and lost customers ---------------------------------------------------------------


def list_tags(session: Session) -> list[WeComTag]:
    return list(
        session.scalars(
            select(WeComTag)
            .where(WeComTag.corp_id == svc.current_corp_id(), WeComTag.deleted.is_(False))
            .order_by(WeComTag.group_name, WeComTag.sort_order, WeComTag.id)
        )
    )


def lost_customers(session: Session, actor: StaffActor, page: int, size: int) -> dict[str, Any]:
    stmt = scope_query(select(WeComAlert), actor, "wecom_alert").where(
        WeComAlert.kind.in_([AlertKind.DELETED_BY_CUSTOMER, AlertKind.DELETED_BY_ADVISOR]),
        WeComAlert.resolved_at.is_(None),
    )
    return paginate(session, stmt, page, size, WeComAlert.occurred_at.desc())
