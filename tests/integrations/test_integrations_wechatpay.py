"""WeChat Pay adapter (wechatpayv3 2.0.4, public-key mode) against the sandbox gateway."""

from __future__ import annotations

import json

import pytest
import requests
from wechatpayv3.utils import build_authorization, load_private_key

from backend.platform.ports import UpstreamError
from integrations.sandbox import crypto
from integrations.wechatpay.gateway import NotificationError

JSAPI = "/v3/pay/transactions/jsapi"


def _prepay(pay, no="DL202506010001", total=19900, openid="oOwner1", **extra):
    return pay.jsapi_prepay(description="首保套餐", out_trade_no=no, total=total, openid=openid, **extra)


def test_prepay_signed_request_accepted_and_answer_verified(clients):
    sandbox = clients.sandbox
    pay = clients.wechatpay()
    status, body = _prepay(pay)
    assert status == 200
    assert body["prepay_id"].startswith("wx")
    received = sandbox.state.received(JSAPI)[-1]
    assert received["headers"]["Authorization"].startswith("WECHATPAY2-SHA256-RSA2048 ")
    assert received["headers"]["Wechatpay-Serial"] == sandbox.credentials["WECHATPAY_PUBLIC_KEY_ID"]
    assert received["json"]["payer"] == {"openid": "oOwner1"}
    assert received["json"]["amount"] == {"total": 19900, "currency": "CNY"}


def test_answer_signed_with_another_key_is_refused_by_the_sdk(clients):
    # Same key id, different public key: the SDK's verification of the sandbox's answer must fail.
    stranger = crypto.public_key_pem(crypto.generate_rsa_key())
    pay = clients.wechatpay(public_key=stranger)
    with pytest.raises(UpstreamError) as err:
        _prepay(pay)
    assert err.value.reason == "unavailable"
    assert "signature" in err.value.errmsg


def test_tampered_authorization_rejected(sandbox_reset):
    creds = sandbox_reset.credentials
    body = json.dumps({"mchid": creds["WECHATPAY_MCHID"]})
    path = "/v3/pay/transactions/out-trade-no/DL0001/close"
    authorization = build_authorization(
        path,
        "POST",
        creds["WECHATPAY_MCHID"],
        creds["WECHATPAY_CERT_SERIAL"],
        load_private_key(creds["WECHATPAY_PRIVATE_KEY"]),
        data=body,
    )
    headers = {"Content-Type": "application/json", "Wechatpay-Serial": creds["WECHATPAY_PUBLIC_KEY_ID"]}
    url = sandbox_reset.wechatpay_url + path

    tampered_body = requests.post(
        url, data=body.replace("}", " }"), timeout=5, headers={**headers, "Authorization": authorization}
    )
    assert tampered_body.status_code == 401
    assert tampered_body.json()["code"] == "SIGN_ERROR"

    wrong_serial = authorization.replace(creds["WECHATPAY_CERT_SERIAL"], "0" * 40)
    response = requests.post(url, data=body, headers={**headers, "Authorization": wrong_serial}, timeout=5)
    assert (response.status_code, response.json()["code"]) == (401, "SIGN_ERROR")

    no_serial = requests.post(url, data=body, headers={"Authorization": authorization}, timeout=5)
    assert (no_serial.status_code, no_serial.json()["code"]) == (400, "PARAM_ERROR")

    genuine = requests.post(url, data=body, headers={**headers, "Authorization": authorization}, timeout=5)
    assert genuine.status_code == 404  # signature fine; the order does not exist
    assert genuine.json()["code"] == "ORDER_NOT_EXIST"
    assert genuine.headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"


def test_stale_request_timestamp_rejected(clients):
    clients.sandbox.state.advance(600)  # the sandbox clock is 10 minutes ahead of ours
    status, body = _prepay(clients.wechatpay())
    assert (status, body["code"]) == (401, "SIGN_ERROR")


def test_prepay_validation_and_duplicates(clients):
    pay = clients.wechatpay()
    status, first = _prepay(pay, no="DL202506010002")
    assert status == 200
    assert _prepay(pay, no="DL202506010002") == (200, first)  # same body: same prepay_id
    status, body = _prepay(pay, no="DL202506010002", total=100)
    assert (status, body["code"]) == (400, "INVALID_REQUEST")
    status, body = _prepay(pay, no="DL202506010003", total=0)
    assert (status, body["code"]) == (400, "PARAM_ERROR")
    status, body = _prepay(pay, no="DL202506010004", notify_url="http://insecure.test/notify")
    assert (status, body["code"]) == (400, "PARAM_ERROR")
    status, body = pay.request("POST", JSAPI, {"appid": pay.appid, "mchid": pay.mchid})
    assert (status, body["code"]) == (400, "PARAM_ERROR")
    assert "description" in body["message"]


def test_query_and_close(clients):
    pay = clients.wechatpay()
    _prepay(pay, no="DL202506010010")
    status, order = pay.query_order("DL202506010010")
    assert (status, order["trade_state"], order["amount"]["total"]) == (200, "NOTPAY", 19900)
    assert pay.close_order("DL202506010010") == (204, {})
    assert pay.query_order("DL202506010010")[1]["trade_state"] == "CLOSED"
    assert pay.query_order("DL-UNKNOWN-01")[0] == 404


def test_pay_sign_verifiable(clients):
    pay = clients.wechatpay()
    _, body = _prepay(pay, no="DL202506010020")
    params = pay.request_payment_params(body["prepay_id"])
    assert params["package"] == f"prepay_id={body['prepay_id']}"
    assert params["signType"] == "RSA"
    merchant_public = crypto.load_private_key(clients.sandbox.credentials["WECHATPAY_PRIVATE_KEY"]).public_key()
    message = f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    assert crypto.rsa_sha256_verify(merchant_public, message, params["paySign"])
    assert not crypto.rsa_sha256_verify(merchant_public, message.replace("prepay_id", "prepay_iD"), params["paySign"])


def test_notification_parsed_and_stale_or_tampered_rejected(clients):
    state = clients.sandbox.state
    pay = clients.wechatpay()
    _prepay(pay, no="DL202506010030")
    plaintext = state.mark_paid("DL202506010030")
    headers, body = state.build_pay_notification(plaintext, "TRANSACTION.SUCCESS")

    event = pay.parse_notification(headers, body)
    assert event["event_type"] == "TRANSACTION.SUCCESS"
    assert event["resource"]["out_trade_no"] == "DL202506010030"
    assert event["resource"]["trade_state"] == "SUCCESS"
    assert event["resource"]["amount"]["total"] == 19900
    # Any header casing (WSGI-style, lower-case) is accepted.
    assert pay.parse_notification({k.lower(): v for k, v in headers.items()}, body.encode())["id"] == event["id"]

    stale_headers, stale_body = state.build_pay_notification(plaintext, timestamp=int(state.now()) - 600)
    with pytest.raises(NotificationError, match="stale"):
        pay.parse_notification(stale_headers, stale_body)
    with pytest.raises(NotificationError):
        pay.parse_notification(headers, body.replace("SUCCESS", "SUCCESS "))
    no_type = {k: v for k, v in headers.items() if k != "Wechatpay-Signature-Type"}
    with pytest.raises(NotificationError):
        pay.parse_notification(no_type, body)


def test_notification_encrypted_independently_of_sdk(sandbox_reset):
    state = sandbox_reset.state
    headers, body = state.build_pay_notification({"out_trade_no": "X1", "refund_status": "SUCCESS"}, "REFUND.SUCCESS")
    resource = json.loads(body)["resource"]
    assert resource["original_type"] == "refund"
    plain = crypto.aes_gcm_decrypt(
        sandbox_reset.credentials["WECHATPAY_APIV3_KEY"],
        resource["nonce"],
        resource["ciphertext"],
        resource["associated_data"],
    )
    assert json.loads(plain)["refund_status"] == "SUCCESS"
    assert len(resource["nonce"]) == 12


def test_pay_gateway_down_and_slow(clients):
    state = clients.sandbox.state
    state.set_fault("down", service="wechatpay", count=1)
    with pytest.raises(UpstreamError) as err:
        _prepay(clients.wechatpay())
    assert err.value.reason == "unavailable"
    state.set_fault("slow", seconds=5, service="wechatpay", count=1)
    with pytest.raises(UpstreamError) as err:
        _prepay(clients.wechatpay(timeout=0.3))
    assert err.value.reason == "timeout"
    state.set_fault("errcode", errcode=500, service="wechatpay", count=1)
    with pytest.raises(UpstreamError) as err:
        _prepay(clients.wechatpay())
    assert err.value.reason == "unavailable"
