"""Schemas of the wecom admin endpoints."""

from __future__ import annotations

from datetime import date

from flask_smorest.fields import Upload
from marshmallow import ValidationError, fields, validate, validates

from backend.platform.api import OutputSchema, Schema
from backend.wecom.models import RawEventStatus
from backend.wecom.welcome import TEXT_BYTES

CHANNEL_KINDS = ("store", "advisor", "group", "campaign", "event", "poster")
ATTACHMENT_TYPES = ("image", "link", "miniprogram", "file", "video")


class PageQuerySchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100000))
    page_size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class RawEventQuerySchema(PageQuerySchema):
    status = fields.String(validate=validate.OneOf([s.value for s in RawEventStatus]))


class ReplayInSchema(Schema):
    reason = fields.String(load_default="", validate=validate.Length(max=255))


class TagSyncInSchema(Schema):
    pass


class AcceptedSchema(OutputSchema):
    enqueued = fields.Boolean()


class RawEventSchema(OutputSchema):
    id = fields.Integer()
    corp_id = fields.String()
    agent_id = fields.String()
    dedup_key = fields.String()
    event = fields.String()
    change_type = fields.String()
    create_time = fields.Integer()
    status = fields.String()
    attempts = fields.Integer()
    replays = fields.Integer()
    last_error = fields.String(allow_none=True)
    received_at = fields.DateTime()
    processed_at = fields.DateTime(allow_none=True)


class RawEventDetailSchema(RawEventSchema):
    xml = fields.String()


class RawEventPageSchema(OutputSchema):
    items = fields.List(fields.Nested(RawEventSchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()


# What each attachment may carry, by msgtype: field -> (required, WeCom's limit in bytes), with
# None for a material id. Pictures, videos and files are materials (POST /wecom/materials): a
# WeCom media id expires three days after its upload, so templates never store one
# (backend.wecom.media). An image is a material or a `pic_url`, exactly one of them.
_ATTACHMENT_FIELDS: dict[str, dict[str, tuple[bool, int | None]]] = {
    "image": {"material_id": (False, None), "pic_url": (False, 2048)},
    "link": {"title": (True, 128), "url": (True, 2048), "picurl": (False, 2048), "desc": (False, 512)},
    "miniprogram": {"title": (True, 64), "appid": (True, 64), "page": (True, 1024), "pic_material_id": (True, None)},
    "video": {"material_id": (True, None)},
    "file": {"material_id": (True, None)},
}
_URL_FIELDS = ("url", "picurl", "pic_url")
MAX_ID = 2**31 - 1


def _attachment_problem(item: object) -> str | None:
    if not isinstance(item, dict) or item.get("msgtype") not in ATTACHMENT_TYPES:
        return f"needs a msgtype in {ATTACHMENT_TYPES}"
    msgtype = item["msgtype"]
    body = item.get(msgtype)
    if not isinstance(body, dict) or set(item) != {"msgtype", msgtype}:
        return "carries one object, named after its msgtype"
    if "media_id" in body or "pic_media_id" in body:
        return "WeCom media ids expire after three days: upload the file as a material and give its material id"
    allowed = _ATTACHMENT_FIELDS[msgtype]
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        return f"{msgtype} takes no {', '.join(unknown)}"
    for name, (required, limit) in allowed.items():
        if name not in body:
            if required:
                return f"{msgtype} needs {name}"
            continue
        value = body[name]
        if not required and value == "":
            continue  # a blank optional field, as forms send it: WeCom takes it as absent
        if limit is None:
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ID:
                return f"{name} is a material's id"
        elif not isinstance(value, str) or not value.strip() or len(value.encode()) > limit:
            return f"{name} is a text of up to {limit} bytes"
        elif name in _URL_FIELDS and not value.startswith(("https://", "http://")):
            return f"{name} is an http(s) URL"
    if msgtype == "image" and sum(1 for value in body.values() if value != "") != 1:
        return "image needs a material_id or a pic_url"
    return None


def _check_text(value: str) -> None:
    if len(value.encode()) > TEXT_BYTES:
        raise ValidationError(f"at most {TEXT_BYTES} bytes (a Chinese character takes 3)")


def _check_attachments(value: list) -> None:
    if len(value) > 9:
        raise ValidationError("at most 9 attachments")
    problems = {i: [problem] for i, item in enumerate(value) if (problem := _attachment_problem(item))}
    if problems:
        raise ValidationError(problems)


class TemplateInSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    store_id = fields.Integer(allow_none=True, load_default=None, validate=validate.Range(min=1, max=MAX_ID))
    text = fields.String(load_default="", validate=_check_text)
    attachments = fields.List(fields.Dict(), load_default=list)

    @validates("attachments")
    def _attachments(self, value: list, **_: object) -> None:
        _check_attachments(value)


class TemplatePatchSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=64))
    text = fields.String(validate=_check_text)
    attachments = fields.List(fields.Dict())

    @validates("attachments")
    def _attachments(self, value: list, **_: object) -> None:
        _check_attachments(value)


class TemplateSchema(OutputSchema):
    id = fields.Integer()
    name = fields.String()
    store_id = fields.Integer(allow_none=True)
    text = fields.String()
    attachments = fields.List(fields.Dict())


class MaterialFormSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(("image", "video", "file")))
    name = fields.String(validate=validate.Length(min=1, max=128))
    store_id = fields.Integer(allow_none=True, load_default=None, validate=validate.Range(min=1, max=MAX_ID))


class MaterialFileSchema(Schema):
    file = Upload(required=True)


class MaterialSchema(OutputSchema):
    id = fields.Integer()
    name = fields.String()
    store_id = fields.Integer(allow_none=True)
    kind = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    sha256 = fields.String()
    created_at = fields.DateTime()


class ChannelInSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    kind = fields.String(required=True, validate=validate.OneOf(CHANNEL_KINDS))
    state = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.:-]{1,30}\Z"))
    store_id = fields.Integer(allow_none=True, load_default=None)
    userids = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)), required=True, validate=validate.Length(min=1, max=100)
    )
    skip_verify = fields.Boolean(load_default=True)
    auto_tag_ids = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)), load_default=list, validate=validate.Length(max=20)
    )
    welcome_template_id = fields.Integer(allow_none=True, load_default=None)
    daily_cap = fields.Integer(allow_none=True, load_default=None, validate=validate.Range(min=1, max=10000))
    fallback_userids = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)), load_default=list, validate=validate.Length(max=100)
    )


class ChannelPatchSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=64))
    userids = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)), validate=validate.Length(min=1, max=100)
    )
    skip_verify = fields.Boolean()
    auto_tag_ids = fields.List(fields.String(validate=validate.Length(min=1, max=64)), validate=validate.Length(max=20))
    welcome_template_id = fields.Integer(allow_none=True)
    daily_cap = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=10000))
    fallback_userids = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)), validate=validate.Length(max=100)
    )


class ChannelSchema(OutputSchema):
    id = fields.Integer()
    corp_id = fields.String()
    name = fields.String()
    kind = fields.String()
    state = fields.String()
    store_id = fields.Integer(allow_none=True)
    userids = fields.List(fields.String())
    skip_verify = fields.Boolean()
    auto_tag_ids = fields.List(fields.String())
    welcome_template_id = fields.Integer(allow_none=True)
    config_id = fields.String(allow_none=True)
    qr_code = fields.String(allow_none=True)
    active = fields.Boolean()
    daily_cap = fields.Integer(allow_none=True)
    fallback_userids = fields.List(fields.String())
    applied_userids = fields.List(fields.String())


_STATS_DAYS = validate.Range(min=date(2000, 1, 1), max=date(2099, 12, 31))


class ChannelStatsQuerySchema(Schema):
    date_from = fields.Date(load_default=None, validate=_STATS_DAYS)
    date_to = fields.Date(load_default=None, validate=_STATS_DAYS)


class ChannelStatsSchema(OutputSchema):
    day = fields.Date()
    added = fields.Integer()
    lost = fields.Integer()
    net = fields.Integer()


class TagSchema(OutputSchema):
    tag_id = fields.String()
    group_id = fields.String()
    group_name = fields.String()
    name = fields.String()
    sort_order = fields.Integer()
    deleted = fields.Boolean()
    kind = fields.String()  # corp (企业标签) | strategy (规则组标签)
    strategy_id = fields.Integer(allow_none=True)  # the rule group (None: corporate, or not yet known)
    markable = fields.Boolean(attribute="listed")  # WeCom lets this app mark it (mark_tag)


class LostCustomerSchema(OutputSchema):
    alert_id = fields.Integer(attribute="id")
    kind = fields.String()
    customer_id = fields.Integer()
    staff_id = fields.Integer(allow_none=True)
    store_id = fields.Integer(allow_none=True)
    occurred_at = fields.DateTime()


class LostCustomerPageSchema(OutputSchema):
    items = fields.List(fields.Nested(LostCustomerSchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()


class MarkTagsInSchema(Schema):
    # Both default to empty so that scope is decided before content (another scope's customer
    # answers 404 whatever the body); "nothing to do" is refused by the service (422).
    add_tag_ids = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)), load_default=list, validate=validate.Length(max=100)
    )
    remove_tag_ids = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)), load_default=list, validate=validate.Length(max=100)
    )
    userid = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=64))


class MarkTagsSchema(OutputSchema):
    customer_id = fields.Integer()
    userid = fields.String()
    external_userid = fields.String()
    tag_ids = fields.List(fields.String())
    added = fields.List(fields.String())
    removed = fields.List(fields.String())


class GroupChatQuerySchema(PageQuerySchema):
    status = fields.String(validate=validate.OneOf(["active", "dismissed"]))


class GroupChatSchema(OutputSchema):
    id = fields.Integer()
    chat_id = fields.String()
    name = fields.String(allow_none=True)
    owner_userid = fields.String(allow_none=True)
    owner_staff_id = fields.Integer(allow_none=True)
    status = fields.String()
    customer_count = fields.Integer()
    dismissed_at = fields.DateTime(allow_none=True)


class GroupChatPageSchema(OutputSchema):
    items = fields.List(fields.Nested(GroupChatSchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()
