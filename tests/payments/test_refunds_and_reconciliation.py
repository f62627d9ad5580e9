"""Refunds (workbench) with their notifications, and the daily reconciliation with the trade bill."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.payments.models import PaymentOrder, PaymentRefund
from backend.touchpoints.models import Touchpoint
from integrations.sandbox.wechatpay_ledger import china_date, ledger, notify_paid, notify_refund
from tests.payments.conftest import create_order


@pytest.fixture
def paid(client: Any, owner: Any, pay_effects: Any, sandbox_reset: Any, deliver_to_app: Any) -> Any:
    def make(business_id: str, amount: int) -> dict[str, Any]:
        order = create_order(client, owner, pay_effects, business_id, amount).get_json()["order"]
        notify_paid(sandbox_reset.state, order["out_trade_no"])
        return order

    return make


@pytest.fixture
def manager(tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, str]:
    return staff_headers(make_staff(tree.stores[0], "store_manager"))


def _refund(client: Any, headers: dict, order_id: int, **body: Any) -> Any:
    body.setdefault("reason", "客户取消服务")
    return client.post(f"/api/workbench/v1/payments/orders/{order_id}/refunds", json=body, headers=headers)


def test_full_refund_with_notification(
    client: Any, db_session: Any, paid: Any, manager: Any, pay_effects: Any, sandbox_reset: Any, owner: Any
) -> None:
    order = paid("r-1", 5000)
    resp = _refund(client, manager, order["id"], out_refund_no="RF-full-1")
    assert resp.status_code == 201, resp.get_json()
    refund = resp.get_json()
    assert refund["amount_fen"] == 5000 and refund["state"] == "processing" and refund["refund_id"]
    [sent] = sandbox_reset.state.received("/v3/refund/domestic/refunds")
    assert sent["json"]["amount"] == {"refund": 5000, "total": 5000, "currency": "CNY"}
    assert sent["json"]["notify_url"].endswith("/refund")  # not the payment notify URL
    assert sent["json"]["reason"] == "客户取消服务"
    _, statuses = notify_refund(sandbox_reset.state, "RF-full-1", copies=2)
    assert statuses == [204, 204]
    detail = client.get(f"/api/workbench/v1/payments/orders/{order['id']}", headers=manager).get_json()
    assert detail["state"] == "refunded" and detail["refunded_fen"] == 5000
    assert [r["state"] for r in detail["refunds"]] == ["succeeded"]
    assert pay_effects.of("refunded") == [("refunded", order["id"], refund["id"])]
    kinds = db_session.scalars(select(Touchpoint.kind).where(Touchpoint.customer_id == owner.id)).all()
    assert "refund_succeeded" in kinds


def test_partial_refunds_and_idempotency_by_out_refund_no(
    client: Any, db_session: Any, paid: Any, manager: Any, pay_effects: Any, sandbox_reset: Any
) -> None:
    order = paid("r-2", 1000)
    first = _refund(client, manager, order["id"], amount_fen=300, out_refund_no="RF-p-1").get_json()
    same = _refund(client, manager, order["id"], amount_fen=300, out_refund_no="RF-p-1")
    assert same.status_code == 201 and same.get_json()["id"] == first["id"]
    assert sandbox_reset.hits("/v3/refund/domestic/refunds") == 1  # no second request to WeChat
    clash = _refund(client, manager, order["id"], amount_fen=200, out_refund_no="RF-p-1")
    assert clash.status_code == 409 and clash.get_json()["code"] == "payment.refund_no_conflict"
    notify_refund(sandbox_reset.state, "RF-p-1")
    db_session.expire_all()
    assert db_session.get(PaymentOrder, order["id"]).state == "partially_refunded"
    # More than what is left: refused here, before WeChat is asked.
    over = _refund(client, manager, order["id"], amount_fen=701)
    assert over.status_code == 422 and over.get_json()["code"] == "payment.refund_exceeds_paid"
    assert over.get_json()["errors"]["available_fen"] == 700
    rest = _refund(client, manager, order["id"], out_refund_no="RF-p-2")  # no amount: the rest
    assert rest.get_json()["amount_fen"] == 700
    notify_refund(sandbox_reset.state, "RF-p-2")
    db_session.expire_all()
    stored = db_session.get(PaymentOrder, order["id"])
    assert stored.state == "refunded" and stored.refunded_fen == 1000
    assert len(pay_effects.of("refunded")) == 2
    assert _refund(client, manager, order["id"], amount_fen=1).get_json()["code"] == "payment.refund_not_paid"


def test_refund_errors_are_clear(
    client: Any, paid: Any, manager: Any, owner: Any, pay_effects: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    unpaid = create_order(client, owner, pay_effects, "r-unpaid", 100).get_json()["order"]
    resp = _refund(client, manager, unpaid["id"])
    assert resp.status_code == 409 and resp.get_json()["code"] == "payment.refund_not_paid"
    order = paid("r-3", 100)
    resp = _refund(client, manager, order["id"], amount_fen=101)
    assert resp.status_code == 422 and resp.get_json()["code"] == "payment.refund_exceeds_paid"
    assert _refund(client, manager, order["id"], reason="").status_code == 422  # a reason is required
    advisor = staff_headers(make_staff(tree.stores[0], "sales_advisor"))
    assert _refund(client, advisor, order["id"]).status_code in (403, 404)
    other_store = staff_headers(make_staff(tree.stores[3], "store_manager"))
    assert _refund(client, other_store, order["id"]).status_code == 404


def test_the_51st_partial_refund_is_refused(
    client: Any, db_session: Any, paid: Any, manager: Any, sandbox_reset: Any
) -> None:
    order = paid("r-4", 10000)
    for i in range(50):
        resp = _refund(client, manager, order["id"], amount_fen=1, out_refund_no=f"RF-many-{i}")
        assert resp.status_code == 201, resp.get_json()
    resp = _refund(client, manager, order["id"], amount_fen=1, out_refund_no="RF-many-50")
    assert resp.status_code == 422 and resp.get_json()["code"] == "payment.refund_limit"
    assert sandbox_reset.hits("/v3/refund/domestic/refunds") == 50
    assert db_session.scalars(select(PaymentRefund).where(PaymentRefund.out_refund_no == "RF-many-50")).first() is None


def test_closed_refund_gives_the_amount_back_and_abnormal_is_flagged(
    client: Any, db_session: Any, paid: Any, manager: Any, pay_effects: Any, sandbox_reset: Any
) -> None:
    order = paid("r-5", 800)
    _refund(client, manager, order["id"], out_refund_no="RF-closed")
    notify_refund(sandbox_reset.state, "RF-closed", "CLOSED")
    db_session.expire_all()
    stored = db_session.get(PaymentOrder, order["id"])
    assert stored.state == "paid" and stored.refund_reserved_fen == 0 and pay_effects.of("refunded") == []
    _refund(client, manager, order["id"], out_refund_no="RF-abn")
    notify_refund(sandbox_reset.state, "RF-abn", "ABNORMAL")
    db_session.expire_all()
    assert db_session.get(PaymentOrder, order["id"]).flagged


def test_refund_while_wechat_is_down_is_retried_with_the_same_number(
    client: Any, db_session: Any, paid: Any, manager: Any, sandbox_reset: Any
) -> None:
    order = paid("r-6", 600)
    sandbox_reset.state.set_fault("down", service="wechatpay", path="/v3/refund", count=1)
    resp = _refund(client, manager, order["id"], out_refund_no="RF-down")
    assert resp.status_code == 503 and resp.get_json()["code"] == "upstream.unavailable"
    db_session.expire_all()
    kept = db_session.scalars(select(PaymentRefund).where(PaymentRefund.out_refund_no == "RF-down")).one()
    assert kept.submitted is False  # kept: its number is the retry key
    resp = _refund(client, manager, order["id"], out_refund_no="RF-down")
    assert resp.status_code == 201 and resp.get_json()["id"] == kept.id
    assert len(ledger(sandbox_reset.state).refunds) == 1


def test_refund_left_unsent_by_an_outage_is_sent_again_by_the_sync_job(
    app: Any, client: Any, db_session: Any, paid: Any, manager: Any, sandbox_reset: Any
) -> None:
    """Nobody retries it by hand: the five-minute sync sends it again with its own number, once;
    a pass while WeChat Pay is still down keeps it for the next one."""
    from datetime import timedelta

    from backend.payments import service
    from backend.platform.db import commit

    order = paid("r-6b", 800)
    sandbox_reset.state.set_fault("down", service="wechatpay", path="/v3/refund", count=2)
    resp = _refund(client, manager, order["id"], amount_fen=300, out_refund_no="RF-later")
    assert resp.status_code == 503
    with app.app_context():
        gw = service.gateway()
        later = service.utcnow() + timedelta(minutes=2)
        assert service.sync_pending(db_session, gw, now=later)["resent"] == 0  # still down
        commit(db_session)
        db_session.expire_all()
        kept = db_session.scalars(select(PaymentRefund).where(PaymentRefund.out_refund_no == "RF-later")).one()
        assert kept.submitted is False and kept.state == "processing"
        assert service.sync_pending(db_session, gw, now=later)["resent"] == 1
        commit(db_session)
        assert service.sync_pending(db_session, gw, now=later)["resent"] == 0
        commit(db_session)
    db_session.expire_all()
    kept = db_session.scalars(select(PaymentRefund).where(PaymentRefund.out_refund_no == "RF-later")).one()
    assert kept.submitted is True and kept.refund_id
    assert [r for r in ledger(sandbox_reset.state).refunds] == ["RF-later"]
    assert db_session.get(PaymentOrder, order["id"]).refund_reserved_fen == 300


def test_refund_notify_bad_signature_is_rejected(client: Any, paid: Any, manager: Any, sandbox_reset: Any) -> None:
    order = paid("r-7", 100)
    _refund(client, manager, order["id"], out_refund_no="RF-sig")
    from integrations.sandbox.wechatpay_ledger import finish_refund, refund_notification_plaintext

    refund = finish_refund(sandbox_reset.state, "RF-sig")
    headers, body = sandbox_reset.state.build_pay_notification(
        refund_notification_plaintext(sandbox_reset.state, refund), "REFUND.SUCCESS"
    )
    bad = client.post("/callbacks/wechatpay/refund", data=body.replace("通知", "成功").encode(), headers=headers)
    assert bad.status_code == 401 and bad.get_json()["code"] == "FAIL"
    good = client.post("/callbacks/wechatpay/refund", data=body.encode(), headers=headers)
    assert good.status_code == 204


# --- reconciliation ------------------------------------------------------------------------------


def test_daily_reconciliation_repairs_and_flags(
    client: Any,
    db_session: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    owner: Any,
    pay_effects: Any,
    paid: Any,
    manager: Any,
    sandbox_reset: Any,
) -> None:
    admin = staff_headers(make_staff(tree.group, "group_admin"))
    state = sandbox_reset.state
    matched = paid("b-ok", 1000)
    lost = create_order(client, owner, pay_effects, "b-lost", 2000).get_json()["order"]
    state.mark_paid(lost["out_trade_no"])  # paid at WeChat; the notification never came
    hidden = paid("b-hidden", 3000)
    ledger(state).hidden_from_bill.add(hidden["out_trade_no"])  # paid here, missing in the bill
    today = china_date(state.now())
    ledger(state).extra_bill_rows.append(
        {"out_trade_no": "DLFOREIGN000000000000001", "transaction_id": "4200000000000000000000000001", "total": 99}
    )
    _refund(client, manager, matched["id"], amount_fen=100, out_refund_no="RF-bill")
    notify_refund(state, "RF-bill")

    resp = client.post("/api/workbench/v1/payments/reconciliations", json={"bill_date": today}, headers=admin)
    assert resp.status_code == 200, resp.get_json()
    recon = resp.get_json()
    assert recon["status"] == "done" and recon["bill_rows"] == 4  # ok, lost, foreign, refund
    issues = {(i["kind"], i["out_trade_no"]): i["resolution"] for i in recon["issue_items"]}
    assert issues == {
        ("paid_there_not_here", lost["out_trade_no"]): "repaired",
        ("paid_there_not_here", "DLFOREIGN000000000000001"): "flagged",
        ("paid_here_not_there", hidden["out_trade_no"]): "flagged",
    }
    assert recon["matched"] == 2  # the payment and its refund
    db_session.expire_all()
    repaired = db_session.get(PaymentOrder, lost["id"])
    assert repaired.state == "paid" and repaired.paid_via == "bill"
    assert ("paid", lost["id"]) in pay_effects.calls
    # Re-running the day is safe: no duplicate issues, the repaired order now matches.
    again = client.post(
        "/api/workbench/v1/payments/reconciliations", json={"bill_date": today}, headers=admin
    ).get_json()
    assert again["matched"] == 3 and len(again["issue_items"]) == 3
    listed = client.get(f"/api/workbench/v1/payments/reconciliations?bill_date={today}", headers=admin).get_json()
    assert len(listed) == 1 and listed[0]["id"] == recon["id"]
    # Finance only.
    assert client.get("/api/workbench/v1/payments/reconciliations", headers=manager).status_code == 403


def test_bill_not_yet_generated_is_recorded_as_failed(
    client: Any, tree: Any, make_staff: Any, staff_headers: Any, sandbox_reset: Any
) -> None:
    admin = staff_headers(make_staff(tree.group, "group_admin"))
    resp = client.post("/api/workbench/v1/payments/reconciliations", json={"bill_date": "2999-01-01"}, headers=admin)
    assert resp.status_code == 200 and resp.get_json()["status"] == "failed"
    assert "NO_STATEMENT_EXIST" in resp.get_json()["error"]


def test_workbench_order_list_is_scoped(
    client: Any, paid: Any, manager: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    order = paid("l-1", 100)
    mine = client.get("/api/workbench/v1/payments/orders?state=paid", headers=manager).get_json()
    assert [o["id"] for o in mine["items"]] == [order["id"]] and mine["total"] == 1
    other = staff_headers(make_staff(tree.stores[3], "store_manager"))
    assert client.get("/api/workbench/v1/payments/orders", headers=other).get_json()["total"] == 0
