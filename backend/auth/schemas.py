from marshmallow import fields, validate

from backend.platform.api import OutputSchema, Schema


class CodeLoginSchema(Schema):
    code = fields.String(
        required=True, validate=validate.Length(min=1, max=128), metadata={"description": "wx.login / WeCom OAuth code"}
    )


class StaffCodeLoginSchema(CodeLoginSchema):
    # Only the app that issued an OAuth code can exchange it, and the H5 opened inside WeCom
    # knows which app opened it; without these the primary app is meant.
    corp_id = fields.String(
        validate=validate.Length(min=1, max=64), metadata={"description": "corp of the app that opened the H5"}
    )
    agent_id = fields.Integer(
        validate=validate.Range(min=0), metadata={"description": "that app's agentid, when the corp has several"}
    )
    app = fields.String(
        validate=validate.Length(min=1, max=64),
        metadata={
            "description": "the app's key, as the workbench page's link (`?app=`) names it; instead of corp_id and "
            "agent_id, which, when also given, must be that app's. None of the three: the primary app"
        },
    )


class RefreshSchema(Schema):
    refresh_token = fields.String(required=True, validate=validate.Length(min=10, max=128))


class TokenPairSchema(OutputSchema):
    access_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    expires_in = fields.Integer(required=True, metadata={"description": "seconds"})
    refresh_token = fields.String(required=True)
    refresh_expires_in = fields.Integer(required=True)


class OwnerLoginResultSchema(TokenPairSchema):
    customer_id = fields.Integer(required=True)
    is_new_member = fields.Boolean(required=True)
    phone_bound = fields.Boolean(required=True)


class StaffLoginResultSchema(TokenPairSchema):
    staff_id = fields.Integer(required=True)
    name = fields.String(required=True)
    roles = fields.List(fields.String(), required=True)
    scope = fields.Dict(required=True)
