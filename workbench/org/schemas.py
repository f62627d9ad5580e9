from marshmallow import fields, validate

from backend.org.models import OrgKind
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
    role = fields.String(validate=validate.Length(max=32))
