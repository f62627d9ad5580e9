"""Staff login with a WeCom OAuth code, refresh, logout, who am I."""

from __future__ import annotations

from typing import Any

from backend.auth import service as auth_service
from backend.auth.schemas import RefreshSchema, StaffCodeLoginSchema, StaffLoginResultSchema, TokenPairSchema
from backend.org import service as org_service
from backend.org.models import Staff
from backend.platform.api import Blueprint, current_staff, public, self_only
from backend.platform.db import db
from backend.platform.errors import AppError, register_messages, upstream_error
from backend.platform.ports import UpstreamError, WeComGateway
from backend.wecom import service as wecom_service
from workbench.org.schemas import JsSdkQuerySchema, JsSdkSignatureSchema, StaffMeSchema

blp = Blueprint("wb_auth", __name__, url_prefix="/api/workbench/v1", audience="staff", description="Workbench login")

register_messages(
    {
        "auth.corp_unknown": ("该企业微信未接入本系统", "No WeCom app of this corp is configured"),
        "auth.app_unknown": ("该企业微信应用未接入本系统", "No WeCom app has this key"),
    }
)


def _wecom_app(corp_id: str, agent_id: int | None = None) -> WeComGateway:
    """The configured app of a corp: a code or a ticket is only good with that app's own token."""
    try:
        gateway = wecom_service.gateway_for(corp_id, str(agent_id or ""))
    except LookupError:
        raise AppError("auth.corp_unknown", 422) from None
    if agent_id and str(gateway.agent_id) != str(agent_id):  # gateway_for falls back to the first app
        raise AppError("auth.corp_unknown", 422, errors={"agent_id": [str(agent_id)]})
    return gateway


def _login_app(data: dict[str, Any]) -> WeComGateway:
    """The app whose OAuth code this is: named by its key (the workbench pages), else by corp
    and agent, else the primary app. A key with a corp or agent of another app is refused: the
    caller is confused about where the code came from."""
    if not data.get("app"):
        return _wecom_app(data.get("corp_id") or wecom_service.current_corp_id(), data.get("agent_id"))
    gateway = wecom_service.app_by_key(data["app"])
    if gateway is None:
        raise AppError("auth.app_unknown", 422, errors={"app": [data["app"]]})
    named = (data.get("corp_id", gateway.corp_id), str(data.get("agent_id", gateway.agent_id)))
    if named != (gateway.corp_id, str(gateway.agent_id)):
        raise AppError("auth.app_unknown", 422, errors={"app": ["not the app of this corp_id / agent_id"]})
    return gateway


def _claims(staff_id: int) -> dict[str, Any]:
    session = db.session()
    actor = org_service.load_staff_actor(session, staff_id)
    return org_service.staff_claims(actor)


@blp.route("/auth/login", methods=["POST"])
@public
@blp.arguments(StaffCodeLoginSchema)
@blp.response(200, StaffLoginResultSchema)
def login(data: dict[str, Any]) -> dict[str, Any]:
    """Log in with a WeCom OAuth code (auth/getuserinfo) of the app named by its key `app` (as
    the workbench page's link names it) or by `corp_id` (and `agent_id`), the primary app when
    none is named; the staff member is looked up in that app's corp. Unknown corp → 422
    auth.corp_unknown, unknown key → 422 auth.app_unknown, a code of another app → 401
    auth.login_code_invalid, unknown userid → 403 auth.staff_unknown."""
    session = db.session()
    gateway = _login_app(data)
    staff, actor = org_service.login_staff(session, gateway, data["code"])
    claims = org_service.staff_claims(actor)
    tokens = auth_service.issue_tokens(session, "staff", staff.id, claims)
    return {**tokens, "staff_id": staff.id, "name": staff.name, **claims}


@blp.route("/auth/refresh", methods=["POST"])
@public
@blp.arguments(RefreshSchema)
@blp.response(200, TokenPairSchema)
def refresh(data: dict[str, Any]) -> dict[str, Any]:
    return auth_service.refresh_tokens(db.session(), "staff", data["refresh_token"], _claims)


@blp.route("/auth/logout", methods=["POST"])
@public
@blp.arguments(RefreshSchema)
@blp.response(204)
def logout(data: dict[str, Any]) -> None:
    auth_service.logout(db.session(), "staff", data["refresh_token"])


@blp.route("/me")
@self_only
@blp.response(200, StaffMeSchema)
def me() -> Any:
    """The logged-in staff member, roles and scope."""
    actor = current_staff()
    staff = db.session().get(Staff, actor.staff_id)
    return {
        "id": staff.id,
        "name": staff.name,
        "wecom_userid": staff.wecom_userid,
        "org_unit_id": staff.org_unit_id,
        **org_service.staff_claims(actor),
    }


@blp.route("/jssdk/signature")
@self_only
@blp.arguments(JsSdkQuerySchema, location="query")
@blp.response(200, JsSdkSignatureSchema)
def jssdk_signature(args: dict[str, Any]) -> dict[str, Any]:
    """Arguments for the sidebar's `wx.config` (agent=false) or `wx.agentConfig` (agent=true),
    signed by the staff member's own corp: WeCom checks the signature against the corp the page
    runs in."""
    staff = db.session().get(Staff, current_staff().staff_id)
    gateway = _wecom_app(staff.corp_id, args.get("agent_id"))
    try:
        return gateway.jsapi_signature(args["url"], agent=args["agent"])
    except UpstreamError as exc:
        raise upstream_error(exc) from exc
