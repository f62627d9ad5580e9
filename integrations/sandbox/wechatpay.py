"""Fake of api.mch.weixin.qq.com (APIv3, WeChat Pay public-key mode).

Every request must carry a valid merchant `Authorization` signature and
`Wechatpay-Serial: <public key id>`; every answer is signed with the platform key.
New APIs (refunds, ...) register on the blueprint-like `routes` list in `create_wechatpay_app`.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import datetime
from typing import Any

from flask import Flask, Response, g, request

from . import crypto
from . import wechatpay_ledger as pay_ledger
from .common import CONTROL_PREFIX, answer, json_body, make_app
from .state import Order, SandboxState

SERVICE = "wechatpay"
AUTH_SCHEME = "WECHATPAY2-SHA256-RSA2048"
OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")
_AUTH_PARAM = re.compile(r'(\w+)="([^"]*)"')


def pay_error(status: int, code: str, message: str, detail: dict[str, Any] | None = None) -> Response:
    payload: dict[str, Any] = {"code": code, "message": message}
    if detail:
        payload["detail"] = detail
    return Response(json.dumps(payload, ensure_ascii=False), status=status, mimetype="application/json")


def pay_json(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False), status=status, mimetype="application/json")


def _param_error(message: str) -> Response:
    return pay_error(400, "PARAM_ERROR", message)


def _valid_rfc3339(value: Any) -> bool:
    if not isinstance(value, str) or "T" not in value:
        return False
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def create_wechatpay_app(state: SandboxState) -> Flask:
    creds = state.credentials

    def fault_response(fault: Any) -> Response:
        return pay_error(fault.http_status or 500, fault.code or "SYSTEM_ERROR", f"sandbox fault {fault.errcode}")

    app = make_app(SERVICE, state, fault_errcode_response=fault_response)

    def verify_merchant_signature() -> Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, rest = header.partition(" ")
        if scheme != AUTH_SCHEME:
            return pay_error(401, "SIGN_ERROR", "Authorization 认证类型错误")
        params = dict(_AUTH_PARAM.findall(rest))
        missing = [k for k in ("mchid", "nonce_str", "signature", "timestamp", "serial_no") if not params.get(k)]
        if missing:
            return pay_error(401, "SIGN_ERROR", f"Authorization 缺少 {','.join(missing)}")
        if params["mchid"] != creds["WECHATPAY_MCHID"]:
            return pay_error(401, "SIGN_ERROR", "mchid 与签名不匹配")
        if params["serial_no"] != creds["WECHATPAY_CERT_SERIAL"]:
            return pay_error(401, "SIGN_ERROR", "商户证书序列号有误")
        try:
            skew = abs(int(params["timestamp"]) - state.now())
        except ValueError:
            return pay_error(401, "SIGN_ERROR", "timestamp 格式错误")
        if skew > state.PAY_CLOCK_SKEW:
            return pay_error(401, "SIGN_ERROR", "请求的时间戳已过期")
        path = request.path
        if request.query_string:
            path += "?" + request.query_string.decode()
        body = request.get_data(as_text=True)
        message = f"{request.method}\n{path}\n{params['timestamp']}\n{params['nonce_str']}\n{body}\n"
        if not crypto.rsa_sha256_verify(state.merchant_public_key, message, params["signature"]):
            return pay_error(401, "SIGN_ERROR", "签名错误")
        if request.headers.get("Wechatpay-Serial") != creds["WECHATPAY_PUBLIC_KEY_ID"]:
            return _param_error("Wechatpay-Serial 与微信支付公钥 ID 不匹配")
        return None

    @app.before_request
    def _authenticate() -> Response | None:
        if request.path.startswith(CONTROL_PREFIX):
            return None
        return verify_merchant_signature()

    @app.after_request
    def _sign(response: Response) -> Response:
        if request.path.startswith(CONTROL_PREFIX) or g.get("sandbox_unsigned"):
            return response
        body = response.get_data(as_text=True)
        response.headers.update(state.pay_response_headers(body))
        return response

    @app.post("/v3/pay/transactions/jsapi")
    def jsapi_prepay() -> Response:
        data = json_body()
        if data is None:
            return _param_error("请求体不是 JSON 对象")
        problem = validate_jsapi_order(data)
        if problem:
            return _param_error(problem)
        if data["appid"] != creds["WECHATPAY_APPID"] or data["mchid"] != creds["WECHATPAY_MCHID"]:
            return pay_error(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        no = data["out_trade_no"]
        with state.lock:
            order = state.orders.get(no)
            if order is not None:
                if order.trade_state == "SUCCESS":
                    return pay_error(400, "ORDERPAID", "该订单已支付")
                if order.trade_state == "CLOSED":
                    return pay_error(400, "ORDER_CLOSED", "该订单已关闭")
                if order.request != data:
                    return pay_error(400, "INVALID_REQUEST", "201 商户订单号重复")
                return pay_json({"prepay_id": order.prepay_id})
            prepay_id = "wx" + datetime.now().strftime("%d%H%M%S") + secrets.token_hex(12)
            state.orders[no] = Order(request=data, prepay_id=prepay_id, created_at=state.now())
        return pay_json({"prepay_id": prepay_id})

    @app.get("/v3/pay/transactions/out-trade-no/<no>")
    def query_by_out_trade_no(no: str) -> Response:
        if request.args.get("mchid") != creds["WECHATPAY_MCHID"]:
            return _param_error("mchid 参数缺失或有误")
        view = state.transaction_view(no)
        if view is None:
            return pay_error(404, "ORDER_NOT_EXIST", "订单不存在")
        return pay_json(view)

    @app.post("/v3/pay/transactions/out-trade-no/<no>/close")
    def close_order(no: str) -> Response:
        data = json_body()
        if data is None or data.get("mchid") != creds["WECHATPAY_MCHID"]:
            return _param_error("mchid 参数缺失或有误")
        with state.lock:
            order = state.orders.get(no)
            if order is None:
                return pay_error(404, "ORDER_NOT_EXIST", "订单不存在")
            if order.trade_state == "SUCCESS":
                return pay_error(400, "ORDERPAID", "该订单已支付")
            order.trade_state = "CLOSED"
        return Response(status=204)

    @app.post("/v3/refund/domestic/refunds")
    def create_refund() -> Response:
        data = json_body()
        if data is None:
            return _param_error("请求体不是 JSON 对象")
        notify_url = data.get("notify_url")
        if notify_url is not None and (not str(notify_url).startswith("https://") or "?" in str(notify_url)):
            return _param_error("notify_url 须为 https 地址且不能携带参数")
        status, payload = pay_ledger.apply_refund(state, data)
        if status != 200:
            return pay_error(status, payload["code"], payload["message"])
        return pay_json(payload)

    @app.get("/v3/refund/domestic/refunds/<no>")
    def query_refund(no: str) -> Response:
        with state.lock:
            refund = pay_ledger.ledger(state).refunds.get(no)
            view = pay_ledger.refund_view(refund) if refund else None
        if view is None:
            return pay_error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return pay_json(view)

    @app.get("/v3/bill/tradebill")
    def trade_bill() -> Response:
        bill_date = request.args.get("bill_date", "")
        bill_type = request.args.get("bill_type", "ALL")
        try:
            datetime.strptime(bill_date, "%Y-%m-%d")
        except ValueError:
            return _param_error("bill_date 须为 YYYY-MM-DD")
        if bill_type not in ("ALL", "SUCCESS", "REFUND"):
            return _param_error("bill_type 有误")
        if request.args.get("tar_type") not in (None, ""):
            return _param_error("sandbox 只提供未压缩账单（不传 tar_type）")
        if bill_date > pay_ledger.china_date(state.now()):
            return pay_error(400, "NO_STATEMENT_EXIST", "账单尚未生成")
        token = pay_ledger.issue_bill_token(state, bill_date, bill_type)
        text = pay_ledger.build_trade_bill(state, bill_date, bill_type)
        return pay_json(
            {
                "hash_type": "SHA1",
                "hash_value": pay_ledger.sha1_hex(text),
                "download_url": request.url_root.rstrip("/") + f"/v3/billdownload/file?token={token}",
            }
        )

    @app.get("/v3/billdownload/file")
    def download_bill() -> Response:
        text = pay_ledger.bill_for_token(state, request.args.get("token", ""))
        if text is None:
            return pay_error(400, "INVALID_REQUEST", "下载地址无效或已过期")
        g.sandbox_unsigned = True  # the file itself is not signed; its SHA1 came with the URL
        return Response(text.encode("utf-8"), mimetype="application/octet-stream")

    # --- control endpoints -------------------------------------------------------------
    @app.post(CONTROL_PREFIX + "pay")
    def control_pay() -> Response:
        """The payer pays. With `deliver: true` the notification is POSTed to the order's
        notify_url (`copies`, `concurrent`, `retries`); otherwise it is returned."""
        data = json_body() or {}
        try:
            if data.get("deliver"):
                plaintext, statuses = pay_ledger.notify_paid(
                    state,
                    data["out_trade_no"],
                    copies=int(data.get("copies", 1)),
                    concurrent=bool(data.get("concurrent")),
                    retries=int(data.get("retries", 0)),
                )
                return answer({"transaction": plaintext, "statuses": statuses})
            plaintext = state.mark_paid(data["out_trade_no"])
        except (KeyError, ValueError) as exc:
            return answer({"error": f"cannot pay: {exc}"}, status=400)
        headers, body = state.build_pay_notification(plaintext, "TRANSACTION.SUCCESS")
        return answer({"transaction": plaintext, "notification": {"headers": headers, "body": body}})

    @app.post(CONTROL_PREFIX + "refund")
    def control_refund() -> Response:
        """Finish a PROCESSING refund (`status` SUCCESS / CLOSED / ABNORMAL) and deliver its
        notification to the refund's notify_url."""
        data = json_body() or {}
        try:
            plaintext, statuses = pay_ledger.notify_refund(
                state,
                data["out_refund_no"],
                data.get("status", "SUCCESS"),
                copies=int(data.get("copies", 1)),
                retries=int(data.get("retries", 0)),
            )
        except (KeyError, ValueError) as exc:
            return answer({"error": f"cannot finish refund: {exc}"}, status=400)
        return answer({"refund": plaintext, "statuses": statuses})

    return app


def validate_jsapi_order(data: dict[str, Any]) -> str | None:
    """The reason a JSAPI/mini-program order body is invalid, or None."""
    for key in ("appid", "mchid", "description", "out_trade_no", "notify_url", "amount", "payer"):
        if key not in data or data[key] in (None, ""):
            return f"输入源“/body/{key}”映射到字段“{key}”必填性规则校验失败，此字段为必填项"
    if not isinstance(data["description"], str) or len(data["description"].encode()) > 127:
        return "description 长度超过 127 字节"
    if not isinstance(data["out_trade_no"], str) or not OUT_TRADE_NO.match(data["out_trade_no"]):
        return "out_trade_no 须为 6-32 位数字、字母或 _-|*"
    notify_url = data["notify_url"]
    if not isinstance(notify_url, str) or not notify_url.startswith("https://") or "?" in notify_url:
        return "notify_url 须为 https 地址且不能携带参数"
    amount = data["amount"]
    if not isinstance(amount, dict) or type(amount.get("total")) is not int or amount["total"] <= 0:
        return "amount.total 须为大于 0 的整数（单位：分）"
    if amount.get("currency", "CNY") != "CNY":
        return "amount.currency 仅支持 CNY"
    payer = data["payer"]
    if not isinstance(payer, dict) or not payer.get("openid"):
        return "payer.openid 必填"
    if "time_expire" in data and not _valid_rfc3339(data["time_expire"]):
        return "time_expire 须为 RFC3339 格式"
    if "attach" in data and (not isinstance(data["attach"], str) or len(data["attach"]) > 128):
        return "attach 长度超过 128"
    return None
