"""Orders, prepay and the payment notification, through HTTP against the strict sandbox."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.payments.models import PaymentIssue, PaymentOrder
from backend.platform.audit import AuditLog
from backend.platform.jobs import OutboxJob
from backend.touchpoints.models import Touchpoint
from integrations.sandbox import crypto
from integrations.sandbox.wechatpay_ledger import notify_paid
from tests.payments.conftest import create_order

NOTIFY = "/callbacks/wechatpay/payment"


def _order(db_session: Any, order_id: int) -> PaymentOrder:
    db_session.expire_all()
    return db_session.get(PaymentOrder, order_id)


def _kinds(db_session: Any, customer_id: int) -> list[str]:
    return list(
        db_session.scalars(select(Touchpoint.kind).where(Touchpoint.customer_id == customer_id).order_by(Touchpoint.id))
    )


def test_create_prepays_and_returns_a_pay_sign_that_verifies(
    client: Any, db_session: Any, owner: Any, pay_effects: Any, sandbox_reset: Any
) -> None:
    resp = create_order(client, owner, pay_effects, "sku-1", 12345)
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    order, params = body["order"], body["pay_params"]
    assert order["amount_fen"] == 12345 and order["state"] == "pending"
    assert 6 <= len(order["out_trade_no"]) <= 32
    # The sandbox received a correctly signed JSAPI order for our amount and payer.
    [sent] = sandbox_reset.state.received("/v3/pay/transactions/jsapi")
    assert sent["json"]["amount"] == {"total": 12345, "currency": "CNY"}
    assert sent["json"]["payer"] == {"openid": "o-payer-0001"}
    assert sent["json"]["out_trade_no"] == order["out_trade_no"]
    # paySign: RSA-SHA256 with the merchant key over appId\ntimeStamp\nnonceStr\npackage\n
    assert params["signType"] == "RSA" and params["package"].startswith("prepay_id=wx")
    message = f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    assert crypto.rsa_sha256_verify(sandbox_reset.state.merchant_public_key, message, params["paySign"])
    assert not crypto.rsa_sha256_verify(sandbox_reset.state.merchant_public_key, message + "x", params["paySign"])
    assert _kinds(db_session, owner.id) == ["payment_created"]


def test_create_is_idempotent(client: Any, db_session: Any, owner: Any, pay_effects: Any, sandbox_reset: Any) -> None:
    first = create_order(client, owner, pay_effects, "sku-2", 500).get_json()
    again = create_order(client, owner, pay_effects, "sku-2", 500).get_json()
    assert again["order"]["id"] == first["order"]["id"]
    assert again["pay_params"]["package"] == first["pay_params"]["package"]  # prepay_id reused
    assert sandbox_reset.hits("/v3/pay/transactions/jsapi") == 1
    # An Idempotency-Key replays the stored response.
    key = {"Idempotency-Key": "pay-sku-3"}
    a = create_order(client, owner, pay_effects, "sku-3", 700, headers=key)
    b = create_order(client, owner, pay_effects, "sku-3", 700, headers=key)
    assert b.headers.get("Idempotent-Replayed") == "true" and b.get_json() == a.get_json()
    assert db_session.scalar(select(func.count()).select_from(PaymentOrder)) == 2
    # The price is the business's: a changed price while the order is open is a conflict.
    conflict = create_order(client, owner, pay_effects, "sku-2", 600)
    assert conflict.status_code == 409 and conflict.get_json()["code"] == "payment.order_conflict"


def test_unknown_business_type_and_no_openid(
    client: Any, tree: Any, make_customer: Any, member_headers: Any, owner: Any, pay_effects: Any
) -> None:
    stranger = make_customer(tree.stores[0])
    stranger_headers = member_headers(stranger)
    resp = client.post(
        "/api/app/v1/payments/orders", json={"business_type": "nope", "business_id": "1"}, headers=owner.headers
    )
    assert resp.status_code == 422 and resp.get_json()["code"] == "payment.business_type_unknown"
    resp = client.post(
        "/api/app/v1/payments/orders", json={"business_type": "test_item", "amount_fen": 1}, headers=owner.headers
    )
    assert resp.status_code == 422  # the client cannot state a price
    pay_effects.prices["x"] = 100
    resp = client.post(
        "/api/app/v1/payments/orders",
        json={"business_type": "test_item", "business_id": "x"},
        headers=stranger_headers,
    )
    assert resp.status_code == 409 and resp.get_json()["code"] == "payment.no_openid"


def test_paid_notify_pays_once_and_fires_effects_once(
    client: Any, db_session: Any, owner: Any, pay_effects: Any, sandbox_reset: Any, deliver_to_app: Any
) -> None:
    order = create_order(client, owner, pay_effects, "sku-4", 990).get_json()["order"]
    _, statuses = notify_paid(sandbox_reset.state, order["out_trade_no"], copies=3)
    assert statuses == [204, 204, 204]
    paid = _order(db_session, order["id"])
    assert paid.state == "paid" and paid.transaction_id and paid.paid_via == "notify" and paid.paid_at
    assert pay_effects.of("paid") == [("paid", order["id"])]
    assert (
        db_session.scalar(select(func.count()).select_from(OutboxJob).where(OutboxJob.name == "payments.run_effects"))
        == 1
    )
    # The points listener earns once for the order (pending during the return window), not three times.
    assert _kinds(db_session, owner.id) == ["payment_created", "payment_succeeded", "points_earned"]
    account = client.get("/api/app/v1/points/account", headers=owner.headers).get_json()
    assert account["pending"] == 9 and account["available"] == 0
    assert client.get(f"/api/app/v1/payments/orders/{order['id']}", headers=owner.headers).get_json()["state"] == "paid"
    again = create_order(client, owner, pay_effects, "sku-4", 990)
    assert again.status_code == 409 and again.get_json()["code"] == "payment.already_paid"


# --- bad notifications ------------------------------------------------------------------------


def _paid_notification(state: Any, no: str, **plain_overrides: Any) -> tuple[dict, str, dict]:
    plaintext = state.mark_paid(no)
    plaintext.update(plain_overrides)
    headers, body = state.build_pay_notification(plaintext, "TRANSACTION.SUCCESS")
    return headers, body, plaintext


def _forged(state: Any, headers: dict, body: str) -> tuple[dict, str]:
    return {**headers, "Wechatpay-Signature": crypto.rsa_sha256_sign(crypto.generate_rsa_key(), "x")}, body


def _wrong_serial(state: Any, headers: dict, body: str) -> tuple[dict, str]:
    return {**headers, "Wechatpay-Serial": "PUB_KEY_ID_0000000000000000000000000000"}, body


def _stale(state: Any, headers: dict, body: str) -> tuple[dict, str]:
    ts = str(int(state.now()) - 600)
    resigned = {**headers, "Wechatpay-Timestamp": ts}
    resigned["Wechatpay-Signature"] = state.sign_pay_message(ts, headers["Wechatpay-Nonce"], body)
    return resigned, body  # validly signed, but ten minutes old


def _tampered_ciphertext(state: Any, headers: dict, body: str) -> tuple[dict, str]:
    envelope = json.loads(body)
    raw = bytearray(crypto.base64.b64decode(envelope["resource"]["ciphertext"]))
    raw[5] ^= 0x01
    envelope["resource"]["ciphertext"] = crypto.base64.b64encode(bytes(raw)).decode()
    tampered = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
    # Re-signed with the platform key: only the AES-GCM tag can catch it.
    resigned = {**headers}
    resigned["Wechatpay-Signature"] = state.sign_pay_message(
        headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"], tampered
    )
    return resigned, tampered


def _tampered_body(state: Any, headers: dict, body: str) -> tuple[dict, str]:
    return headers, body.replace("支付成功", "支付失败")


@pytest.mark.parametrize(
    "mutate", [_forged, _wrong_serial, _stale, _tampered_ciphertext, _tampered_body], ids=lambda f: f.__name__
)
def test_unverifiable_notifications_are_rejected_and_credit_nothing(
    client: Any, db_session: Any, owner: Any, pay_effects: Any, sandbox_reset: Any, mutate: Any
) -> None:
    order = create_order(client, owner, pay_effects, "sku-bad", 1000).get_json()["order"]
    headers, body, _ = _paid_notification(sandbox_reset.state, order["out_trade_no"])
    headers, body = mutate(sandbox_reset.state, headers, body)
    resp = client.post(NOTIFY, data=body.encode(), headers=headers)
    assert resp.status_code == 401
    assert resp.get_json()["code"] == "FAIL" and resp.get_json()["message"]
    assert _order(db_session, order["id"]).state == "pending"
    assert pay_effects.calls == []


def test_wrong_amount_is_flagged_audited_and_never_credited(
    client: Any, db_session: Any, owner: Any, pay_effects: Any, sandbox_reset: Any, caplog: Any
) -> None:
    order = create_order(client, owner, pay_effects, "sku-amt", 1000).get_json()["order"]
    headers, body, plain = _paid_notification(
        sandbox_reset.state, order["out_trade_no"], amount={"total": 1, "payer_total": 1, "currency": "CNY"}
    )
    for _ in range(2):  # WeChat may retry: recorded once
        resp = client.post(NOTIFY, data=body.encode(), headers=headers)
        assert resp.status_code == 204  # acknowledged: a retry cannot fix it, a person must
    stored = _order(db_session, order["id"])
    assert stored.state == "pending" and stored.flagged and stored.transaction_id is None
    [issue] = db_session.scalars(select(PaymentIssue)).all()
    assert issue.kind == "amount_mismatch" and issue.detail["ours"] == 1000 and issue.detail["theirs"] == 1
    assert (
        db_session.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "payment.amount_mismatch")
        )
        == 1
    )
    assert "amount_mismatch" in caplog.text
    assert pay_effects.calls == []


def test_a_mismatch_alerts_finance_and_the_store_manager_and_is_handled_once(
    client: Any,
    db_session: Any,
    tree: Any,
    owner: Any,
    pay_effects: Any,
    sandbox_reset: Any,
    make_staff: Any,
    staff_headers: Any,
) -> None:
    from backend.wecom.models import AppMessage

    admin = make_staff(tree.group, "group_admin", userid="finance-01")
    manager = make_staff(tree.stores[0], "store_manager", userid="manager-s0")
    other_manager = make_staff(tree.stores[3], "store_manager", userid="manager-s3")
    order = create_order(client, owner, pay_effects, "sku-alert", 1000).get_json()["order"]
    headers, body, _ = _paid_notification(
        sandbox_reset.state, order["out_trade_no"], amount={"total": 1, "payer_total": 1, "currency": "CNY"}
    )
    for _ in range(2):
        assert client.post(NOTIFY, data=body.encode(), headers=headers).status_code == 204
    # One WeCom app message per recipient (not per delivery), sent through the sandbox.
    messages = db_session.scalars(select(AppMessage).where(AppMessage.kind == "payment_issue")).all()
    assert sorted(u for m in messages for u in m.touser) == ["finance-01", "manager-s0"]
    # What WeCom accepted (a request refused for a token cached before the sandbox reset is retried).
    sent = sandbox_reset.state.app_messages
    assert sorted(s["touser"] for s in sent) == ["finance-01", "manager-s0"]
    assert all(order["out_trade_no"] in s["text"]["content"] for s in sent)

    listed = client.get("/api/workbench/v1/payments/issues", headers=staff_headers(manager)).get_json()["items"]
    assert [(i["kind"], i["resolution"], i["label"]) for i in listed] == [
        ("amount_mismatch", "flagged", "通知金额与订单不符")
    ]
    issue_id = listed[0]["id"]
    assert client.get("/api/workbench/v1/payments/issues", headers=staff_headers(other_manager)).get_json() == {
        "items": []
    }
    url = f"/api/workbench/v1/payments/issues/{issue_id}/handle"
    assert client.post(url, json={"note": "已核对"}, headers=staff_headers(manager)).status_code == 403
    assert client.post(url, json={"note": "x"}, headers=staff_headers(admin)).status_code == 422
    done = client.post(url, json={"note": "已与微信支付核对，金额以订单为准"}, headers=staff_headers(admin))
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["resolution"] == "handled" and done.get_json()["handled_by"] == f"staff:{admin.id}"
    again = client.post(url, json={"note": "再次处理"}, headers=staff_headers(admin))
    assert again.status_code == 409 and again.get_json()["code"] == "payment.issue_already_handled"
    assert _order(db_session, order["id"]).flagged is False  # nothing flagged left on the order
    assert _order(db_session, order["id"]).state == "pending"  # and still never credited


def test_unknown_order_and_foreign_merchant_are_rejected(
    client: Any, db_session: Any, owner: Any, pay_effects: Any, sandbox_reset: Any
) -> None:
    order = create_order(client, owner, pay_effects, "sku-unk", 1000).get_json()["order"]
    headers, body, _ = _paid_notification(
        sandbox_reset.state, order["out_trade_no"], out_trade_no="DLNOTOURS0000000001"
    )
    resp = client.post(NOTIFY, data=body.encode(), headers=headers)
    assert resp.status_code == 404 and resp.get_json()["code"] == "FAIL"
    plain = sandbox_reset.state.transaction_view(order["out_trade_no"])
    headers, body = sandbox_reset.state.build_pay_notification({**plain, "mchid": "1900000000"})
    resp = client.post(NOTIFY, data=body.encode(), headers=headers)
    assert resp.status_code == 400 and resp.get_json()["code"] == "FAIL"
    headers, body = sandbox_reset.state.build_pay_notification({**plain, "appid": "wx0000000000000000"})
    assert client.post(NOTIFY, data=body.encode(), headers=headers).status_code == 400
    # A refund event at the payment endpoint is refused too.
    headers, body = sandbox_reset.state.build_pay_notification(plain, "REFUND.SUCCESS")
    assert client.post(NOTIFY, data=body.encode(), headers=headers).status_code == 400
    assert _order(db_session, order["id"]).state == "pending"
    assert pay_effects.calls == []


# --- the client's "paid" is not proof ------------------------------------------------------------


def test_sync_asks_wechat_when_the_notify_is_late(
    client: Any, db_session: Any, owner: Any, pay_effects: Any, sandbox_reset: Any
) -> None:
    order = create_order(client, owner, pay_effects, "sku-5", 300).get_json()["order"]
    url = f"/api/app/v1/payments/orders/{order['id']}/sync"
    assert client.post(url, headers=owner.headers).get_json()["state"] == "pending"  # not paid yet
    sandbox_reset.state.mark_paid(order["out_trade_no"])  # paid; the notification is lost
    assert (
        client.get(f"/api/app/v1/payments/orders/{order['id']}", headers=owner.headers).get_json()["state"] == "pending"
    )
    resp = client.post(url, headers=owner.headers)
    assert resp.status_code == 200 and resp.get_json()["state"] == "paid"
    assert _order(db_session, order["id"]).paid_via == "query"
    assert pay_effects.of("paid") == [("paid", order["id"])]
    assert sandbox_reset.hits("/v3/pay/transactions/out-trade-no/") == 2
    # The late notification then changes nothing.
    headers, body = sandbox_reset.state.build_pay_notification(
        sandbox_reset.state.transaction_view(order["out_trade_no"])
    )
    assert client.post(NOTIFY, data=body.encode(), headers=headers).status_code == 204
    assert len(pay_effects.of("paid")) == 1


def test_sync_pending_job_and_close_expired_job(
    app: Any, client: Any, db_session: Any, owner: Any, pay_effects: Any, sandbox_reset: Any
) -> None:
    from datetime import timedelta

    from backend.payments import service
    from backend.platform.db import commit

    paid_late = create_order(client, owner, pay_effects, "sku-6", 100).get_json()["order"]
    expiring = create_order(client, owner, pay_effects, "sku-7", 200).get_json()["order"]
    sandbox_reset.state.mark_paid(paid_late["out_trade_no"])
    with app.app_context():
        gw = service.gateway()
        session = db_session
        later = service.utcnow() + timedelta(minutes=2)
        assert service.sync_pending(session, gw, now=later) == {"orders": 2, "paid": 1, "refunds": 0, "resent": 0}
        commit(session)
        assert _order(session, paid_late["id"]).state == "paid"
        assert service.close_expired(session, gw, now=later) == []  # nothing expired yet
        closed = service.close_expired(session, gw, now=service.utcnow() + timedelta(minutes=31))
        commit(session)
    assert closed == [expiring["id"]]
    stored = _order(db_session, expiring["id"])
    assert stored.state == "closed" and stored.open_key is None
    assert sandbox_reset.state.orders[expiring["out_trade_no"]].trade_state == "CLOSED"
    assert pay_effects.of("closed") == [("closed", expiring["id"])]
    assert "payment_closed" in _kinds(db_session, owner.id)
    # The business object can be paid again, with a new out_trade_no.
    retry = create_order(client, owner, pay_effects, "sku-7", 200).get_json()["order"]
    assert retry["id"] != expiring["id"] and retry["out_trade_no"] != expiring["out_trade_no"]


def test_close_of_an_order_paid_meanwhile_credits_it(
    app: Any, client: Any, db_session: Any, owner: Any, pay_effects: Any, sandbox_reset: Any
) -> None:
    from datetime import timedelta

    from backend.payments import service
    from backend.platform.db import commit

    order = create_order(client, owner, pay_effects, "sku-8", 100).get_json()["order"]
    sandbox_reset.state.mark_paid(order["out_trade_no"])
    with app.app_context():
        assert service.close_expired(db_session, service.gateway(), now=service.utcnow() + timedelta(hours=1)) == []
        commit(db_session)
    stored = _order(db_session, order["id"])
    assert stored.state == "paid" and stored.paid_via == "close"
    assert pay_effects.of("paid") == [("paid", order["id"])] and pay_effects.of("closed") == []


def test_expiry_is_enforced_on_the_wechat_side_too(
    client: Any, owner: Any, pay_effects: Any, sandbox_reset: Any
) -> None:
    order = create_order(client, owner, pay_effects, "sku-9", 100).get_json()["order"]
    [sent] = sandbox_reset.state.received("/v3/pay/transactions/jsapi")
    assert sent["json"]["time_expire"].endswith("+08:00")
    assert sent["json"]["notify_url"].startswith("https://")
    assert order["expires_at"]
