"""One error format for every error: `{code, status, message, errors}`.

`code` is a stable machine string (`customer.not_found`), `status` the HTTP status, `message`
human text (Chinese on the owner API, Chinese or English on the workbench by Accept-Language),
`errors` optional details (validation messages keyed by location and field).

Services raise `AppError` (never HTTP exceptions); the handlers here turn everything —
AppError, webargs validation, werkzeug 404/405/413, IntegrityError, anything unexpected —
into that one shape.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, request
from marshmallow import Schema, fields
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from backend.platform.db import DuplicateKey
from backend.platform.ports import UpstreamError

log = logging.getLogger("dealerloop.errors")

# code -> (Chinese, English). Owners always get Chinese.
MESSAGES: dict[str, tuple[str, str]] = {
    "request.invalid": ("请求参数有误", "The request is invalid"),
    "request.malformed_json": ("请求体不是有效的 JSON", "The request body is not valid JSON"),
    "request.too_large": ("请求体过大", "The request body is too large"),
    "request.not_found": ("请求的资源不存在", "Not found"),
    "request.method_not_allowed": ("不支持该请求方法", "Method not allowed"),
    "request.unsupported_media_type": ("不支持的内容类型", "Unsupported media type"),
    "request.idempotency_key_reused": (
        "该幂等键已用于不同的请求内容",
        "This Idempotency-Key was used with a different request",
    ),
    "request.idempotency_in_progress": ("相同请求正在处理中，请稍后重试", "The same request is in progress"),
    "request.conflict": ("数据冲突，请刷新后重试", "Conflict with the current state"),
    "request.out_of_range": ("参数超出允许范围", "A value is out of the range the field can hold"),
    "internal_error": ("服务器开小差了，请稍后再试", "Internal server error"),
    "service.busy": ("当前访问人数较多，请稍后再试", "The service is busy; retry shortly"),
    "auth.token_missing": ("请先登录", "Authentication required"),
    "auth.token_invalid": ("登录状态无效，请重新登录", "Invalid or expired token"),
    "auth.session_revoked": (
        "账号信息已变更，请重新登录",
        "This session was ended (the customer's records changed); log in again",
    ),
    "auth.wrong_audience": ("登录身份不适用于此接口", "This token is not valid for this API"),
    "auth.forbidden": ("没有权限执行该操作", "You are not allowed to do this"),
    "auth.login_code_invalid": ("登录凭证无效或已过期，请重新登录", "Login code invalid, used or expired"),
    "auth.refresh_token_invalid": ("登录已失效，请重新登录", "Refresh token invalid"),
    "auth.refresh_token_reused": (
        "检测到登录凭证被重复使用，已退出所有设备",
        "Refresh token reuse detected; the session family is revoked",
    ),
    "auth.staff_unknown": ("你不是本系统的员工账号，请联系管理员", "This WeCom user is not a staff member"),
    "auth.staff_inactive": ("员工账号已停用", "This staff account is not active"),
    "auth.not_a_member": ("请使用企业成员身份登录", "Only corp members can log in"),
    "upstream.unavailable": ("微信服务暂时不可用，请稍后再试", "The WeChat service is unavailable"),
    "upstream.timeout": ("微信服务响应超时，请稍后再试", "The WeChat service timed out"),
    "upstream.rejected": ("微信服务拒绝了请求", "The WeChat service rejected the request"),
    "member.phone_code_invalid": ("手机号授权码无效或已过期", "Phone-number code invalid or expired"),
    "member.phone_taken": ("该手机号已绑定其他账号", "This phone number belongs to another customer"),
    "member.not_found": ("会员不存在", "Member not found"),
    "car.not_found": ("车辆不存在", "Car not found"),
    "car.vin_taken": ("该车架号已绑定在其他车主名下", "This VIN belongs to another customer"),
    "car.has_active_booking": (
        "该车辆还有未完成的预约，请先取消预约再删除",
        "This car has a booking still to come: cancel it first",
    ),
    "customer.not_found": ("客户不存在", "Customer not found"),
    "customer.merge_invalid": ("无法合并这两个客户", "These customers cannot be merged"),
    "customer.merge_not_found": ("合并记录不存在", "Merge record not found"),
    "customer.merge_already_reversed": ("该合并已撤销", "This merge was already reversed"),
    "customer.phone_forbidden": ("没有查看完整手机号的权限", "Not allowed to see the full phone number"),
    "org.not_found": ("组织节点不存在", "Org unit not found"),
    "staff.not_found": ("员工不存在", "Staff not found"),
    "timeline.cursor_invalid": ("分页游标无效", "Invalid cursor"),
}


def register_messages(messages: dict[str, tuple[str, str]]) -> None:
    """Features add their error codes (code -> (Chinese, English)) next to their own code."""
    clash = {code for code in messages if code in MESSAGES and MESSAGES[code] != messages[code]}
    if clash:
        raise ValueError(f"error codes defined twice: {sorted(clash)}")
    MESSAGES.update(messages)


class AppError(Exception):
    """A domain error with a stable code. Raised by services, rendered at the edge."""

    def __init__(self, code: str, status: int = 400, errors: dict[str, Any] | None = None, message: str = ""):
        super().__init__(code)
        self.code = code
        self.status = status
        self.errors = errors
        self.message = message


def not_found(code: str) -> AppError:
    return AppError(code, 404)


def upstream_error(exc: UpstreamError) -> AppError:
    """A WeChat / WeCom / Pay failure as the client sees it: a gateway timeout (504) or a bad
    gateway (502); a refusal carries WeCom's errcode so that staff can look it up."""
    if exc.reason == "timeout":
        return AppError("upstream.timeout", 504)
    if exc.reason == "unavailable":
        return AppError("upstream.unavailable", 502)
    return AppError("upstream.rejected", 502, errors={"upstream": {"errcode": exc.errcode}})


class ErrorSchema(Schema):
    code = fields.String(required=True, metadata={"description": "stable machine code, e.g. customer.not_found"})
    status = fields.Integer(required=True, metadata={"description": "HTTP status"})
    message = fields.String(required=True)
    errors = fields.Dict(metadata={"description": "details, e.g. validation messages by location and field"})


def _wants_english() -> bool:
    if request.path.startswith("/api/app/"):
        return False
    lang = request.headers.get("Accept-Language", "")
    return lang.lower().startswith("en")


def message_for(code: str, fallback: str = "") -> str:
    zh, en = MESSAGES.get(code, (fallback or code, fallback or code))
    return en if _wants_english() else zh


def error_body(code: str, status: int, errors: Any = None, message: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "status": status, "message": message or message_for(code)}
    if errors:
        body["errors"] = errors
    return body


_HTTP_CODES = {
    400: "request.invalid",
    404: "request.not_found",
    405: "request.method_not_allowed",
    413: "request.too_large",
    415: "request.unsupported_media_type",
    422: "request.invalid",
    409: "request.conflict",
    401: "auth.token_missing",
    403: "auth.forbidden",
}


def _from_http_exception(exc: HTTPException) -> tuple[dict[str, Any], int, dict[str, str]]:
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    errors = data.get("messages") or data.get("errors")
    code = _HTTP_CODES.get(status, "internal_error" if status >= 500 else "request.invalid")
    message = ""
    if status == 400 and exc.description and "JSON" in str(exc.description):
        code = "request.malformed_json"
    if isinstance(errors, dict) and errors.get("json") in (["Invalid JSON body."], {"_schema": ["Invalid JSON body."]}):
        # webargs' way of saying the body is not JSON at all
        code, status, errors = "request.malformed_json", 400, None
    if isinstance(data.get("code"), str):  # an AppError raised through flask_smorest.abort
        code = data["code"]
        message = data.get("message", "")
    headers = dict(getattr(exc, "headers", None) or {}) if isinstance(getattr(exc, "headers", None), dict) else {}
    return error_body(code, status, errors, message), status, headers


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(AppError)
    def _app_error(exc: AppError):  # type: ignore[no-untyped-def]
        return error_body(exc.code, exc.status, exc.errors, exc.message), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        body, status, headers = _from_http_exception(exc)
        return body, status, headers

    @app.errorhandler(IntegrityError)
    def _integrity_error(exc: IntegrityError):  # type: ignore[no-untyped-def]
        # A race the service did not foresee (two requests creating the same unique thing).
        log.warning("integrity error answered 409: %s", exc.orig)
        return error_body("request.conflict", 409), 409

    @app.errorhandler(DuplicateKey)
    def _duplicate_key(exc: DuplicateKey):  # type: ignore[no-untyped-def]
        # The same, met inside `unique_savepoint` by a service that found nothing to answer
        # with (a refused key it did not expect): the same conflict, not a crash.
        log.warning("duplicate key answered 409: %s", exc)
        return error_body("request.conflict", 409), 409

    @app.errorhandler(DataError)
    def _data_error(exc: DataError):  # type: ignore[no-untyped-def]
        # A value the schema let through but the column cannot hold (an id beyond its integer
        # type, a string beyond its length): the request's fault, and nothing was written.
        log.warning("data error answered 422: %s", exc.orig)
        return error_body("request.out_of_range", 422), 422

    @app.errorhandler(PoolTimeout)
    def _pool_timeout(exc: PoolTimeout):  # type: ignore[no-untyped-def]
        # Every database connection of this process stayed busy for DB_POOL_TIMEOUT (a flash
        # sale, a slow database): a retryable 503, not a crash; nothing was written.
        log.warning("database pool exhausted: %s", exc)
        return error_body("service.busy", 503), 503, {"Retry-After": "1"}

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        if isinstance(exc, HTTPException):
            return _http_error(exc)
        log.exception("unhandled error")
        return error_body("internal_error", 500), 500

    @app.errorhandler(OperationalError)
    def _operational_error(exc: OperationalError):  # type: ignore[no-untyped-def]
        # The request lost a race for rows to another transaction: a deadlock (InnoDB rolled
        # this one back) or a lock wait that timed out. Nothing of it is kept (the unit of work
        # rolls back on any error), and the same request again will do: a retryable 503.
        if _lost_lock_race(exc):
            log.warning("database lock conflict answered 503: %s", exc.orig)
            return error_body("service.busy", 503), 503, {"Retry-After": "1"}
        return _unexpected(exc)


# MariaDB's ER_LOCK_WAIT_TIMEOUT and ER_LOCK_DEADLOCK.
RETRYABLE_DB_ERRORS = frozenset({1205, 1213})


def _db_errno(exc: BaseException) -> int | None:
    args = getattr(getattr(exc, "orig", None), "args", None)
    return args[0] if args and isinstance(args[0], int) else None


def _lost_lock_race(exc: OperationalError) -> bool:
    """The error, or one it was raised while handling, is a deadlock or lock wait timeout. A
    deadlock inside a savepoint reaches us as the savepoint's failed rollback (1305: InnoDB
    rolled the whole transaction back, savepoint included), raised while handling the 1213."""
    seen: BaseException | None = exc
    for _ in range(5):  # the chain is short; a bound keeps a cycle from looping
        if seen is None:
            return False
        if _db_errno(seen) in RETRYABLE_DB_ERRORS:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
