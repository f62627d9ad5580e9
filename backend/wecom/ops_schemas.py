"""Schemas of the WeCom operations endpoints (directory, handovers, behaviour, reconciliation)."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from backend.platform.api import OutputSchema, Schema

USERID = validate.Length(min=1, max=64)
CORP_ID = validate.Length(min=1, max=64)


class EmptySchema(Schema):
    pass


class AcceptedJobsSchema(OutputSchema):
    enqueued = fields.Integer()


class DepartmentQuerySchema(Schema):
    corp_id = fields.String(validate=CORP_ID)  # omitted: every corp's departments


class DepartmentSchema(OutputSchema):
    # Department ids repeat across corps (each has its own 1, 2, ...): the pair names one.
    corp_id = fields.String()
    department_id = fields.Integer()
    parent_id = fields.Integer(allow_none=True)
    name = fields.String()
    org_unit_id = fields.Integer(allow_none=True)
    manual = fields.Boolean()
    present = fields.Boolean()
    synced_at = fields.DateTime()


class DepartmentMapInSchema(Schema):
    department_id = fields.Integer(required=True, validate=validate.Range(min=1))
    org_unit_id = fields.Integer(required=True, allow_none=True, validate=validate.Range(min=1))
    corp_id = fields.String(load_default=None, validate=CORP_ID)  # omitted: the primary corp


class HandoverInSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(["resigned", "on_duty"]))
    handover_staff_id = fields.Integer(required=True, validate=validate.Range(min=1))
    takeover_staff_id = fields.Integer(required=True, validate=validate.Range(min=1))
    # Omitted: every customer of the advisor (our relations; for a resigned advisor also WeCom's
    # unassigned list).
    external_userids = fields.List(
        fields.String(validate=USERID), validate=validate.Length(min=1, max=5000), load_default=None
    )
    transfer_success_msg = fields.String(validate=validate.Length(max=200), load_default=None)

    @validates_schema
    def _message_only_on_duty(self, data: dict, **_kwargs: object) -> None:
        if data.get("transfer_success_msg") and data.get("kind") != "on_duty":
            raise ValidationError("only for on_duty transfers", "transfer_success_msg")


class HandoverItemSchema(OutputSchema):
    external_userid = fields.String()
    customer_id = fields.Integer(allow_none=True)
    customer_name = fields.String(allow_none=True)
    status = fields.String()
    errcode = fields.Integer(allow_none=True)
    takeover_time = fields.DateTime(allow_none=True)
    submitted_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class HandoverSchema(OutputSchema):
    id = fields.Integer()
    kind = fields.String()
    status = fields.String()
    handover_userid = fields.String()
    takeover_userid = fields.String()
    handover_staff_id = fields.Integer()
    takeover_staff_id = fields.Integer()
    handover_staff_name = fields.String(allow_none=True)
    takeover_staff_name = fields.String(allow_none=True)
    store_id = fields.Integer()
    requested_by = fields.Integer(allow_none=True)
    polls = fields.Integer()
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    counts = fields.Dict(keys=fields.String(), values=fields.Integer())
    failed = fields.Integer()
    items = fields.List(fields.Nested(HandoverItemSchema))
    # On the answer to a start: the advisor's customers beyond this handover's 5,000 (a new
    # request hands them over; those in this one are skipped).
    left_over = fields.Integer()
    list_incomplete = fields.Boolean()


class HandoverListItemSchema(OutputSchema):
    id = fields.Integer()
    kind = fields.String()
    status = fields.String()
    handover_userid = fields.String()
    takeover_userid = fields.String()
    store_id = fields.Integer()
    polls = fields.Integer()
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)


class HandoverQuerySchema(Schema):
    status = fields.String(validate=validate.OneOf(["collecting", "submitting", "polling", "finished"]))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class BehaviourRangeSchema(Schema):
    start_date = fields.Date(required=True)
    end_date = fields.Date(required=True)
    staff_id = fields.Integer(load_default=None, validate=validate.Range(min=1))

    @validates_schema
    def _ordered(self, data: dict, **_kwargs: object) -> None:
        if data["start_date"] > data["end_date"]:
            raise ValidationError("must not be after end_date", "start_date")


class BehaviourDaySchema(OutputSchema):
    staff_id = fields.Integer(allow_none=True)
    userid = fields.String()
    stat_date = fields.Date()
    chat_cnt = fields.Integer()
    message_cnt = fields.Integer()
    reply_percentage = fields.Float(allow_none=True)
    avg_reply_time = fields.Float(allow_none=True)
    negative_feedback_cnt = fields.Integer()
    new_apply_cnt = fields.Integer()
    new_contact_cnt = fields.Integer()
    pulled_at = fields.DateTime()


class AppMessageQuerySchema(Schema):
    status = fields.String(validate=validate.OneOf(["pending", "deferred", "retrying", "sent", "failed"]))
    kind = fields.String(validate=validate.Length(min=1, max=32))
    userid = fields.String(validate=USERID)
    # userids repeat across corps: with `userid`, the messages to that corp's member only
    corp_id = fields.String(validate=CORP_ID)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))  # of `limit` each


class AppMessageSchema(OutputSchema):
    id = fields.Integer()
    # The corp whose app sent it (recorded in the content): which corp's namesake `touser` names.
    corp_id = fields.Function(lambda message: (message.content or {}).get("corp_id"), allow_none=True)
    kind = fields.String(allow_none=True)
    touser = fields.List(fields.String())
    msgtype = fields.String()
    status = fields.String()
    attempts = fields.Integer()
    msgid = fields.String(allow_none=True)
    invalid_users = fields.String(allow_none=True)
    last_error = fields.String(allow_none=True)
    created_at = fields.DateTime()
    sent_at = fields.DateTime(allow_none=True)
