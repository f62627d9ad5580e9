"""WeChat Pay APIv3 gateway on wechatpayv3 2.0.4, public-key mode.

Public-key mode makes no network call at construction and verifies answers with the WeChat Pay
public key (`Wechatpay-Serial` = its `PUB_KEY_ID_...`). The SDK never raises on non-2xx answers;
`request` returns (status, body) for 4xx and raises `UpstreamError` for transport failures, 5xx
and answers whose signature does not verify. The SDK does not check notification freshness, so
`parse_notification` adds a ±5-minute window, and it refuses a `Wechatpay-Serial` other than our
public key id before the SDK sees it (the SDK would otherwise try to download platform
certificates — we are a public-key-mode merchant and have none).

Refunds go to their own notify URL (`refund_notify_url`): wechatpayv3's `refund()` would default
to the payment notify URL and refund events would reach the payment handler.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.type import RequestType

from backend.platform.ports import UpstreamError

SERVICE = "wechatpay"
DEFAULT_GATEWAY = "https://api.mch.weixin.qq.com"
NOTIFICATION_MAX_SKEW = 300
_NONCE_ALPHABET = string.ascii_letters + string.digits
_HEADER_NAMES = (
    "Wechatpay-Signature",
    "Wechatpay-Timestamp",
    "Wechatpay-Nonce",
    "Wechatpay-Serial",
    "Wechatpay-Signature-Type",
)


class NotificationError(Exception):
    """A WeChat Pay notification that must be answered with 4xx (bad signature, stale, undecryptable)."""


class WeChatPayClient:
    """`WeChatPayGateway` for one direct merchant (mini-program JSAPI payments)."""

    def __init__(
        self,
        *,
        mchid: str,
        appid: str,
        private_key: str,
        cert_serial_no: str,
        apiv3_key: str,
        public_key: str,
        public_key_id: str,
        notify_url: str | None = None,
        refund_notify_url: str | None = None,
        gateway: str = DEFAULT_GATEWAY,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.mchid = mchid
        self.appid = appid
        self.notify_url = notify_url
        self.refund_notify_url = refund_notify_url or _sibling_url(notify_url, "refund")
        self.public_key_id = public_key_id
        self.clock = clock
        self.sdk = WeChatPay(
            wechatpay_type=WeChatPayType.MINIPROG,
            mchid=mchid,
            private_key=private_key,
            cert_serial_no=cert_serial_no,
            appid=appid,
            apiv3_key=apiv3_key,
            notify_url=notify_url,
            timeout=timeout,
            public_key=public_key,
            public_key_id=public_key_id,
        )
        self.sdk._core._gate_way = gateway.rstrip("/")

    # --- WeChatPayGateway ------------------------------------------------------------
    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict]:
        """Signed call; `path` is the upstream path with its query, e.g. `/v3/pay/transactions/jsapi`."""
        try:
            request_type = RequestType(method.upper())
        except ValueError as exc:
            raise ValueError(f"unsupported method {method}") from exc
        return self._run(lambda: self.sdk._core.request(path, method=request_type, data=body))

    def _run(self, call: Callable[[], tuple[int, Any]]) -> tuple[int, dict]:
        try:
            status, text = call()
        except requests.Timeout as exc:
            raise UpstreamError("timeout", errmsg=type(exc).__name__, service=SERVICE) from exc
        except requests.RequestException as exc:
            raise UpstreamError("unavailable", errmsg=type(exc).__name__, service=SERVICE) from exc
        except Exception as exc:  # the SDK raises bare Exception when an answer's signature fails
            raise UpstreamError("unavailable", errmsg=f"answer rejected: {exc}", service=SERVICE) from exc
        if status >= 500:
            raise UpstreamError("unavailable", errmsg=f"HTTP {status}", service=SERVICE)
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if not text:
            return status, {}
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise UpstreamError("unavailable", errmsg="not JSON", service=SERVICE) from exc
        if not isinstance(payload, dict):
            raise UpstreamError("unavailable", errmsg="not a JSON object", service=SERVICE)
        return status, payload

    # --- helpers ---------------------------------------------------------------------
    def jsapi_prepay(
        self,
        *,
        description: str,
        out_trade_no: str,
        total: int,
        openid: str,
        attach: str | None = None,
        time_expire: str | None = None,
        notify_url: str | None = None,
    ) -> tuple[int, dict]:
        """Create a mini-program order; 200 → {"prepay_id"}, 4xx → WeChat Pay's {code, message}."""
        if not (notify_url or self.notify_url):
            raise ValueError("notify_url is not configured (WECHATPAY_NOTIFY_URL)")
        return self._run(
            lambda: self.sdk.pay(
                description=description,
                out_trade_no=out_trade_no,
                amount={"total": total, "currency": "CNY"},
                payer={"openid": openid},
                attach=attach,
                time_expire=time_expire,
                notify_url=notify_url,
                pay_type=WeChatPayType.MINIPROG,
            )
        )

    def query_order(self, out_trade_no: str) -> tuple[int, dict]:
        return self.request("GET", f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={self.mchid}")

    def close_order(self, out_trade_no: str) -> tuple[int, dict]:
        return self.request("POST", f"/v3/pay/transactions/out-trade-no/{out_trade_no}/close", {"mchid": self.mchid})

    def refund(
        self, *, out_trade_no: str, out_refund_no: str, refund: int, total: int, reason: str | None = None
    ) -> tuple[int, dict]:
        """Apply for a refund; 200 → the refund (status PROCESSING/SUCCESS/...), 4xx → {code, message}.
        Retrying with the same `out_refund_no` refunds once."""
        return self._run(
            lambda: self.sdk.refund(
                out_refund_no=out_refund_no,
                amount={"refund": refund, "total": total, "currency": "CNY"},
                out_trade_no=out_trade_no,
                reason=reason,
                notify_url=self.refund_notify_url,
            )
        )

    def query_refund(self, out_refund_no: str) -> tuple[int, dict]:
        return self.request("GET", f"/v3/refund/domestic/refunds/{out_refund_no}")

    def trade_bill(self, bill_date: str, bill_type: str = "ALL") -> str:
        """The trade bill of a day (YYYY-MM-DD) as text, its SHA1 checked.

        Raises UpstreamError("rejected") when WeChat Pay has no bill (e.g. not generated yet)."""
        status, info = self.request("GET", f"/v3/bill/tradebill?bill_date={bill_date}&bill_type={bill_type}")
        if status != 200 or not info.get("download_url"):
            raise UpstreamError("rejected", errmsg=f"{info.get('code')} {info.get('message')}", service=SERVICE)
        status, raw = self._download(info["download_url"])
        if status != 200:
            raise UpstreamError("rejected", errmsg=f"bill download HTTP {status}", service=SERVICE)
        if info.get("hash_type", "SHA1").upper() != "SHA1":
            raise UpstreamError("unavailable", errmsg=f"unknown hash {info.get('hash_type')}", service=SERVICE)
        if hashlib.sha1(raw).hexdigest() != str(info.get("hash_value", "")).lower():  # noqa: S324 - protocol
            raise UpstreamError("unavailable", errmsg="bill hash mismatch", service=SERVICE)
        return raw.decode("utf-8")

    def _download(self, url: str) -> tuple[int, bytes]:
        # The download answer is not signed (the SDK skips verification): the hash above is the check.
        try:
            status, content = self.sdk.download_bill(url)
        except requests.Timeout as exc:
            raise UpstreamError("timeout", errmsg=type(exc).__name__, service=SERVICE) from exc
        except requests.RequestException as exc:
            raise UpstreamError("unavailable", errmsg=type(exc).__name__, service=SERVICE) from exc
        if status >= 500:
            raise UpstreamError("unavailable", errmsg=f"HTTP {status}", service=SERVICE)
        return status, content.encode("utf-8") if isinstance(content, str) else content

    def request_payment_params(self, prepay_id: str) -> dict[str, str]:
        """Arguments for `wx.requestPayment`; paySign covers appId, timeStamp, nonceStr, package."""
        timestamp = str(int(self.clock()))
        nonce = "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(32))
        package = f"prepay_id={prepay_id}"
        pay_sign = self.sdk.sign([self.appid, timestamp, nonce, package])
        return {
            "appId": self.appid,
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": pay_sign,
        }

    def parse_notification(self, headers: Mapping[str, str], body: str | bytes) -> dict[str, Any]:
        """Verify and decrypt a notification: the envelope with `resource` replaced by its plaintext."""
        canonical = _canonical_headers(headers)
        try:
            timestamp = int(canonical.get("Wechatpay-Timestamp", ""))
        except ValueError as exc:
            raise NotificationError("missing or bad Wechatpay-Timestamp") from exc
        if abs(self.clock() - timestamp) > NOTIFICATION_MAX_SKEW:
            raise NotificationError("stale notification")
        if canonical.get("Wechatpay-Serial") != self.public_key_id:
            raise NotificationError("unknown Wechatpay-Serial")
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        try:
            result = self.sdk.callback(canonical, text)
        except Exception as exc:  # unsupported signature type / algorithm, bad JSON
            raise NotificationError(f"rejected: {exc}") from exc
        if not result or not isinstance(result.get("resource"), dict):
            raise NotificationError("signature or decryption failed")
        return result


def _sibling_url(url: str | None, last: str) -> str | None:
    """`https://h/callbacks/wechatpay/payment` → `https://h/callbacks/wechatpay/refund`."""
    if not url:
        return None
    base, _, _ = url.rstrip("/").rpartition("/")
    return f"{base}/{last}"


def _canonical_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The SDK looks headers up by exact name; accept any casing (Flask, dicts, WSGI environ keys)."""
    lowered = {str(k).lower().replace("_", "-").removeprefix("http-"): v for k, v in headers.items()}
    return {name: lowered[name.lower()] for name in _HEADER_NAMES if name.lower() in lowered}
