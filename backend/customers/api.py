"""Owner API (/api/app/v1): login, profile, phone binding, cars."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView

from backend.auth import service as auth_service
from backend.auth.schemas import CodeLoginSchema, OwnerLoginResultSchema, RefreshSchema, TokenPairSchema
from backend.customers import service
from backend.customers.models import Customer, IdentityKind
from backend.customers.schemas import (
    CarInSchema,
    CarPatchSchema,
    CarSchema,
    MemberProfileSchema,
    PhoneCodeSchema,
    ProfileUpdateSchema,
)
from backend.platform.api import Blueprint, current_member, public, self_only
from backend.platform.db import db
from backend.platform.idempotency import idempotent

blp = Blueprint(
    "owner", __name__, url_prefix="/api/app/v1", audience="owner", description="车主小程序接口 — owner mini-program API"
)


def _gateways() -> Any:
    return current_app.extensions["dealerloop.gateways"]


def _profile(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "name": customer.name,
        "gender": customer.gender,
        "birthday": customer.birthday,
        "phone": service.masked_phone(customer),
        "tier": customer.tier,
        "home_store_id": customer.home_store_id,
    }


@blp.route("/auth/login", methods=["POST"])
@public
@blp.arguments(CodeLoginSchema)
@blp.response(200, OwnerLoginResultSchema)
def login(data: dict[str, Any]) -> dict[str, Any]:
    """Log in with a wx.login code (code2session); the member is found or created.

    Any owner call may answer 401 `auth.session_revoked`: the customer's records changed under
    the session (staff undid a merge of two customers), so the app logs in again with a fresh
    wx.login code; refreshing is not enough for a session opened while the merge stood."""
    session = db.session()
    result = service.login_member(session, _gateways().miniprogram, data["code"])
    tokens = auth_service.issue_tokens(
        session, "owner", result.customer.id, service.owner_token_claims(session, result.customer.id)
    )
    return {
        **tokens,
        "customer_id": result.customer.id,
        "is_new_member": result.created,
        "phone_bound": result.customer.identity(IdentityKind.PHONE) is not None,
    }


@blp.route("/auth/refresh", methods=["POST"])
@public
@blp.arguments(RefreshSchema)
@blp.response(200, TokenPairSchema)
def refresh(data: dict[str, Any]) -> dict[str, Any]:
    """Rotate the refresh token. Reusing an already-rotated token revokes the whole family."""
    session = db.session()
    return auth_service.refresh_tokens(
        session, "owner", data["refresh_token"], lambda subject_id: service.owner_token_claims(session, subject_id)
    )


@blp.route("/auth/logout", methods=["POST"])
@public
@blp.arguments(RefreshSchema)
@blp.response(204)
def logout(data: dict[str, Any]) -> None:
    auth_service.logout(db.session(), "owner", data["refresh_token"])


@blp.route("/me")
class Me(MethodView):
    @self_only
    @blp.response(200, MemberProfileSchema)
    def get(self) -> dict[str, Any]:
        """My profile (phone masked)."""
        customer = db.session().get(Customer, current_member().customer_id)
        return _profile(customer)

    @self_only
    @blp.arguments(ProfileUpdateSchema)
    @blp.response(200, MemberProfileSchema)
    def patch(self, data: dict[str, Any]) -> dict[str, Any]:
        """Update name, gender, birthday."""
        return _profile(service.update_profile(db.session(), current_member(), data))


@blp.route("/me/phone", methods=["POST"])
@self_only
@blp.arguments(PhoneCodeSchema)
@blp.response(200, MemberProfileSchema)
def bind_phone(data: dict[str, Any]) -> dict[str, Any]:
    """Bind the phone number from a getPhoneNumber code."""
    customer = service.bind_phone(
        db.session(), current_member(), _gateways().miniprogram, service.vault(), data["code"]
    )
    return _profile(customer)


@blp.route("/me/cars")
class MyCars(MethodView):
    @self_only
    @blp.response(200, CarSchema(many=True))
    def get(self) -> list[Any]:
        """My cars."""
        return service.list_member_cars(db.session(), current_member())

    @self_only
    @idempotent
    @blp.arguments(CarInSchema)
    @blp.response(201, CarSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Bind a car (VIN validated). Send an Idempotency-Key to make retries safe."""
        return service.add_car(db.session(), current_member(), data)


@blp.route("/me/cars/<int:car_id>")
class MyCar(MethodView):
    @self_only
    @blp.response(200, CarSchema)
    def get(self, car_id: int) -> Any:
        return service.member_car_or_404(db.session(), current_member(), car_id)

    @self_only
    @blp.arguments(CarPatchSchema)
    @blp.response(200, CarSchema)
    def patch(self, data: dict[str, Any], car_id: int) -> Any:
        return service.update_car(db.session(), current_member(), car_id, data)

    @self_only
    @blp.response(204)
    def delete(self, car_id: int) -> None:
        service.remove_car(db.session(), current_member(), car_id)
