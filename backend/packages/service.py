"""Service packages (保养套餐): selling prepaid bundles of store services through WeChat Pay and
writing them off at the store.

Flow: the owner starts a purchase (`buy`), pays it through the payments feature (business type
"service_package", business id = purchase id; `quote` gives the price, never the client), the
payment's `on_paid` effect activates it with a 12-digit write-off code and its validity, staff
of the store use it one service at a time (`use`, a conditional decrement, idempotent by the
scan's nonce), and a refund takes back the uses it pays for (`on_refunded`).

Refunds in all may not exceed the price less the value of the uses already used
(`refundable_total_fen`): the payments feature asks before it sends a refund to WeChat Pay.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, false, or_, select, true, update
from sqlalchemy.orm import Session

from backend.customers.models import Customer
from backend.customers.service import live_customer
from backend.org.scope import acting_store, register_scope, store_filter
from backend.packages.models import PackagePurchase, PackageUse, PurchaseState, ServicePackage
from backend.platform.actors import StaffActor
from backend.platform.audit import write_audit
from backend.platform.db import DuplicateKey, unique_savepoint, utcnow
from backend.platform.errors import AppError, register_messages
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import record

log = logging.getLogger("dealerloop.packages")

BUSINESS_TYPE = "service_package"
PAY_WINDOW = timedelta(minutes=30)

register_messages(
    {
        "package.not_found": ("套餐不存在", "Service package not found"),
        "package.unavailable": ("该套餐已停售", "This package is no longer on sale"),
        "package.purchase_not_found": ("套餐订单不存在", "Package purchase not found"),
        "package.not_payable": ("该套餐订单无需或不能支付", "This purchase is not awaiting payment"),
        "package.code_invalid": ("核销码无效", "Write-off code not valid"),
        "package.not_usable": ("该套餐当前不可使用", "This package cannot be used now"),
        "package.used_up": ("套餐次数已用完", "No uses left on this package"),
        "package.expired": ("套餐已过期", "This package has expired"),
        "package.wrong_store": ("该套餐不能在本门店使用", "This package cannot be used at this store"),
        "package.store_required": ("请选择核销门店", "Name the store the package is used at"),
    }
)


# ---------------------------------------------------------------------------------------------
# Scopes: staff see packages of their stores (group-wide ones: everyone-scope staff) and the
# purchases of customers in their scope.


def _package_rule(actor: StaffActor) -> ColumnElement[bool]:
    if actor.scope.store_ids is None:
        return true()
    if not actor.scope.store_ids:
        return false()
    return store_filter(actor, ServicePackage.store_id)


def _purchase_rule(actor: StaffActor) -> ColumnElement[bool]:
    from sqlalchemy import exists

    from backend.customers.service import _customer_rule

    return exists().where(Customer.id == PackagePurchase.customer_id, _customer_rule(actor))


register_scope("service_package", ServicePackage, _package_rule, "package.not_found")
register_scope("package_purchase", PackagePurchase, _purchase_rule, "package.purchase_not_found")


# ---------------------------------------------------------------------------------------------
# Owner side


def _visible_to(customer: Customer) -> ColumnElement[bool]:
    """Owners see group-wide packages and those of their home store."""
    if customer.home_store_id is None:
        return ServicePackage.store_id.is_(None)
    return or_(ServicePackage.store_id.is_(None), ServicePackage.store_id == customer.home_store_id)


def member_packages(session: Session, customer: Customer) -> list[ServicePackage]:
    stmt = select(ServicePackage).where(ServicePackage.active.is_(True), _visible_to(customer))
    return list(session.scalars(stmt.order_by(ServicePackage.id)))


def member_package(session: Session, customer: Customer, package_id: int) -> ServicePackage:
    stmt = select(ServicePackage).where(ServicePackage.id == package_id, _visible_to(customer))
    package = session.scalars(stmt).one_or_none()
    if package is None:
        raise AppError("package.not_found", 404)
    return package


def member_purchase(session: Session, customer_id: int, purchase_id: int) -> PackagePurchase:
    stmt = select(PackagePurchase).where(PackagePurchase.id == purchase_id, PackagePurchase.customer_id == customer_id)
    purchase = session.scalars(stmt).one_or_none()
    if purchase is None:
        raise AppError("package.purchase_not_found", 404)
    return purchase


def member_purchases(session: Session, customer_id: int) -> list[PackagePurchase]:
    stmt = select(PackagePurchase).where(
        PackagePurchase.customer_id == customer_id, PackagePurchase.state != PurchaseState.CLOSED
    )
    return list(session.scalars(stmt.order_by(PackagePurchase.id.desc()).limit(100)))


def buy(session: Session, customer: Customer, package_id: int, now: datetime | None = None) -> PackagePurchase:
    """Start a purchase; it is paid through `POST /payments/orders` and active once paid.
    (A retried request is deduplicated by its Idempotency-Key at the API edge.)"""
    now = now or utcnow()
    # The member as the request resolved them may have been merged away a moment ago: the
    # purchase must be the survivor's, who pays for it next (the payment quotes it for them).
    customer = live_customer(session, customer.id)
    package = member_package(session, customer, package_id)
    if not package.active:
        raise AppError("package.unavailable", 409)
    purchase = PackagePurchase(
        package_id=package.id,
        customer_id=customer.id,
        store_id=package.store_id,
        name=package.name,
        service_type=package.service_type,
        price_fen=package.price_fen,
        uses_total=package.uses,
        uses_left=package.uses,
        state=PurchaseState.AWAITING_PAYMENT,
        pay_expires_at=now + PAY_WINDOW,
    )
    session.add(purchase)
    session.flush()
    return purchase


# ---------------------------------------------------------------------------------------------
# Payments hooks


def _purchase_of_payment(session: Session, payment_order_id: int) -> PackagePurchase | None:
    """The purchase a payment order pays for, locked (FOR UPDATE)."""
    from backend.payments.models import PaymentOrder  # lazily: payments is a separate feature

    pay = session.get(PaymentOrder, payment_order_id)
    if pay is None or pay.business_type != BUSINESS_TYPE or not pay.business_id.isdigit():
        return None
    stmt = select(PackagePurchase).where(PackagePurchase.id == int(pay.business_id)).with_for_update()
    return session.scalars(stmt.execution_options(populate_existing=True)).one_or_none()


def quote(session: Session, customer_id: int, business_id: str) -> Any:
    from backend.payments.effects import Quote

    if not business_id.isdigit():
        raise AppError("package.purchase_not_found", 404)
    purchase = member_purchase(session, customer_id, int(business_id))
    now = utcnow()
    if purchase.state != PurchaseState.AWAITING_PAYMENT or purchase.pay_expires_at <= now:
        raise AppError("package.not_payable", 409)
    return Quote(
        amount_fen=purchase.price_fen,
        description=f"保养套餐 {purchase.name}",
        store_id=purchase.store_id,
        expires_in=purchase.pay_expires_at - now,
    )


def _new_code(session: Session) -> str:
    while True:
        code = f"{secrets.randbelow(10**12):012d}"
        if session.scalar(select(PackagePurchase.id).where(PackagePurchase.code == code)) is None:
            return code


def on_paid(session: Session, payment_order_id: int) -> None:
    """Activate the purchase (once). A purchase we had closed is activated too: the owner's
    money arrived (WeChat closed nothing), and a package holds no stock to give back."""
    with session.begin_nested():
        purchase = _purchase_of_payment(session, payment_order_id)
        if purchase is None or purchase.state not in (PurchaseState.AWAITING_PAYMENT, PurchaseState.CLOSED):
            return
        package = session.get(ServicePackage, purchase.package_id)
        now = utcnow()
        purchase.state = PurchaseState.ACTIVE
        purchase.code = _new_code(session)
        purchase.paid_at = now
        purchase.expires_at = now + timedelta(days=package.valid_days if package else 365)
        session.flush()
        record(
            session,
            customer_id=purchase.customer_id,
            kind=Kind.PACKAGE_ACTIVATED,
            channel=Channel.MINIPROGRAM,
            source="packages",
            source_ref=f"package_purchase:{purchase.id}:activated",
            store_id=purchase.store_id,
            payload={"purchase_id": purchase.id, "name": purchase.name, "uses": purchase.uses_total},
        )


def on_closed(session: Session, payment_order_id: int) -> None:
    with session.begin_nested():
        purchase = _purchase_of_payment(session, payment_order_id)
        if purchase is not None and purchase.state == PurchaseState.AWAITING_PAYMENT:
            purchase.state = PurchaseState.CLOSED


def _unit_fen(purchase: PackagePurchase, n: int) -> int:
    """What n uses are worth; the last use carries the rounding remainder, so all uses together
    are worth exactly the price."""
    base = purchase.price_fen // purchase.uses_total
    return base * n + (purchase.price_fen - base * purchase.uses_total if n == purchase.uses_total else 0)


def refundable_total_fen(session: Session, payment_order_id: int) -> int | None:
    """The most that may be refunded on the order in all: the price less the value of the
    services already used at the store (a used service is never refunded). The purchase row is
    locked (after the payment order, the refund's lock order) so a use at the store meanwhile
    cannot slip between this answer and the refund."""
    purchase = _purchase_of_payment(session, payment_order_id)
    if purchase is None:
        return None
    used = purchase.uses_total - purchase.uses_left - purchase.uses_refunded
    return purchase.price_fen - _unit_fen(purchase, used)


def on_refunded(session: Session, payment_order_id: int, refund_id: int) -> None:
    """Take back the uses the refunded money pays for, computed from the order's refund total
    (not from this refund alone), so re-running it changes nothing. A refund worth less than a
    use takes none (a goodwill partial refund)."""
    from backend.payments.models import PaymentOrder

    with session.begin_nested():
        purchase = _purchase_of_payment(session, payment_order_id)
        if purchase is None or purchase.state not in (
            PurchaseState.ACTIVE,
            PurchaseState.USED_UP,
            PurchaseState.EXPIRED,
        ):
            return
        pay = session.get(PaymentOrder, payment_order_id)
        refunded = pay.refunded_fen if pay else 0
        covered = max(n for n in range(purchase.uses_total + 1) if _unit_fen(purchase, n) <= refunded)
        take = max(0, min(covered - purchase.uses_refunded, purchase.uses_left))
        state = PurchaseState.REFUNDED if refunded >= purchase.price_fen else purchase.state
        if state == PurchaseState.ACTIVE and purchase.uses_left - take == 0:
            state = PurchaseState.USED_UP
        if take == 0 and state == purchase.state:
            return
        purchase.uses_left -= take
        purchase.uses_refunded += take
        purchase.state = state
        session.flush()
        record(
            session,
            customer_id=purchase.customer_id,
            kind=Kind.PACKAGE_REFUNDED,
            channel=Channel.SYSTEM,
            source="packages",
            source_ref=f"package_purchase:{purchase.id}:refund:{refund_id}",
            store_id=purchase.store_id,
            payload={"purchase_id": purchase.id, "uses_taken": take, "uses_left": purchase.uses_left},
        )


# ---------------------------------------------------------------------------------------------
# Staff side: write-off at the store


def use(
    session: Session, actor: StaffActor, code: str, nonce: str, store_id: int | None = None, now: datetime | None = None
) -> tuple[PackagePurchase, PackageUse]:
    """Use one service of a package. The same (code, nonce) again answers the same use."""
    now = now or utcnow()
    store = acting_store(session, actor, store_id, "package.store_required", "package.wrong_store")
    purchase = session.scalars(select(PackagePurchase).where(PackagePurchase.code == code)).one_or_none()
    if purchase is None:
        raise AppError("package.code_invalid", 404)
    done = session.scalars(
        select(PackageUse).where(PackageUse.purchase_id == purchase.id, PackageUse.nonce == nonce)
    ).one_or_none()
    if done is not None:
        return purchase, done
    if purchase.store_id is not None and purchase.store_id != store:
        raise AppError("package.wrong_store", 409)
    if purchase.state == PurchaseState.EXPIRED or (purchase.expires_at and purchase.expires_at <= now):
        raise AppError("package.expired", 409)
    if purchase.state == PurchaseState.USED_UP or (purchase.state == PurchaseState.ACTIVE and purchase.uses_left < 1):
        raise AppError("package.used_up", 409)
    if purchase.state != PurchaseState.ACTIVE:
        raise AppError("package.not_usable", 409)
    try:
        with unique_savepoint(session):
            taken = session.execute(
                update(PackagePurchase.__table__)
                .where(
                    PackagePurchase.id == purchase.id,
                    PackagePurchase.state == PurchaseState.ACTIVE.value,
                    PackagePurchase.uses_left >= 1,
                )
                .values(uses_left=PackagePurchase.uses_left - 1)
            )
            if taken.rowcount != 1:
                raise AppError("package.used_up", 409)
            session.refresh(purchase)
            if purchase.uses_left == 0:
                purchase.state = PurchaseState.USED_UP
            row = PackageUse(
                purchase_id=purchase.id,
                store_id=store,
                staff_id=actor.staff_id,
                nonce=nonce,
                uses_left_after=purchase.uses_left,
                used_at=now,
            )
            session.add(row)
    except DuplicateKey:
        # The same scan submitted twice at once: the other request took the use; answer with it.
        session.refresh(purchase)
        row = session.scalars(
            select(PackageUse).where(PackageUse.purchase_id == purchase.id, PackageUse.nonce == nonce)
        ).one()
        return purchase, row
    record(
        session,
        customer_id=purchase.customer_id,
        kind=Kind.PACKAGE_USED,
        channel=Channel.STORE,
        source="packages",
        source_ref=f"package_use:{row.id}",
        advisor_id=actor.staff_id,
        store_id=store,
        occurred_at=now,
        payload={"purchase_id": purchase.id, "service_type": purchase.service_type, "uses_left": purchase.uses_left},
    )
    write_audit(session, actor, "package.used", "package_purchase", purchase.id, {"nonce": nonce, "store_id": store})
    return purchase, row


def expire_due(session: Session, now: datetime | None = None, limit: int = 500) -> int:
    """Active purchases past their validity become expired (their unused uses lapse)."""
    now = now or utcnow()
    res = session.execute(
        update(PackagePurchase.__table__)
        .where(
            PackagePurchase.state == PurchaseState.ACTIVE.value,
            PackagePurchase.expires_at.is_not(None),
            PackagePurchase.expires_at <= now,
        )
        .values(state=PurchaseState.EXPIRED.value)
        .execution_options(synchronize_session=False)
    )
    return res.rowcount or 0


def close_stale(session: Session, now: datetime | None = None) -> int:
    """Purchases never paid whose window has passed and that have no live payment attempt (a
    live attempt is closed by the payments feature, which then calls `on_closed`)."""
    from backend.payments.models import PaymentOrder

    now = now or utcnow()
    ids = session.scalars(
        select(PackagePurchase.id)
        .where(
            PackagePurchase.state == PurchaseState.AWAITING_PAYMENT,
            PackagePurchase.pay_expires_at < now - timedelta(minutes=10),
        )
        .limit(500)
    ).all()
    closed = 0
    for pid in ids:
        live = session.scalar(select(PaymentOrder.id).where(PaymentOrder.open_key == f"{BUSINESS_TYPE}:{pid}").limit(1))
        if live is None:
            res = session.execute(
                update(PackagePurchase.__table__)
                .where(PackagePurchase.id == pid, PackagePurchase.state == PurchaseState.AWAITING_PAYMENT.value)
                .values(state=PurchaseState.CLOSED.value)
            )
            closed += res.rowcount or 0
    return closed
