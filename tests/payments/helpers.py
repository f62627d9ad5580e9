"""Out-of-scope package objects for the scope-enumeration test."""

from __future__ import annotations

from typing import Any


def foreign_package_ids(db_session: Any, store: Any, customer: Any) -> dict[str, int]:
    from backend.packages.models import PackagePurchase, PurchaseState, ServicePackage
    from backend.platform.db import utcnow

    package = ServicePackage(
        store_id=store.id, name="他店套餐", service_type="wash", uses=2, price_fen=5000, valid_days=30
    )
    db_session.add(package)
    db_session.flush()
    purchase = PackagePurchase(
        package_id=package.id,
        customer_id=customer.id,
        store_id=store.id,
        name=package.name,
        service_type="wash",
        price_fen=5000,
        uses_total=2,
        uses_left=2,
        state=PurchaseState.AWAITING_PAYMENT,
        pay_expires_at=utcnow(),
    )
    db_session.add(purchase)
    db_session.flush()
    return {"package_id": package.id, "purchase_id": purchase.id}
