from marshmallow import ValidationError, fields, validate

from backend.customers.models import Gender, LifecycleStage
from backend.customers.vin import vin_problem
from backend.platform.api import OutputSchema, Schema


class PhoneCodeSchema(Schema):
    code = fields.String(
        required=True, validate=validate.Length(min=1, max=128), metadata={"description": "getPhoneNumber code"}
    )


class ProfileUpdateSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=64))
    gender = fields.Enum(Gender, by_value=True)
    birthday = fields.Date()


class MemberProfileSchema(OutputSchema):
    id = fields.Integer()
    name = fields.String(allow_none=True)
    gender = fields.Enum(Gender, by_value=True)
    birthday = fields.Date(allow_none=True)
    phone = fields.String(allow_none=True, metadata={"description": "masked, 138****1234"})
    tier = fields.String()
    home_store_id = fields.Integer(allow_none=True)


def _validate_vin(value: str) -> None:
    problem = vin_problem(value)
    if problem:
        raise ValidationError(problem)


class CarInSchema(Schema):
    vin = fields.String(required=True, validate=_validate_vin, metadata={"example": "LFV2A21K7G3000001"})
    plate = fields.String(validate=validate.Length(max=16), allow_none=True)
    brand = fields.String(validate=validate.Length(max=64), allow_none=True)
    series = fields.String(validate=validate.Length(max=64), allow_none=True)
    model = fields.String(validate=validate.Length(max=128), allow_none=True)
    purchase_date = fields.Date(allow_none=True)
    mileage_km = fields.Integer(validate=validate.Range(min=0, max=2_000_000), allow_none=True)


class CarPatchSchema(CarInSchema):
    vin = fields.String(validate=_validate_vin)  # optional on PATCH


class CarSchema(OutputSchema):
    id = fields.Integer()
    vin = fields.String()
    plate = fields.String(allow_none=True)
    brand = fields.String(allow_none=True)
    series = fields.String(allow_none=True)
    model = fields.String(allow_none=True)
    purchase_date = fields.Date(allow_none=True)
    mileage_km = fields.Integer(allow_none=True)
    last_service_date = fields.Date(allow_none=True)


class AdvisorRefSchema(OutputSchema):
    role = fields.String()
    staff_id = fields.Integer()


class CustomerSummarySchema(OutputSchema):
    id = fields.Integer()
    name = fields.String(allow_none=True)
    gender = fields.Enum(Gender, by_value=True)
    phone = fields.String(allow_none=True, metadata={"description": "masked"})
    home_store_id = fields.Integer(allow_none=True)
    lifecycle_stage = fields.Enum(LifecycleStage, by_value=True)
    tier = fields.String()
    acquisition_channel = fields.String(allow_none=True)
    advisors = fields.List(fields.Nested(AdvisorRefSchema))


class ProfileProjectionSchema(OutputSchema):
    touchpoint_count = fields.Integer()
    last_touch_at = fields.DateTime(allow_none=True)
    last_contact_at = fields.DateTime(allow_none=True)
    last_contact_advisor_id = fields.Integer(allow_none=True)
    last_advisor_contact_at = fields.DateTime(allow_none=True)
    last_store_visit_at = fields.DateTime(allow_none=True)
    last_store_visit_store_id = fields.Integer(allow_none=True)
    counts_by_kind = fields.Dict(keys=fields.String(), values=fields.Integer())


class WeComRelationTagSchema(OutputSchema):
    tag_id = fields.String()
    name = fields.String(allow_none=True, metadata={"description": "null: not in the tag library (yet)"})
    group_name = fields.String(allow_none=True)


class WeComRelationSchema(OutputSchema):
    corp_id = fields.String()
    userid = fields.String(metadata={"description": "the advisor's WeCom userid"})
    advisor_id = fields.Integer(allow_none=True)
    advisor_name = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "active, half, deleted_by_customer, deleted_by_advisor, ..."})
    added_at = fields.DateTime(allow_none=True)
    lost_at = fields.DateTime(allow_none=True)
    channel_id = fields.Integer(allow_none=True)
    remark = fields.String(allow_none=True, metadata={"description": "the advisor's remark in WeCom"})
    description = fields.String(allow_none=True)
    remark_mobiles = fields.List(fields.String(), metadata={"description": "numbers noted in WeCom, masked"})
    tags = fields.List(fields.Nested(WeComRelationTagSchema), metadata={"description": "corporate tags"})


class CustomerDetailSchema(CustomerSummarySchema):
    birthday = fields.Date(allow_none=True)
    cars = fields.List(fields.Nested(CarSchema))
    identities = fields.List(fields.String(), metadata={"description": "kinds of identifiers linked"})
    profile = fields.Nested(ProfileProjectionSchema)
    wecom_relations = fields.List(
        fields.Nested(WeComRelationSchema), metadata={"description": "the customer's WeCom friends among our advisors"}
    )


class CustomerListQuerySchema(Schema):
    q = fields.String(validate=validate.Length(max=64), metadata={"description": "name contains"})
    store_id = fields.Integer()
    stage = fields.Enum(LifecycleStage, by_value=True)
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=10_000))
    page_size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class CustomerPageSchema(OutputSchema):
    items = fields.List(fields.Nested(CustomerSummarySchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()


class PhoneRevealSchema(OutputSchema):
    phone = fields.String(allow_none=True)


class TextRevealSchema(OutputSchema):
    text = fields.String(allow_none=True, metadata={"description": "the text as typed, phone numbers in full"})


class MergeInSchema(Schema):
    source_id = fields.Integer(required=True)
    target_id = fields.Integer(required=True)
    reason = fields.String(required=True, validate=validate.Length(min=2, max=255))


class MergeSchema(OutputSchema):
    id = fields.Integer()
    source_id = fields.Integer()
    target_id = fields.Integer()
    reason = fields.String()
    merged_at = fields.DateTime()
    moved = fields.Dict()
    reversed_at = fields.DateTime(allow_none=True)


class PhoneSearchSchema(Schema):
    phone = fields.String(required=True, validate=validate.Length(min=11, max=20))
