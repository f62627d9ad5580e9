from marshmallow import fields, validate

from backend.org.models import OrgKind, Role
from backend.platform.api import OutputSchema, Schema


class StaffMeSchema(OutputSchema):
    id = fields.Integer()
    name = fields.String()
    wecom_userid = fields.String()
    org_unit_id = fields.Integer()
    roles = fields.List(fields.String())
    scope = fields.Dict()


class OrgUnitSchema(OutputSchema):
    id = fields.Integer()
    kind = fields.Enum(OrgKind, by_value=True)
    code = fields.String()
    name = fields.String()
    parent_id = fields.Integer(allow_none=True)


class StaffSchema(OutputSchema):
    id = fields.Integer()
    name = fields.String()
    wecom_userid = fields.String()
    org_unit_id = fields.Integer()
    status = fields.String()
    roles = fields.List(fields.String())


class StaffQuerySchema(Schema):
    org_unit_id = fields.Integer()
    role = fields.Enum(Role, by_value=True)


class JsSdkQuerySchema(Schema):
    url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False, metadata={"description": "page URL"})
    agent = fields.Boolean(load_default=False)
    agent_id = fields.Integer(
        validate=validate.Range(min=0),
        metadata={"description": "the app that opened the page, when the staff member's corp has several"},
    )


class JsSdkSignatureSchema(OutputSchema):
    corpid = fields.String()
    appId = fields.String(metadata={"description": "wx.config only"})  # noqa: N815 - WeCom's name
    agentid = fields.String(metadata={"description": "wx.agentConfig only"})
    timestamp = fields.Integer()
    nonceStr = fields.String()  # noqa: N815 - WeCom's name
    signature = fields.String()
