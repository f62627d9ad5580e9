"""Owner API of service packages (/api/app/v1/packages, /api/app/v1/me/packages).

Buying is two steps: `POST /packages/{id}/purchases` starts a purchase, then the mini-program
pays it with `POST /payments/orders {"business_type": "service_package", "business_id": <id>}`.
"""

from __future__ import annotations

from typing import Any

from backend.customers.service import member_customer
from backend.packages import service
from backend.packages.models import PackagePurchase, ServicePackage
from backend.packages.schemas import (
    PackageListSchema,
    PackageSchema,
    PurchaseInSchema,
    PurchaseListSchema,
    PurchaseSchema,
)
from backend.platform.api import Blueprint, current_member, self_only
from backend.platform.db import db
from backend.platform.idempotency import idempotent

blp = Blueprint(
    "owner_packages", __name__, url_prefix="/api/app/v1", audience="owner", description="保养套餐 — packages"
)


def purchase_view(purchase: PackagePurchase) -> dict[str, Any]:
    view = {c: getattr(purchase, c) for c in PurchaseSchema().fields if hasattr(purchase, c)}
    if purchase.state.value == "awaiting_payment":
        view["payment"] = {"business_type": service.BUSINESS_TYPE, "business_id": str(purchase.id)}
    return view


@blp.route("/packages")
@self_only
@blp.response(200, PackageListSchema)
def list_packages() -> dict[str, Any]:
    """Packages on sale to me: the group's and my home store's."""
    return {"items": service.member_packages(db.session(), member_customer(db.session(), current_member()))}


@blp.route("/packages/<int:package_id>")
@self_only
@blp.response(200, PackageSchema)
def get_package(package_id: int) -> ServicePackage:
    return service.member_package(db.session(), member_customer(db.session(), current_member()), package_id)


@blp.route("/packages/<int:package_id>/purchases", methods=["POST"])
@self_only
@idempotent
@blp.arguments(PurchaseInSchema)
@blp.response(201, PurchaseSchema)
def buy(_body: dict[str, Any], package_id: int) -> dict[str, Any]:
    """Start a purchase (send an Idempotency-Key: a retried tap returns the same purchase). The
    answer's `payment` is the body for `POST /payments/orders`."""
    return purchase_view(service.buy(db.session(), member_customer(db.session(), current_member()), package_id))


@blp.route("/me/packages")
@self_only
@blp.response(200, PurchaseListSchema)
def my_purchases() -> dict[str, Any]:
    """My packages, newest first (never-paid ones left out)."""
    return {"items": [purchase_view(p) for p in service.member_purchases(db.session(), current_member().customer_id)]}


@blp.route("/me/packages/<int:purchase_id>")
@self_only
@blp.response(200, PurchaseSchema)
def my_purchase(purchase_id: int) -> dict[str, Any]:
    """One of my packages, with its write-off code once paid."""
    return purchase_view(service.member_purchase(db.session(), current_member().customer_id, purchase_id))
