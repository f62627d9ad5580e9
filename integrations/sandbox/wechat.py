"""Fake of api.weixin.qq.com for the mini-program: token, login, phone number, subscribe messages."""

from __future__ import annotations

import base64
import os
from typing import Any

from flask import Flask, Response, request

from .common import CONTROL_PREFIX, answer, fail, json_body, make_app, ok
from .state import SandboxState

SERVICE = "wechat"
MINIPROGRAM_STATES = ("developer", "trial", "formal")
# Value limits per data key prefix (subscribe message keyword types).
VALUE_LIMITS = {
    "thing": 20,
    "number": 32,
    "letter": 32,
    "symbol": 5,
    "character_string": 32,
    "name": 10,
    "phrase": 5,
    "phone_number": 17,
    "car_number": 8,
}


def create_wechat_app(state: SandboxState) -> Flask:
    app = make_app(SERVICE, state)
    creds = state.credentials

    def check_app_credentials(appid: str | None, secret: str | None) -> Response | None:
        if appid != creds["WECHAT_APP_ID"]:
            return fail(40013)
        if secret != creds["WECHAT_APP_SECRET"]:
            return fail(40125)
        return None

    def check_token() -> Response | None:
        errcode, _ = state.check_token(SERVICE, request.args.get("access_token"))
        return fail(errcode) if errcode else None

    @app.get("/cgi-bin/token")
    def token() -> Response:
        if request.args.get("grant_type") != "client_credential":
            return fail(40002)
        bad = check_app_credentials(request.args.get("appid"), request.args.get("secret"))
        if bad:
            return bad
        access_token, expires_in = state.issue_token(SERVICE, creds["WECHAT_APP_ID"], reuse_valid=False)
        # Success bodies of this API carry no errcode.
        return answer({"access_token": access_token, "expires_in": expires_in})

    @app.get("/sns/jscode2session")
    def jscode2session() -> Response:
        # No access_token needed here (wechatpy appends one anyway; it is ignored like upstream does).
        bad = check_app_credentials(request.args.get("appid"), request.args.get("secret"))
        if bad:
            return bad
        if request.args.get("grant_type") != "authorization_code":
            return fail(40002)
        status, user = state.consume_login_code(request.args.get("js_code"))
        if status == "used":
            return fail(40163)
        if status != "ok" or user is None:
            return fail(40029)
        body: dict[str, Any] = {
            "openid": user["openid"],
            "session_key": base64.b64encode(os.urandom(16)).decode(),
        }
        if user.get("unionid"):
            body["unionid"] = user["unionid"]
        return answer(body)  # no errcode in a success body (since 2021-12)

    @app.post("/wxa/business/getuserphonenumber")
    def getuserphonenumber() -> Response:
        bad = check_token()
        if bad:
            return bad
        data = json_body()
        if data is None:
            return fail(47001)
        status, payload = state.consume_phone_code(data.get("code"))
        if status != "ok" or payload is None:
            return fail(40029)
        phone = payload["phone"]
        return ok(
            phone_info={
                "phoneNumber": phone,
                "purePhoneNumber": phone,
                "countryCode": "86",
                "watermark": {"timestamp": int(state.now()), "appid": creds["WECHAT_APP_ID"]},
            }
        )

    @app.post("/cgi-bin/message/subscribe/send")
    def subscribe_send() -> Response:
        bad = check_token()
        if bad:
            return bad
        data = json_body()
        if data is None:
            return fail(47001)
        touser = data.get("touser")
        template_id = data.get("template_id")
        if not touser or touser not in state.users:
            return fail(40003)
        if not template_id:
            return fail(40037)
        if data.get("miniprogram_state", "formal") not in MINIPROGRAM_STATES:
            return fail(47003, "argument invalid! data.miniprogram_state")
        page = data.get("page")
        if page is not None and (not isinstance(page, str) or page.startswith("/")):
            return fail(41030, "invalid page")
        values = data.get("data")
        if not isinstance(values, dict) or not values:
            return fail(47003, "argument invalid! data is empty")
        for key, item in values.items():
            if not isinstance(item, dict) or not isinstance(item.get("value"), str):
                return fail(47003, f"argument invalid! data.{key}.value invalid")
            kind = key.rstrip("0123456789")
            limit = VALUE_LIMITS.get(kind)
            if limit is not None and len(item["value"]) > limit:
                return fail(47003, f"argument invalid! data.{key}.value exceeds {limit} chars")
        if not state.take_subscribe_grant(touser, template_id):
            return fail(43101)
        with state.lock:
            state.subscribe_messages.append(dict(data))
        return ok(msgid=int.from_bytes(os.urandom(6), "big"))

    # --- control endpoints -------------------------------------------------------------
    @app.post(CONTROL_PREFIX + "login-code")
    def control_login_code() -> Response:
        data = json_body() or {}
        if not data.get("openid"):
            return answer({"error": "openid is required"}, status=400)
        return answer({"code": state.issue_login_code(data["openid"], data.get("unionid"))})

    @app.post(CONTROL_PREFIX + "phone-code")
    def control_phone_code() -> Response:
        data = json_body() or {}
        phone = str(data.get("phone") or "")
        if not (phone.isdigit() and len(phone) == 11):
            return answer({"error": "phone must be 11 digits"}, status=400)
        return answer({"code": state.issue_phone_code(phone, data.get("openid"))})

    @app.post(CONTROL_PREFIX + "subscribe-grants")
    def control_subscribe_grants() -> Response:
        data = json_body() or {}
        try:
            state.set_subscribe_grants(data["openid"], data["template_id"], int(data.get("count", 1)))
        except (KeyError, TypeError, ValueError) as exc:
            return answer({"error": f"bad request: {exc}"}, status=400)
        return answer({"ok": True})

    @app.get(CONTROL_PREFIX + "subscribe-messages")
    def control_subscribe_messages() -> Response:
        with state.lock:
            return answer({"messages": list(state.subscribe_messages)})

    return app
