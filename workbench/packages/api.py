"""Workbench API of service packages (/api/workbench/v1/packages...): the catalogue (managers
and marketing), a customer's packages, and the write-off of one use at the store."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import select

from backend.org.scope import get_scoped_or_404, scope_query
from backend.packages import service
from backend.packages.models import ServicePackage
from backend.packages.schemas import (
    PackageInSchema,
    PackageListSchema,
    PackagePatchSchema,
    PackageSchema,
    PurchaseListSchema,
    UseInSchema,
    UseResultSchema,
)
from backend.platform.api import Blueprint, current_staff, role_required, scoped
from backend.platform.audit import write_audit
from backend.platform.db import db
from workbench.scoping import require_store_in_scope, scope_first

blp = Blueprint(
    "wb_packages", __name__, url_prefix="/api/workbench/v1", audience="staff", description="保养套餐 — packages"
)

MANAGERS = ("store_manager", "region_manager", "division_manager", "group_admin", "marketing")


@blp.route("/packages")
class Packages(MethodView):
    @scoped("service_package")
    @blp.response(200, PackageListSchema)
    def get(self) -> dict[str, Any]:
        """Packages of the stores in my scope."""
        stmt = scope_query(select(ServicePackage), current_staff(), "service_package")
        return {"items": db.session().scalars(stmt.order_by(ServicePackage.id.desc()).limit(500)).all()}

    @scoped("service_package")
    @role_required(*MANAGERS)
    @blp.arguments(PackageInSchema)
    @blp.response(201, PackageSchema)
    def post(self, data: dict[str, Any]) -> ServicePackage:
        """Create a package. Store-level staff create packages of their own stores only."""
        session = db.session()
        actor = current_staff()
        require_store_in_scope(actor, data.get("store_id"))
        package = ServicePackage(**data)
        session.add(package)
        session.flush()
        write_audit(session, actor, "package.created", "service_package", package.id)
        return package


@blp.route("/packages/<int:package_id>", methods=["PATCH"])
@scoped("service_package")
@scope_first("service_package", "package_id")
@role_required(*MANAGERS)
@blp.arguments(PackagePatchSchema)
@blp.response(200, PackageSchema)
def patch_package(data: dict[str, Any], package_id: int) -> ServicePackage:
    """Rename, describe, take off sale. Price and uses are fixed once sold (purchases keep theirs)."""
    session = db.session()
    actor = current_staff()
    package = get_scoped_or_404(session, actor, "service_package", package_id)
    for key, value in data.items():
        setattr(package, key, value)
    write_audit(session, actor, "package.updated", "service_package", package.id, data)
    return package


@blp.route("/customers/<int:customer_id>/packages")
@scoped("customer")
@blp.response(200, PurchaseListSchema)
def customer_packages(customer_id: int) -> dict[str, Any]:
    session = db.session()
    customer = get_scoped_or_404(session, current_staff(), "customer", customer_id)
    return {"items": service.member_purchases(session, customer.id)}


@blp.route("/packages/uses", methods=["POST"])
@scoped("package_purchase")
@blp.arguments(UseInSchema)
@blp.response(200, UseResultSchema)
def use_package(data: dict[str, Any]) -> dict[str, Any]:
    """Write off one use of a package at my store (the code the owner shows). The store is mine;
    staff above store level name one of their scope. A repeated nonce answers the same use."""
    purchase, use = service.use(db.session(), current_staff(), data["code"], data["nonce"], data.get("store_id"))
    return {"purchase": purchase, "use": use}
