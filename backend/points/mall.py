"""The points mall (积分商城): items, redemption, cancellation, shipment, vouchers, and the
hooks for points+cash orders paid through WeChat Pay (business type "mall_order").

Redemption is one transaction with a fixed lock order, the same for everybody, so concurrent
redemptions serialise on the item row and cannot deadlock:
  1. stock:   UPDATE mall_item SET stock = stock - q WHERE id = :i AND stock >= q
  2. limits:  per-member counters, conditional increments (overall, then per period)
  3. points:  conditional debit of the account (or freeze, when there is a cash part)
  4. order:   INSERT mall_order
  5. code:    a virtual code from the pool, SELECT … FOR UPDATE SKIP LOCKED
Any failure rolls back the whole SAVEPOINT: no stock, counter, points or code is half-taken.
Cancellation (before shipment) locks the order, then walks the same order back.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, exists, false, or_, select, true, update
from sqlalchemy.orm import Session

from backend.customers.models import Customer
from backend.org.scope import register_scope, store_filter
from backend.platform.actors import StaffActor
from backend.platform.db import utcnow
from backend.platform.errors import AppError, register_messages
from backend.platform.logs import mask_phone, mask_phones
from backend.platform.pii import register_sealed_text, seal_into
from backend.platform.upsert import upsert
from backend.points import service, tiers
from backend.points.models import (
    ItemKind,
    LimitPeriod,
    MallCode,
    MallItem,
    MallMemberCounter,
    MallOrder,
    MallOrderState,
    PointsLedger,
)
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import live_customer_id, record

log = logging.getLogger("dealerloop.points.mall")

BUSINESS_TYPE = "mall_order"
PAY_WINDOW = timedelta(minutes=30)

register_messages(
    {
        "mall.item_not_found": ("商品不存在", "Mall item not found"),
        "mall.order_not_found": ("兑换订单不存在", "Mall order not found"),
        "mall.item_unavailable": ("该商品已下架", "This item is not available"),
        "mall.not_on_sale": ("该商品不在兑换时间内", "This item is not on sale now"),
        "mall.sold_out": ("商品已兑完", "Sold out"),
        "mall.limit_reached": ("已达到该商品的兑换上限", "Redemption limit reached for this item"),
        "mall.tier_required": ("您的会员等级暂不能兑换该商品", "Your tier cannot redeem this item"),
        "mall.coupon_unavailable": (
            "该优惠券暂不可兑换",
            "This coupon cannot be redeemed now (no coupon set, sold out or not for points only)",
        ),
        "mall.codes_exhausted": ("兑换码已发完", "The code pool of this item is empty"),
        "mall.cannot_cancel": ("该订单当前状态不能取消", "This order cannot be cancelled in its current state"),
        "mall.cash_order_needs_refund": (
            "该订单含现金支付，请联系门店办理退款",
            "This order has a cash part: cancel it through a refund",
        ),
        "mall.cannot_ship": ("该订单当前状态不能发货", "This order cannot be shipped in its current state"),
        "mall.voucher_invalid": ("核销码无效或已使用", "Voucher code invalid or already used"),
        "mall.order_not_payable": ("该订单无需或不能支付", "This order is not awaiting payment"),
        "mall.code_duplicate": ("兑换码重复", "Duplicate codes"),
    }
)


# ---------------------------------------------------------------------------------------------
# Scopes: staff manage items of their stores (group-wide items: everyone-scope staff only) and
# see redemptions of customers in their scope.


def _item_rule(actor: StaffActor) -> ColumnElement[bool]:
    if actor.scope.store_ids is None:
        return true()
    if not actor.scope.store_ids:
        return false()
    return store_filter(actor, MallItem.store_id)


def _order_rule(actor: StaffActor) -> ColumnElement[bool]:
    from backend.customers.service import _customer_rule

    return exists().where(Customer.id == MallOrder.customer_id, _customer_rule(actor))


register_scope("mall_item", MallItem, _item_rule, "mall.item_not_found")
register_scope("mall_order", MallOrder, _order_rule, "mall.order_not_found")
register_sealed_text("mall_order.cancel_reason", MallOrder, "cancel_reason", "mall_order")


def visible_to_member(customer: Customer) -> ColumnElement[bool]:
    """Owners see group-wide items and the items of their home store."""
    if customer.home_store_id is None:
        return MallItem.store_id.is_(None)
    return or_(MallItem.store_id.is_(None), MallItem.store_id == customer.home_store_id)


def member_items(session: Session, customer: Customer) -> list[MallItem]:
    return list(
        session.scalars(
            select(MallItem).where(MallItem.active.is_(True), visible_to_member(customer)).order_by(MallItem.id)
        )
    )


def member_item(session: Session, customer: Customer, item_id: int) -> MallItem:
    item = session.scalars(select(MallItem).where(MallItem.id == item_id, visible_to_member(customer))).one_or_none()
    if item is None:
        raise AppError("mall.item_not_found", 404)
    return item


def member_order(session: Session, customer_id: int, order_id: int) -> MallOrder:
    order = session.scalars(
        select(MallOrder).where(MallOrder.id == order_id, MallOrder.customer_id == customer_id)
    ).one_or_none()
    if order is None:
        raise AppError("mall.order_not_found", 404)
    return order


def period_key(period: LimitPeriod, now: datetime) -> str | None:
    day = service.shanghai_date(now)
    if period == LimitPeriod.DAY:
        return f"d{day.isoformat()}"
    if period == LimitPeriod.WEEK:
        year, week, _ = day.isocalendar()
        return f"w{year}-{week:02d}"
    if period == LimitPeriod.MONTH:
        return f"m{day.year}-{day.month:02d}"
    return None


def codes_of(session: Session, order_id: int) -> list[str]:
    return list(session.scalars(select(MallCode.code).where(MallCode.order_id == order_id).order_by(MallCode.id)))


# ---------------------------------------------------------------------------------------------
# Redemption


def _bump_counter(session: Session, item_id: int, customer_id: int, key: str, quantity: int, limit: int) -> bool:
    upsert(
        session,
        MallMemberCounter,
        {"item_id": item_id, "customer_id": customer_id, "period_key": key, "quantity": 0},
        ["item_id", "customer_id", "period_key"],
        lambda new: [("quantity", MallMemberCounter.__table__.c.quantity)],
    )
    c = MallMemberCounter.__table__.c
    # By primary key: a WHERE on (item, customer, period) may be planned on the customer_id
    # index, locking every counter row of the member; two redemptions of different items by
    # one member then deadlocked (each holding its own item's row from the upsert).
    counter_id = session.execute(
        select(c.id).where(c.item_id == item_id, c.customer_id == customer_id, c.period_key == key)
    ).scalar_one()
    res = session.execute(
        update(MallMemberCounter.__table__)
        .where(c.id == counter_id, c.quantity + quantity <= limit)
        .values(quantity=c.quantity + quantity)
    )
    return res.rowcount == 1


def _new_order_no(now: datetime) -> str:
    return f"M{now.strftime('%Y%m%d%H%M%S')}{secrets.token_hex(6).upper()}"


def _new_voucher_code() -> str:
    return f"{secrets.randbelow(10**12):012d}"


def redeem(
    session: Session,
    customer_id: int,
    item_id: int,
    quantity: int = 1,
    address: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> MallOrder:
    now = now or utcnow()
    # A member resolved before a merge committed: the order, its per-member counters and the
    # points are the survivor's (else a second redemption past their limit, on a hidden row).
    customer_id = live_customer_id(session, customer_id)
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise AppError("member.not_found", 404)
    item = member_item(session, customer, item_id)
    if not item.active:
        raise AppError("mall.item_unavailable", 409)
    if (item.sale_starts_at and now < item.sale_starts_at) or (item.sale_ends_at and now >= item.sale_ends_at):
        raise AppError("mall.not_on_sale", 409)
    if item.kind == ItemKind.COUPON and (item.coupon_template_id is None or item.cash_fen > 0):
        raise AppError("mall.coupon_unavailable", 409)  # coupons are sold for points only
    if quantity < 1 or quantity > item.per_order_limit:
        raise AppError(
            "request.invalid", 422, errors={"json": {"quantity": [f"must be between 1 and {item.per_order_limit}"]}}
        )
    if item.kind == ItemKind.PHYSICAL and not address:
        raise AppError("request.invalid", 422, errors={"json": {"address": ["a shipping address is required"]}})
    if item.min_tier and tiers.tier(customer.tier).rank < tiers.tier(item.min_tier).rank:
        raise AppError("mall.tier_required", 403)

    with session.begin_nested():
        # 1. stock
        stock = session.execute(
            update(MallItem.__table__)
            .where(MallItem.id == item.id, MallItem.stock >= quantity, MallItem.active.is_(True))
            .values(stock=MallItem.stock - quantity, sold=MallItem.sold + quantity)
        )
        if stock.rowcount != 1:
            raise AppError("mall.sold_out", 409)
        # 2. per-member limits
        if item.per_member_limit is not None and not _bump_counter(
            session, item.id, customer_id, "all", quantity, item.per_member_limit
        ):
            raise AppError("mall.limit_reached", 409)
        pkey = period_key(item.limit_period, now) if item.per_period_limit is not None else None
        if pkey and not _bump_counter(session, item.id, customer_id, pkey, quantity, item.per_period_limit or 0):
            raise AppError("mall.limit_reached", 409)
        # 3. points
        order_no = _new_order_no(now)
        cash = item.cash_fen * quantity
        ledger = service.spend(
            session,
            customer_id,
            item.points_price * quantity,
            key=f"mall:{order_no}",
            reason_code="mall_redeem",
            operator=f"member:{customer_id}",
            ref_type="mall_order",
            ref_id=order_no,
            note=item.name[:255],
            freeze=cash > 0,
            now=now,
        )
        # 4. order
        if cash > 0:
            state = MallOrderState.AWAITING_PAYMENT
        elif item.kind == ItemKind.VIRTUAL_CODE:
            state = MallOrderState.COMPLETED
        else:
            state = MallOrderState.PLACED
        order = MallOrder(
            order_no=order_no,
            customer_id=customer_id,
            item_id=item.id,
            item_kind=item.kind,
            quantity=quantity,
            points_total=item.points_price * quantity,
            cash_fen_total=cash,
            period_key=pkey,
            state=state,
            store_id=item.store_id or customer.home_store_id,
            points_ledger_id=ledger.id,
            address_encrypted=_seal_address(address) if item.kind == ItemKind.PHYSICAL else None,
            voucher_code=_new_voucher_code() if item.kind == ItemKind.SERVICE_VOUCHER else None,
            pay_expires_at=now + PAY_WINDOW if cash > 0 else None,
            created_at=now,
        )
        session.add(order)
        session.flush()
        # 5. codes
        if item.kind == ItemKind.VIRTUAL_CODE:
            codes = list(
                session.scalars(
                    select(MallCode)
                    .where(MallCode.item_id == item.id, MallCode.order_id.is_(None))
                    .order_by(MallCode.id)
                    .limit(quantity)
                    .with_for_update(skip_locked=True)
                )
            )
            if len(codes) < quantity:
                raise AppError("mall.codes_exhausted", 409)
            for code in codes:
                code.order_id = order.id
                code.assigned_at = now
            session.flush()
        elif item.kind == ItemKind.COUPON:
            from backend.offers.service import issue_for_mall

            issue_for_mall(session, item.coupon_template_id, customer_id, order_no, quantity)
            order.state = MallOrderState.COMPLETED
        record(
            session,
            customer_id=customer_id,
            kind=Kind.MALL_REDEEMED,
            channel=Channel.MINIPROGRAM,
            source="points",
            source_ref=f"mall:{order.id}:redeemed",
            occurred_at=now,
            store_id=order.store_id,
            payload={
                "order_no": order_no,
                "item_id": item.id,
                "item": item.name,
                "quantity": quantity,
                "points": order.points_total,
                "cash_fen": cash,
            },
        )
    return order


def _lock_order(session: Session, order_id: int) -> MallOrder:
    return session.scalars(
        select(MallOrder).where(MallOrder.id == order_id).with_for_update().execution_options(populate_existing=True)
    ).one()


def _undo(session: Session, order: MallOrder, state: MallOrderState, reason: str, operator: str, now: datetime) -> None:
    """Walk a redemption back: stock, counters, points (into the same buckets), codes."""
    session.execute(
        update(MallItem.__table__)
        .where(MallItem.id == order.item_id)
        .values(stock=MallItem.stock + order.quantity, sold=MallItem.sold - order.quantity)
    )
    c = MallMemberCounter.__table__.c
    keys = ["all"] + ([order.period_key] if order.period_key else [])
    counter_ids = session.scalars(
        select(c.id)
        .where(c.item_id == order.item_id, c.customer_id == order.customer_id, c.period_key.in_(keys))
        .order_by(c.id)
    ).all()
    if counter_ids:  # by primary key, as in _bump_counter (not a scan of the member's counters)
        session.execute(
            update(MallMemberCounter.__table__)
            .where(c.id.in_(counter_ids))
            .values(quantity=c.quantity - order.quantity)
        )
    debit = session.get(PointsLedger, order.points_ledger_id) if order.points_ledger_id else None
    if debit is not None:
        service.restore(
            session,
            debit,
            key=f"mall:{order.order_no}:undo",
            reason_code="mall_cancel" if state == MallOrderState.CANCELLED else "mall_unpaid",
            operator=operator,
            now=now,
        )
    session.execute(update(MallCode).where(MallCode.order_id == order.id).values(order_id=None, assigned_at=None))
    order.state = state
    order.cancelled_at = now
    from backend.customers.service import vault

    seal_into(order, "cancel_reason", reason[:255], vault())
    session.flush()
    record(
        session,
        customer_id=order.customer_id,
        kind=Kind.MALL_CANCELLED,
        channel=service._channel(operator),
        source="points",
        source_ref=f"mall:{order.id}:{state.value}",
        occurred_at=now,
        store_id=order.store_id,
        payload={
            "order_no": order.order_no,
            "state": state.value,
            "reason": order.cancel_reason,  # masked, as stored
            "points": order.points_total,
        },
    )


def cancel(
    session: Session, order_id: int, *, operator: str, reason: str, by_member: bool, now: datetime | None = None
) -> MallOrder:
    """Before shipment (physical), before use (voucher). A revealed virtual code cannot be taken
    back; an order with a cash part is cancelled by refunding it in full (the refund hook cancels)."""
    now = now or utcnow()
    with session.begin_nested():
        order = _lock_order(session, order_id)
        if order.state != MallOrderState.PLACED or order.item_kind == ItemKind.VIRTUAL_CODE:
            raise AppError("mall.cannot_cancel", 409)
        if by_member and order.cash_fen_total > 0:
            raise AppError("mall.cash_order_needs_refund", 409)
        _undo(session, order, MallOrderState.CANCELLED, reason, operator, now)
    return order


def ship(
    session: Session, actor: StaffActor, order: MallOrder, carrier: str, tracking_no: str, now: datetime | None = None
) -> MallOrder:
    now = now or utcnow()
    with session.begin_nested():
        order = _lock_order(session, order.id)
        if order.state != MallOrderState.PLACED or order.item_kind != ItemKind.PHYSICAL:
            raise AppError("mall.cannot_ship", 409)
        order.state = MallOrderState.SHIPPED
        order.carrier = carrier
        order.tracking_no = tracking_no
        order.shipped_at = now
        from backend.platform.audit import write_audit

        write_audit(
            session, actor, "mall.shipped", "mall_order", order.id, {"carrier": carrier, "tracking_no": tracking_no}
        )
    return order


def _seal_address(address: dict[str, Any] | None) -> bytes | None:
    from backend.customers.service import vault

    return vault().encrypt(json.dumps(address, ensure_ascii=False)) if address else None


def _open_address(order: MallOrder) -> dict[str, Any] | None:
    from backend.customers.service import vault

    if order.address_encrypted is None:
        return None
    return json.loads(vault().decrypt(order.address_encrypted))


def shown_address(order: MallOrder) -> dict[str, Any] | None:
    """The shipping address as answers show it (owner's and staff's alike): phone masked, and
    any number typed into the other fields too (a second number in the street line)."""
    address = _open_address(order)
    if address is None:
        return None
    shown = {k: mask_phones(v) if isinstance(v, str) else v for k, v in address.items()}
    if address.get("phone"):
        shown["phone"] = mask_phone(address["phone"])
    return shown


def reveal_address(session: Session, actor: StaffActor, order: MallOrder) -> dict[str, Any] | None:
    """The full address, for shipping: the same right as revealing the customer's phone, and
    audited like it."""
    from backend.customers.service import check_phone_access
    from backend.platform.audit import write_audit

    check_phone_access(actor)
    write_audit(session, actor, "mall.address_revealed", "mall_order", order.id)
    return _open_address(order)


def redeem_voucher(session: Session, actor: StaffActor, code: str, now: datetime | None = None) -> MallOrder:
    """Store write-off of a service voucher; the order must be in the staff member's scope."""
    from backend.org.scope import scope_query
    from backend.platform.audit import write_audit

    now = now or utcnow()
    stmt = scope_query(select(MallOrder).where(MallOrder.voucher_code == code), actor, "mall_order")
    order = session.scalars(stmt).one_or_none()
    if order is None:
        raise AppError("mall.voucher_invalid", 404)
    with session.begin_nested():
        order = _lock_order(session, order.id)
        if order.state != MallOrderState.PLACED:
            raise AppError("mall.voucher_invalid", 409)
        order.state = MallOrderState.COMPLETED
        order.redeemed_at = now
        write_audit(session, actor, "mall.voucher_redeemed", "mall_order", order.id)
    return order


def add_codes(session: Session, item: MallItem, codes: list[str]) -> int:
    from backend.platform.db import DuplicateKey, unique_savepoint

    if len(set(codes)) != len(codes):
        raise AppError("mall.code_duplicate", 422, errors={"json": {"codes": ["duplicate codes in the request"]}})
    try:
        with unique_savepoint(session):
            session.add_all(MallCode(item_id=item.id, code=c) for c in codes)
    except DuplicateKey as exc:
        raise AppError("mall.code_duplicate", 422, errors={"json": {"codes": ["a code already exists"]}}) from exc
    return len(codes)


def adjust_stock(session: Session, item: MallItem, delta: int) -> MallItem:
    """Add or remove stock without a lost update (conditional: never below zero)."""
    res = session.execute(
        update(MallItem.__table__)
        .where(MallItem.id == item.id, MallItem.stock + delta >= 0)
        .values(stock=MallItem.stock + delta)
    )
    if res.rowcount != 1:
        raise AppError("request.invalid", 422, errors={"json": {"stock_delta": ["stock cannot go below zero"]}})
    session.refresh(item)
    return item


# ---------------------------------------------------------------------------------------------
# Payments hooks (business type "mall_order"; business_id is the mall order id)


def _payment_order(session: Session, payment_order_id: int) -> Any:
    from backend.payments.models import PaymentOrder  # lazily: payments is a separate feature

    return session.get(PaymentOrder, payment_order_id)


def _mall_order_for_payment(session: Session, payment_order_id: int) -> MallOrder | None:
    pay = _payment_order(session, payment_order_id)
    if pay is None or pay.business_type != BUSINESS_TYPE:
        return None
    try:
        return session.get(MallOrder, int(pay.business_id))
    except ValueError:
        return None


def quote(session: Session, customer_id: int, business_id: str) -> Any:
    from backend.payments.effects import Quote

    try:
        order_id = int(business_id)
    except ValueError as exc:
        raise AppError("mall.order_not_found", 404) from exc
    order = member_order(session, customer_id, order_id)
    now = utcnow()
    if order.state != MallOrderState.AWAITING_PAYMENT or not order.pay_expires_at or order.pay_expires_at <= now:
        raise AppError("mall.order_not_payable", 409)
    item = session.get(MallItem, order.item_id)
    return Quote(
        amount_fen=order.cash_fen_total,
        description=f"积分商城 {item.name if item else order.order_no}",
        store_id=order.store_id,
        expires_in=order.pay_expires_at - now,
    )


def on_paid(session: Session, payment_order_id: int) -> None:
    order = _mall_order_for_payment(session, payment_order_id)
    if order is None:
        return
    now = utcnow()
    with session.begin_nested():
        order = _lock_order(session, order.id)
        if order.state != MallOrderState.AWAITING_PAYMENT:
            if order.state in (MallOrderState.CLOSED, MallOrderState.CANCELLED):
                # Paid after we gave the stock back: must be refunded by staff, never credited twice.
                log.error("mall order %s paid after it was %s; refund needed", order.order_no, order.state.value)
            return
        freeze = session.get(PointsLedger, order.points_ledger_id)
        assert freeze is not None
        service.consume_frozen(
            session, freeze, key=f"mall:{order.order_no}:consume", operator="system:payments", now=now
        )
        order.state = MallOrderState.COMPLETED if order.item_kind == ItemKind.VIRTUAL_CODE else MallOrderState.PLACED
        session.flush()


def on_closed(session: Session, payment_order_id: int) -> None:
    order = _mall_order_for_payment(session, payment_order_id)
    if order is None:
        return
    close_unpaid_order(session, order.id, reason="payment closed")


def close_unpaid_order(session: Session, order_id: int, reason: str, now: datetime | None = None) -> bool:
    now = now or utcnow()
    with session.begin_nested():
        order = _lock_order(session, order_id)
        if order.state != MallOrderState.AWAITING_PAYMENT:
            return False
        _undo(session, order, MallOrderState.CLOSED, reason, "system:mall", now)
    return True


def on_refunded(session: Session, payment_order_id: int, refund_id: int) -> None:
    """A cash part refunded in full cancels a redemption not yet shipped (stock, counters and
    points back). A partial refund (a goodwill amount) leaves the redemption as it is: the member
    still has part of the cash in it, so the item and its points are not given back for less."""
    from backend.payments.models import OrderState

    order = _mall_order_for_payment(session, payment_order_id)
    if order is None:
        return
    if _payment_order(session, payment_order_id).state != OrderState.REFUNDED:
        log.info("refund %s of mall order %s is partial: the redemption stands", refund_id, order.order_no)
        return
    now = utcnow()
    with session.begin_nested():
        order = _lock_order(session, order.id)
        if order.state == MallOrderState.PLACED:
            _undo(session, order, MallOrderState.CANCELLED, f"refund {refund_id}", "system:payments", now)
        else:
            log.info("refund %s of mall order %s in state %s: nothing to undo", refund_id, order.order_no, order.state)


def close_stale_unpaid(session: Session, now: datetime | None = None, grace: timedelta = timedelta(minutes=10)) -> int:
    """Orders whose payment window has passed and that have no live payment attempt (if one
    exists, the payments feature closes it and calls `on_closed`)."""
    from backend.payments.models import PaymentOrder

    now = now or utcnow()
    ids = session.scalars(
        select(MallOrder.id)
        .where(MallOrder.state == MallOrderState.AWAITING_PAYMENT, MallOrder.pay_expires_at < now - grace)
        .order_by(MallOrder.id)
        .limit(200)
    ).all()
    closed = 0
    for oid in ids:
        live = session.scalar(select(PaymentOrder.id).where(PaymentOrder.open_key == f"{BUSINESS_TYPE}:{oid}").limit(1))
        if live is None and close_unpaid_order(session, oid, "payment window passed", now):
            closed += 1
    return closed
