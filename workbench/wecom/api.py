"""Workbench API of the wecom feature (/api/workbench/v1/wecom/...): dead-lettered callback
events (list, inspect, replay), channels (「联系我」 contact ways) and their daily statistics,
welcome templates and their materials (素材), the tag library, marking a customer's tags and the lost-customer list."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import request
from sqlalchemy import select

from backend.org.scope import get_scoped_or_404, scope_query
from backend.platform.api import Blueprint, current_staff, role_required, scoped
from backend.platform.db import db
from backend.wecom import admin, media
from backend.wecom.models import WeComChannel, WeComMaterial, WelcomeTemplate
from backend.wecom.schemas import (
    AcceptedSchema,
    ChannelInSchema,
    ChannelPatchSchema,
    ChannelSchema,
    ChannelStatsQuerySchema,
    ChannelStatsSchema,
    GroupChatPageSchema,
    GroupChatQuerySchema,
    LostCustomerPageSchema,
    MarkTagsInSchema,
    MarkTagsSchema,
    MaterialFileSchema,
    MaterialFormSchema,
    MaterialSchema,
    PageQuerySchema,
    RawEventDetailSchema,
    RawEventPageSchema,
    RawEventQuerySchema,
    ReplayInSchema,
    TagSchema,
    TagSyncInSchema,
    TemplateInSchema,
    TemplatePatchSchema,
    TemplateSchema,
)

blp = Blueprint("wb_wecom", __name__, url_prefix="/api/workbench/v1", audience="staff", description="wecom")

CONFIG_ROLES = ("group_admin", "marketing", "store_manager", "region_manager", "division_manager")


@blp.route("/wecom/events")
@scoped("wecom_raw_event")
@role_required("group_admin")
@blp.arguments(RawEventQuerySchema, location="query")
@blp.response(200, RawEventPageSchema)
def list_events(args: dict[str, Any]) -> dict[str, Any]:
    """Stored callback events, newest first (`status=dead` for the dead letters)."""
    return admin.list_events(db.session(), current_staff(), args)


@blp.route("/wecom/events/<int:raw_event_id>")
@scoped("wecom_raw_event")
@blp.response(200, RawEventDetailSchema)
def get_event(raw_event_id: int) -> Any:
    """One event with its decrypted XML."""
    return get_scoped_or_404(db.session(), current_staff(), "wecom_raw_event", raw_event_id)


@blp.route("/wecom/events/<int:raw_event_id>/replay", methods=["POST"])
@scoped("wecom_raw_event")
@blp.arguments(ReplayInSchema)
@blp.response(202, RawEventDetailSchema)
def replay_event(data: dict[str, Any], raw_event_id: int) -> Any:
    """Send a dead (or ignored) event through processing again (audited, with the reason)."""
    return admin.replay_event(db.session(), current_staff(), raw_event_id, data["reason"])


@blp.route("/wecom/welcome-templates")
@scoped("wecom_template")
@blp.response(200, TemplateSchema(many=True))
def list_templates() -> Any:
    stmt = scope_query(admin.select(WelcomeTemplate), current_staff(), "wecom_template")
    return db.session().scalars(stmt.order_by(WelcomeTemplate.id)).all()


@blp.route("/wecom/welcome-templates", methods=["POST"])
@scoped("wecom_template")
@role_required(*CONFIG_ROLES)
@blp.arguments(TemplateInSchema)
@blp.response(201, TemplateSchema)
def create_template(data: dict[str, Any]) -> Any:
    return admin.create_template(db.session(), current_staff(), data)


@blp.route("/wecom/welcome-templates/<int:template_id>", methods=["PATCH"])
@scoped("wecom_template")
@role_required(*CONFIG_ROLES)
@blp.arguments(TemplatePatchSchema)
@blp.response(200, TemplateSchema)
def update_template(data: dict[str, Any], template_id: int) -> Any:
    return admin.update_template(db.session(), current_staff(), template_id, data)


def _material_body(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A material upload may be larger than the app's usual request limit (MAX_CONTENT_LENGTH)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        request.max_content_length = max(media.MAX_SIZE.values()) + 64 * 1024  # the form around the file
        return fn(*args, **kwargs)

    return wrapper


@blp.route("/wecom/materials")
@scoped("wecom_material")
@blp.response(200, MaterialSchema(many=True))
def list_materials() -> Any:
    """Pictures, videos and files for welcome templates (without their content)."""
    stmt = scope_query(select(WeComMaterial), current_staff(), "wecom_material")
    return db.session().scalars(stmt.order_by(WeComMaterial.id)).all()


@blp.route("/wecom/materials", methods=["POST"])
@scoped("wecom_material")
@role_required(*CONFIG_ROLES)
@_material_body
@blp.arguments(MaterialFormSchema, location="form")
@blp.arguments(MaterialFileSchema, location="files")
@blp.response(201, MaterialSchema)
def create_material(form: dict[str, Any], files: dict[str, Any]) -> Any:
    """Upload a picture (JPG/PNG), video (MP4) or file, up to 10 MB, as multipart/form-data.
    Templates attach it by id; dealerloop keeps its WeCom media id fresh (they expire after
    three days)."""
    upload = files["file"]
    try:
        content = upload.read()
    finally:
        upload.close()  # a large one was spooled to a temporary file
    return admin.create_material(
        db.session(),
        current_staff(),
        kind=form["kind"],
        name=form.get("name") or upload.filename or form["kind"],
        content=content,
        content_type=upload.mimetype or None,
        store_id=form.get("store_id"),
    )


@blp.route("/wecom/materials/<int:material_id>", methods=["GET"])
@scoped("wecom_material")
@blp.response(200, MaterialSchema)
def get_material(material_id: int) -> Any:
    return get_scoped_or_404(db.session(), current_staff(), "wecom_material", material_id)


@blp.route("/wecom/materials/<int:material_id>", methods=["DELETE"])
@scoped("wecom_material")
@role_required(*CONFIG_ROLES)
@blp.response(204)
def delete_material(material_id: int) -> None:
    """Refused (409) while a welcome template attaches it."""
    admin.delete_material(db.session(), current_staff(), material_id)


@blp.route("/wecom/channels")
@scoped("wecom_channel")
@blp.response(200, ChannelSchema(many=True))
def list_channels() -> Any:
    stmt = scope_query(admin.select(WeComChannel), current_staff(), "wecom_channel")
    return db.session().scalars(stmt.order_by(WeComChannel.id)).all()


@blp.route("/wecom/channels", methods=["POST"])
@scoped("wecom_channel")
@role_required(*CONFIG_ROLES)
@blp.arguments(ChannelInSchema)
@blp.response(201, ChannelSchema)
def create_channel(data: dict[str, Any]) -> Any:
    """Create the channel and its contact way (QR code) in WeCom."""
    return admin.create_channel(db.session(), current_staff(), data)


@blp.route("/wecom/channels/<int:channel_id>", methods=["GET"])
@scoped("wecom_channel")
@blp.response(200, ChannelSchema)
def get_channel(channel_id: int) -> Any:
    return get_scoped_or_404(db.session(), current_staff(), "wecom_channel", channel_id)


@blp.route("/wecom/channels/<int:channel_id>", methods=["PATCH"])
@scoped("wecom_channel")
@role_required(*CONFIG_ROLES)
@blp.arguments(ChannelPatchSchema)
@blp.response(200, ChannelSchema)
def update_channel(data: dict[str, Any], channel_id: int) -> Any:
    return admin.update_channel(db.session(), current_staff(), channel_id, data)


@blp.route("/wecom/channels/<int:channel_id>", methods=["DELETE"])
@scoped("wecom_channel")
@role_required(*CONFIG_ROLES)
@blp.response(204)
def delete_channel(channel_id: int) -> None:
    admin.delete_channel(db.session(), current_staff(), channel_id)


@blp.route("/wecom/channels/<int:channel_id>/stats")
@scoped("wecom_channel")
@blp.arguments(ChannelStatsQuerySchema, location="query")
@blp.response(200, ChannelStatsSchema(many=True))
def channel_stats(args: dict[str, Any], channel_id: int) -> Any:
    """New friends, lost friends and net per day (China calendar; default: the last 30 days)."""
    return admin.channel_stats(db.session(), current_staff(), channel_id, args["date_from"], args["date_to"])


@blp.route("/wecom/customers/<int:customer_id>/tags", methods=["POST"])
@scoped("customer")
@blp.arguments(MarkTagsInSchema)
@blp.response(200, MarkTagsSchema)
def mark_tags(data: dict[str, Any], customer_id: int) -> Any:
    """Mark / unmark a customer's corporate tags in WeCom (`mark_tag`) and record them here."""
    return admin.mark_customer_tags(
        db.session(), current_staff(), customer_id, data["add_tag_ids"], data["remove_tag_ids"], data["userid"]
    )


@blp.route("/wecom/tags")
@scoped("wecom_tag_library")
@blp.response(200, TagSchema(many=True))
def list_tags() -> Any:
    """The corporate tag library of my corp (corp-wide reference data)."""
    return admin.list_tags(db.session(), current_staff())


@blp.route("/wecom/tags/sync", methods=["POST"])
@scoped("wecom_tag_library")
@role_required("group_admin", "marketing")
@blp.arguments(TagSyncInSchema)
@blp.response(202, AcceptedSchema)
def sync_tags(_data: dict[str, Any]) -> dict[str, bool]:
    """Re-read every configured corp's tag library from WeCom (in jobs)."""
    admin.request_tag_sync(db.session())
    return {"enqueued": True}


@blp.route("/wecom/group-chats")
@scoped("wecom_group_chat")
@blp.arguments(GroupChatQuerySchema, location="query")
@blp.response(200, GroupChatPageSchema)
def list_group_chats(args: dict[str, Any]) -> dict[str, Any]:
    """Customer group chats in my scope (by their owner), with their current customer count."""
    return admin.list_group_chats(db.session(), current_staff(), args)


@blp.route("/wecom/lost-customers")
@scoped("wecom_alert")
@blp.arguments(PageQuerySchema, location="query")
@blp.response(200, LostCustomerPageSchema)
def lost_customers(args: dict[str, Any]) -> dict[str, Any]:
    """Customers lost (friend removed) and not back, in my scope, newest first."""
    return admin.lost_customers(db.session(), current_staff(), args["page"], args["page_size"])
