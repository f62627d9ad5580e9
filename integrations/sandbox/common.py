"""Pieces every sandbox app shares: request log, fault switches, control endpoints, JSON answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, request

from .state import SandboxState

CONTROL_PREFIX = "/_sandbox/"
ERRMSG = {
    0: "ok",
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40014: "invalid access_token",
    40029: "invalid code",
    40037: "invalid template_id",
    40056: "invalid agentid",
    40058: "invalid parameter",
    40068: "invalid tagid",
    40125: "invalid appsecret",
    40163: "code been used",
    41001: "access_token missing",
    41051: "welcome_code has been used or is invalid",
    42001: "access_token expired",
    43101: "user refuse to accept the msg",
    40005: "invalid file type",
    40006: "invalid file size",
    40007: "invalid media_id",
    44001: "empty media data",
    44002: "empty post data",
    45009: "reach max api daily quota limit",
    47001: "data format error",
    47003: "argument invalid!",
    60111: "invalid userid",
    84061: "not external contact",
    301002: "not allow operate another agent with this accesstoken",
}


def errcode_body(errcode: int, errmsg: str | None = None) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": errmsg or ERRMSG.get(errcode, "error")}


def answer(payload: dict[str, Any], status: int = 200) -> Response:
    # Upstream sends raw UTF-8; ensure_ascii=False keeps the sandbox honest about that.
    return Response(json.dumps(payload, ensure_ascii=False), status=status, mimetype="application/json")


def ok(**fields: Any) -> Response:
    return answer({"errcode": 0, "errmsg": "ok", **fields})


def fail(errcode: int, errmsg: str | None = None) -> Response:
    return answer(errcode_body(errcode, errmsg))


def json_body() -> dict[str, Any] | None:
    """The request body as a JSON object (wechatpy posts without a Content-Type)."""
    data = request.get_json(force=True, silent=True)
    return data if isinstance(data, dict) else None


def make_app(
    service: str,
    state: SandboxState,
    *,
    fault_errcode_response: Callable[[Any], Response] | None = None,
) -> Flask:
    """A Flask app for one service with logging, faults and the `/_sandbox/...` control routes."""
    app = Flask(f"dealerloop_sandbox_{service}")

    def _errcode_response(fault: Any) -> Response:
        return fail(fault.errcode)

    on_errcode = fault_errcode_response or _errcode_response

    @app.before_request
    def _log_and_faults() -> Response | None:
        if request.path.startswith(CONTROL_PREFIX):
            return None
        state.record(
            {
                "service": service,
                "method": request.method,
                "path": request.path,
                "query": request.args.to_dict(),
                "json": request.get_json(force=True, silent=True),
                "headers": {k: v for k, v in request.headers.items()},
            }
        )
        fault = state.take_fault(service, request.path)
        if fault is None:
            return None
        if fault.mode == "down":
            g.sandbox_unsigned = True
            return Response("Service Unavailable", status=503, mimetype="text/html")
        if fault.mode == "slow":
            state.sleep(fault.seconds)
            return None
        return on_errcode(fault)

    @app.get(CONTROL_PREFIX + "received")
    def _received() -> Response:
        return answer({"received": state.received(request.args.get("path"), service)})

    @app.post(CONTROL_PREFIX + "reset")
    def _reset() -> Response:
        state.reset()
        return answer({"ok": True})

    @app.post(CONTROL_PREFIX + "faults")
    def _faults() -> Response:
        data = json_body() or {}
        if data.get("mode") in (None, "clear"):
            state.clear_faults()
            return answer({"ok": True, "faults": []})
        try:
            fault = state.set_fault(
                data["mode"],
                errcode=data.get("errcode"),
                seconds=data.get("seconds"),
                path=data.get("path"),
                count=data.get("count"),
                service=service,
                http_status=data.get("http_status"),
                code=data.get("code"),
            )
        except (KeyError, ValueError, TypeError) as exc:
            return answer({"ok": False, "error": str(exc)}, status=400)
        return answer({"ok": True, "fault": fault})

    @app.delete(CONTROL_PREFIX + "faults")
    def _clear_faults() -> Response:
        state.clear_faults()
        return answer({"ok": True, "faults": []})

    return app
