"""WeChat Pay notifications: `POST /callbacks/wechatpay/payment` and `/callbacks/wechatpay/refund`.

These endpoints speak WeChat Pay's protocol, not our error format: success is **204 with no
body**; a failure is 4xx/5xx with `{"code": "FAIL", "message": ...}`, which makes WeChat Pay
retry (15s/15s/30s/3m/... for 24 h).

Order of checks (the raw body is what is verified, never a re-serialisation):
1. `Wechatpay-Timestamp` within ±5 minutes (the SDK does not check it)   → 401 FAIL
2. `Wechatpay-Serial` is our WeChat Pay public key id                    → 401 FAIL
3. RSA-SHA256 signature over `timestamp\\nnonce\\nbody\\n` (wechatpayv3)     → 401 FAIL
4. AES-256-GCM decryption of `resource` with the APIv3 key                → 401 FAIL
5. event type for this endpoint; mchid / appid are ours                   → 400 FAIL
6. the order (refund) exists                                              → 404 FAIL (retried;
   the daily reconciliation lists it if it never appears)
7. amount.total equals ours — otherwise recorded as a `payment_issue`, audited and logged at
   error level, nothing credited, and answered 204 (a retry cannot fix it; a person must).
8. under the order's row lock: paid once, business effects through the outbox after commit.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Response, current_app, request

from backend.payments import service
from backend.platform.api import Blueprint, public
from backend.platform.db import db

from .gateway import NotificationError

log = logging.getLogger("dealerloop.wechatpay.notify")

blp = Blueprint(
    "wechatpay_notify", __name__, url_prefix="/callbacks", audience=None, description="WeChat Pay notifications"
)


_FAIL = {
    "description": "not accepted; WeChat Pay retries",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"code": {"type": "string", "enum": ["FAIL"]}, "message": {"type": "string"}},
            }
        }
    },
}
_DOC_RESPONSES = {
    "204": {"description": "received (no body)"},
    "400": _FAIL,
    "401": _FAIL,
    "404": _FAIL,
}
_NOTIFY_BODY = {
    "required": True,
    "description": "WeChat Pay's envelope `{id, create_time, event_type, resource_type, summary, resource:"
    "{algorithm, ciphertext, associated_data, nonce, original_type}}`, signed in the Wechatpay-* headers",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


def _fail(status: int, message: str) -> Response:
    return Response(
        json.dumps({"code": "FAIL", "message": message}, ensure_ascii=False),
        status=status,
        mimetype="application/json",
    )


def _verified(expected_prefix: str) -> tuple[dict[str, Any] | None, Response | None]:
    gw = current_app.extensions["dealerloop.gateways"].wechatpay
    if gw is None:
        return None, _fail(503, "wechatpay not configured")
    try:
        event = gw.parse_notification(request.headers, request.get_data(cache=True))
    except NotificationError as exc:
        log.warning("WeChat Pay notification rejected: %s", exc)
        return None, _fail(401, str(exc))
    event_type = str(event.get("event_type", ""))
    if not event_type.startswith(expected_prefix):
        log.warning("WeChat Pay notification %s at the wrong endpoint", event_type)
        return None, _fail(400, f"unexpected event_type {event_type}")
    return event, None


@blp.route("/wechatpay/payment", methods=["POST"])
@public
@blp.doc(responses=_DOC_RESPONSES, requestBody=_NOTIFY_BODY)
def payment_notification() -> Response:
    """WeChat Pay payment result (TRANSACTION.SUCCESS). 204 = received; `{code: FAIL}` = retry."""
    event, failure = _verified("TRANSACTION.")
    if failure is not None:
        return failure
    assert event is not None
    if event["event_type"] != "TRANSACTION.SUCCESS":
        return Response(status=204)
    gw = current_app.extensions["dealerloop.gateways"].wechatpay
    outcome = service.apply_transaction(db.session(), event["resource"], via="notify", mchid=gw.mchid, appid=gw.appid)
    if outcome.result == "foreign":
        return _fail(400, "mchid/appid mismatch")
    if outcome.result == "unknown_order":
        return _fail(404, "unknown out_trade_no")
    return Response(status=204)


@blp.route("/wechatpay/refund", methods=["POST"])
@public
@blp.doc(responses=_DOC_RESPONSES, requestBody=_NOTIFY_BODY)
def refund_notification() -> Response:
    """WeChat Pay refund result (REFUND.SUCCESS / REFUND.CLOSED / REFUND.ABNORMAL)."""
    event, failure = _verified("REFUND.")
    if failure is not None:
        return failure
    assert event is not None
    gw = current_app.extensions["dealerloop.gateways"].wechatpay
    outcome = service.apply_refund_result(db.session(), event["resource"], mchid=gw.mchid, via="notify")
    if outcome.result == "foreign":
        return _fail(400, "mchid mismatch")
    if outcome.result == "unknown_order":
        return _fail(404, "unknown out_refund_no")
    return Response(status=204)
