"""Service packages (保养套餐) end to end: bought through WeChat Pay against the strict sandbox,
activated by the paid notification, written off at the store, refunded only for unused uses."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.packages.models import PackagePurchase, PackageUse
from backend.platform.db import db
from backend.touchpoints.models import Touchpoint
from integrations.sandbox.wechatpay_ledger import notify_paid, notify_refund
from tests.threads import run_threads

WB = "/api/workbench/v1"
APP = "/api/app/v1"


@pytest.fixture
def staff(tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    return {
        "manager": staff_headers(make_staff(tree.stores[0], "store_manager")),
        "advisor": staff_headers(make_staff(tree.stores[0], "service_advisor")),
        "other_store": staff_headers(make_staff(tree.stores[3], "service_advisor")),
        "region": staff_headers(make_staff(tree.regions[0], "region_manager")),
    }


def _package(client: Any, staff: dict, store_id: int, **overrides: Any) -> dict[str, Any]:
    body = {"store_id": store_id, "name": "基础保养3次卡", "service_type": "basic_maintenance", "uses": 3}
    body |= {"price_fen": 30000, "valid_days": 365} | overrides
    resp = client.post(f"{WB}/packages", json=body, headers=staff["manager"])
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def _buy_and_pay(client: Any, owner: Any, sandbox_reset: Any, package_id: int) -> dict[str, Any]:
    purchase = client.post(
        f"{APP}/packages/{package_id}/purchases", json={}, headers={**owner.headers, "Idempotency-Key": "buy-1"}
    ).get_json()
    assert purchase["state"] == "awaiting_payment" and purchase["code"] is None
    order = client.post(f"{APP}/payments/orders", json=purchase["payment"], headers=owner.headers)
    assert order.status_code == 201, order.get_json()
    order = order.get_json()["order"]
    assert order["amount_fen"] == 30000  # the package's price, not the client's
    _, statuses = notify_paid(sandbox_reset.state, order["out_trade_no"], copies=2)
    assert statuses == [204, 204]
    return {"purchase_id": purchase["id"], "order": order}


def _use(client: Any, headers: dict, code: str, nonce: str, **extra: Any) -> Any:
    return client.post(f"{WB}/packages/uses", json={"code": code, "nonce": nonce, **extra}, headers=headers)


def test_buy_pay_use_and_replay(
    client: Any, db_session: Any, tree: Any, owner: Any, staff: Any, sandbox_reset: Any, deliver_to_app: Any
) -> None:
    package = _package(client, staff, tree.stores[0].id)
    listed = client.get(f"{APP}/packages", headers=owner.headers).get_json()["items"]
    assert [p["id"] for p in listed] == [package["id"]]
    first = _buy_and_pay(client, owner, sandbox_reset, package["id"])
    # A retried tap with the same Idempotency-Key is the same purchase.
    retried = client.post(
        f"{APP}/packages/{package['id']}/purchases", json={}, headers={**owner.headers, "Idempotency-Key": "buy-1"}
    )
    assert retried.headers.get("Idempotent-Replayed") == "true" and retried.get_json()["id"] == first["purchase_id"]
    assert db_session.scalar(select(func.count()).select_from(PackagePurchase)) == 1

    mine = client.get(f"{APP}/me/packages/{first['purchase_id']}", headers=owner.headers).get_json()
    assert mine["state"] == "active" and len(mine["code"]) == 12 and mine["uses_left"] == 3 and mine["expires_at"]
    code = mine["code"]

    used = _use(client, staff["advisor"], code, "scan-nonce-0001")
    assert used.status_code == 200, used.get_json()
    assert used.get_json()["purchase"]["uses_left"] == 2
    replay = _use(client, staff["advisor"], code, "scan-nonce-0001")
    assert replay.get_json()["use"]["id"] == used.get_json()["use"]["id"]
    assert replay.get_json()["purchase"]["uses_left"] == 2
    # Another store's staff cannot write off this store's package; a bad code is a 404.
    refused = _use(client, staff["other_store"], code, "scan-nonce-0002")
    assert refused.status_code == 409 and refused.get_json()["code"] == "package.wrong_store"
    assert (
        _use(client, staff["advisor"], "000000000000", "scan-nonce-0003").get_json()["code"] == "package.code_invalid"
    )
    # A region manager names the store; without one the request is refused clearly.
    assert _use(client, staff["region"], code, "scan-nonce-0004").get_json()["code"] == "package.store_required"
    assert _use(client, staff["region"], code, "scan-nonce-0004", store_id=tree.stores[0].id).status_code == 200
    assert _use(client, staff["advisor"], code, "scan-nonce-0005").get_json()["purchase"]["state"] == "used_up"
    spent = _use(client, staff["advisor"], code, "scan-nonce-0006")
    assert spent.status_code == 409 and spent.get_json()["code"] == "package.used_up"

    kinds = db_session.scalars(
        select(Touchpoint.kind).where(Touchpoint.customer_id == owner.id).order_by(Touchpoint.id)
    ).all()
    assert kinds.count("package_activated") == 1  # two notifications, one activation
    assert kinds.count("package_used") == 3
    assert db_session.scalar(select(func.count()).select_from(PackageUse)) == 3
    staff_view = client.get(f"{WB}/customers/{owner.id}/packages", headers=staff["manager"]).get_json()["items"]
    assert [(p["id"], p["uses_left"]) for p in staff_view] == [(first["purchase_id"], 0)]


def test_refund_only_for_unused_uses_and_takes_them_back(
    client: Any, db_session: Any, tree: Any, owner: Any, staff: Any, sandbox_reset: Any, deliver_to_app: Any
) -> None:
    package = _package(client, staff, tree.stores[0].id, price_fen=30001)  # 10000 per use, remainder on the last
    purchase = client.post(f"{APP}/packages/{package['id']}/purchases", json={}, headers=owner.headers).get_json()
    order = client.post(f"{APP}/payments/orders", json=purchase["payment"], headers=owner.headers).get_json()["order"]
    notify_paid(sandbox_reset.state, order["out_trade_no"])
    code = client.get(f"{APP}/me/packages/{purchase['id']}", headers=owner.headers).get_json()["code"]
    assert _use(client, staff["advisor"], code, "use-nonce-0001").status_code == 200

    refunds = f"{WB}/payments/orders/{order['id']}/refunds"
    too_much = client.post(refunds, json={"reason": "客户退卡", "amount_fen": 30001}, headers=staff["manager"])
    assert too_much.status_code == 422 and too_much.get_json()["code"] == "payment.refund_exceeds_refundable"
    assert too_much.get_json()["errors"]["refundable_fen"] == 20001
    # One use's worth first, then "the rest", which is what the unused uses are worth.
    one = client.post(
        refunds, json={"reason": "退一次", "amount_fen": 10000, "out_refund_no": "PK-R1"}, headers=staff["manager"]
    )
    assert one.status_code == 201, one.get_json()
    notify_refund(sandbox_reset.state, "PK-R1")
    db_session.expire_all()
    row = db_session.get(PackagePurchase, purchase["id"])
    assert (row.uses_left, row.uses_refunded, row.state.value) == (1, 1, "active")
    rest = client.post(refunds, json={"reason": "退剩余", "out_refund_no": "PK-R2"}, headers=staff["manager"])
    assert rest.status_code == 201 and rest.get_json()["amount_fen"] == 10001
    notify_refund(sandbox_reset.state, "PK-R2", copies=2)
    db_session.expire_all()
    row = db_session.get(PackagePurchase, purchase["id"])
    assert (row.uses_left, row.uses_refunded, row.state.value) == (0, 2, "used_up")
    nothing = client.post(refunds, json={"reason": "再退"}, headers=staff["manager"])
    assert nothing.status_code == 422 and nothing.get_json()["code"] == "payment.refund_exceeds_refundable"
    kinds = db_session.scalars(select(Touchpoint.kind).where(Touchpoint.customer_id == owner.id)).all()
    assert kinds.count("package_refunded") == 2


def test_unpaid_purchase_is_not_usable_and_foreign_package_is_404(
    client: Any, tree: Any, owner: Any, staff: Any, make_staff: Any, staff_headers: Any
) -> None:
    other = _package(client, {"manager": staff_headers(make_staff(tree.stores[3], "store_manager"))}, tree.stores[3].id)
    assert client.get(f"{APP}/packages/{other['id']}", headers=owner.headers).get_json()["code"] == "package.not_found"
    resp = client.post(f"{APP}/packages/{other['id']}/purchases", json={}, headers=owner.headers)
    assert resp.status_code == 404
    mine = _package(client, staff, tree.stores[0].id)
    purchase = client.post(f"{APP}/packages/{mine['id']}/purchases", json={}, headers=owner.headers).get_json()
    assert purchase["code"] is None  # no code before payment: nothing to write off
    bad = client.post(f"{WB}/packages", json={"name": "x", "service_type": "nope", "uses": 0}, headers=staff["manager"])
    assert bad.status_code == 422 and set(bad.get_json()["errors"]["json"]) >= {"service_type", "uses", "price_fen"}
    advisor_create = client.post(
        f"{WB}/packages",
        json={"store_id": tree.stores[0].id, "name": "x", "service_type": "wash", "uses": 1, "price_fen": 1},
        headers=staff["advisor"],
    )
    assert advisor_create.status_code == 403


@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_concurrent_write_offs_never_exceed_the_uses(app: Any, tree: Any, make_staff: Any, staff_headers: Any) -> None:
    from datetime import timedelta

    from backend.customers.models import Customer
    from backend.packages.models import PurchaseState, ServicePackage

    # Headers first: the factories' session must be done before the app contexts below replace it.
    headers = staff_headers(make_staff(tree.stores[0], "service_advisor"))
    with app.app_context():
        s = db.session()
        customer = Customer(name="并发核销", home_store_id=tree.stores[0].id)
        s.add(customer)
        s.flush()
        package = ServicePackage(
            store_id=tree.stores[0].id, name="洗车5次", service_type="wash", uses=3, price_fen=9000, valid_days=30
        )
        s.add(package)
        s.flush()
        from backend.platform.db import utcnow

        s.add(
            PackagePurchase(
                package_id=package.id,
                customer_id=customer.id,
                store_id=tree.stores[0].id,
                name=package.name,
                service_type="wash",
                price_fen=9000,
                uses_total=3,
                uses_left=3,
                state=PurchaseState.ACTIVE,
                code="123456789012",
                pay_expires_at=utcnow(),
                paid_at=utcnow(),
                expires_at=utcnow() + timedelta(days=30),
            )
        )
        s.commit()
    client = app.test_client()
    # 12 scans from 12 threads: 10 distinct nonces (two of them sent twice at once).
    nonces = [f"thread-nonce-{i % 10:04d}" for i in range(12)]
    results = run_threads(12, lambda i: _use(client, headers, "123456789012", nonces[i]))
    ok = [r.get_json()["use"]["id"] for r in results if getattr(r, "status_code", None) == 200]
    refused = [r.get_json()["code"] for r in results if getattr(r, "status_code", None) == 409]
    assert len(set(ok)) == 3 and set(refused) == {"package.used_up"}
    assert len(ok) + len(refused) == 12
    with app.app_context():
        s = db.session()
        row = s.scalars(select(PackagePurchase).where(PackagePurchase.code == "123456789012")).one()
        assert (row.uses_left, row.state) == (0, PurchaseState.USED_UP)
        assert s.scalar(select(func.count()).select_from(PackageUse).where(PackageUse.purchase_id == row.id)) == 3
