"""Payment orders, WeChat Pay notifications, active query/close, refunds and reconciliation.

The rules (see ../shared/reference/loyalty-booking-payments.md §6.2):
- An order is created locally first (integer fen, unique out_trade_no, expiry), then prepaid.
- "Paid" is decided in one place, `apply_transaction`, whatever told us (notify, query, close
  answering ORDERPAID, the bill): under the order's row lock, amount.total must equal ours, and
  the move to paid happens once. Its business effects run after commit through the outbox
  (dedup key per order and event, so a duplicate notify cannot enqueue them twice).
- A mismatch (amount, second transaction, paid after close, refund amount) is a `PaymentIssue`
  plus an audit row and an error log line: recorded and alerted, never credited.
- Lock order: payment_order, then payment_refund.

The gateway is passed in (WeChatPayClient in production and tests); the domain never imports
`integrations`.
"""

from __future__ import annotations

import logging
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.customers.models import CustomerIdentity, IdentityKind
from backend.org.scope import register_scope, store_filter
from backend.payments import effects
from backend.payments.models import (
    PAID_STATES,
    OrderState,
    PaymentIssue,
    PaymentOrder,
    PaymentReconciliation,
    PaymentRefund,
    RefundState,
)
from backend.platform.actors import Actor, StaffActor, SystemActor
from backend.platform.audit import write_audit
from backend.platform.db import DuplicateKey, unique_savepoint, utcnow
from backend.platform.errors import AppError, register_messages
from backend.platform.jobs import enqueue
from backend.platform.ports import UpstreamError
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import live_customer_id, record

log = logging.getLogger("dealerloop.payments")

CHINA_TZ = timezone(timedelta(hours=8))
SYSTEM = SystemActor("payments")
MAX_REFUNDS_PER_ORDER = 50
PREPAY_ID_TTL = timedelta(minutes=110)  # WeChat keeps a prepay_id 2 h; renew a little early
MIN_EXPIRY = timedelta(minutes=1)
MAX_EXPIRY = timedelta(days=7)
_ALNUM = string.ascii_uppercase + string.digits

register_messages(
    {
        "payment.order_not_found": ("支付订单不存在", "Payment order not found"),
        "payment.refund_not_found": ("退款单不存在", "Refund not found"),
        "payment.unavailable": ("微信支付未开通", "WeChat Pay is not configured"),
        "payment.business_type_unknown": ("不支持该业务的支付", "This business type cannot be paid"),
        "payment.coupon_unsupported": ("暂不支持使用优惠券", "Coupons cannot be used on orders"),
        "payment.no_openid": ("请先在小程序内登录后再支付", "The customer has no mini-program openid"),
        "payment.amount_invalid": ("支付金额无效", "The amount must be a positive number of fen"),
        "payment.already_paid": ("该订单已支付", "This business object is already paid"),
        "payment.order_conflict": (
            "该业务已有一笔金额不同的待支付订单",
            "An open payment with a different amount exists for this business object",
        ),
        "payment.order_closed": ("订单已关闭，请重新下单", "The payment order is closed"),
        "payment.prepay_rejected": ("微信支付下单失败", "WeChat Pay refused the order"),
        "payment.refund_not_paid": ("订单未支付，不能退款", "Only a paid order can be refunded"),
        "payment.refund_exceeds_paid": ("退款金额超过可退金额", "The refund exceeds the refundable amount"),
        "payment.refund_limit": ("该订单退款次数已达 50 次上限", "At most 50 refunds per order"),
        "payment.issue_not_found": ("支付异常记录不存在", "Payment issue not found"),
        "payment.issue_already_handled": ("该异常已处理", "This issue was already handled"),
        "payment.refund_exceeds_refundable": (
            "退款金额超过可退金额（已使用的服务不可退）",
            "The refund exceeds what the business allows (services already used are not refunded)",
        ),
        "payment.refund_no_conflict": (
            "退款单号已用于其他退款",
            "This out_refund_no was used for a different refund",
        ),
        "payment.refund_rejected": ("微信支付拒绝了退款申请", "WeChat Pay refused the refund"),
        "payment.bill_unavailable": ("对账单暂不可用", "The trade bill is not available"),
    }
)


class PayGateway(Protocol):
    """What this module needs of `integrations.wechatpay.WeChatPayClient`."""

    mchid: str
    appid: str

    def jsapi_prepay(self, **kwargs: Any) -> tuple[int, dict]: ...
    def query_order(self, out_trade_no: str) -> tuple[int, dict]: ...
    def close_order(self, out_trade_no: str) -> tuple[int, dict]: ...
    def request_payment_params(self, prepay_id: str) -> dict[str, str]: ...
    def refund(self, **kwargs: Any) -> tuple[int, dict]: ...
    def query_refund(self, out_refund_no: str) -> tuple[int, dict]: ...
    def trade_bill(self, bill_date: str, bill_type: str = "ALL") -> str: ...


def gateway() -> PayGateway:
    gw = current_app.extensions["dealerloop.gateways"].wechatpay
    if gw is None:
        raise AppError("payment.unavailable", 503)
    return gw


def _upstream_error(exc: UpstreamError) -> AppError:
    return AppError(f"upstream.{exc.reason}", 504 if exc.reason == "timeout" else 503)


# ---------------------------------------------------------------------------------------------
# Scope: managers see the orders of their stores; advisors those of their own customers.


def _order_rule(actor: StaffActor) -> Any:
    if actor.scope.own_customers_only:
        from sqlalchemy import exists

        from backend.customers.models import CustomerAdvisor

        return exists().where(
            CustomerAdvisor.customer_id == PaymentOrder.customer_id, CustomerAdvisor.staff_id == actor.staff_id
        )
    return store_filter(actor, PaymentOrder.store_id)


def _reconciliation_rule(actor: StaffActor) -> Any:
    from sqlalchemy import false, true

    # Bills are per merchant (the whole group): only group admins (finance) see them.
    return true() if actor.scope.store_ids is None else false()


def _issue_rule(actor: StaffActor) -> Any:
    from sqlalchemy import exists, false, true

    if actor.scope.store_ids is None:
        return true()
    if actor.scope.own_customers_only or not actor.scope.store_ids:
        return false()
    return exists().where(PaymentOrder.id == PaymentIssue.order_id, store_filter(actor, PaymentOrder.store_id))


register_scope("payment_order", PaymentOrder, _order_rule, "payment.order_not_found")
register_scope("payment_issue", PaymentIssue, _issue_rule, "payment.issue_not_found")
register_scope("payment_reconciliation", PaymentReconciliation, _reconciliation_rule, "payment.order_not_found")


# ---------------------------------------------------------------------------------------------
# Orders


def new_out_trade_no(now: datetime | None = None) -> str:
    """28 chars: DL + yyyymmddHHMMSS (China time) + 12 random; within WeChat's 6–32 [0-9A-Za-z_-|*]."""
    stamp = (now or utcnow()).astimezone(CHINA_TZ).strftime("%Y%m%d%H%M%S")
    return "DL" + stamp + "".join(secrets.choice(_ALNUM) for _ in range(12))


def rfc3339(value: datetime) -> str:
    return value.astimezone(CHINA_TZ).replace(microsecond=0).isoformat()


def _lock_order(session: Session, order_id: int) -> PaymentOrder:
    order = session.scalars(
        select(PaymentOrder)
        .where(PaymentOrder.id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if order is None:
        raise AppError("payment.order_not_found", 404)
    return order


def _openid(session: Session, customer_id: int) -> str:
    openid = session.scalar(
        select(CustomerIdentity.value).where(
            CustomerIdentity.customer_id == customer_id, CustomerIdentity.kind == IdentityKind.OPENID
        )
    )
    if not openid:
        raise AppError("payment.no_openid", 409)
    return openid


def create_order(
    session: Session,
    *,
    customer_id: int,
    business_type: str,
    business_id: str,
    amount_fen: int,
    description: str,
    store_id: int | None = None,
    expires_in: timedelta = timedelta(minutes=30),
    gw: PayGateway | None = None,
) -> PaymentOrder:
    """The open payment order for a business object, created if there is none.

    Idempotent: asking again for the same business object while its order is open returns that
    order (concurrent callers meet on the unique `open_key`). An open order about to expire is
    closed first (close API) and a new attempt is made; a paid one answers payment.already_paid."""
    if type(amount_fen) is not int or amount_fen <= 0:
        raise AppError("payment.amount_invalid", 422)
    expires_in = min(max(expires_in, MIN_EXPIRY + timedelta(minutes=1)), MAX_EXPIRY)
    description = description.encode("utf-8")[:127].decode("utf-8", "ignore") or business_type
    openid = _openid(session, customer_id)
    open_key = f"{business_type}:{business_id}"[:100]
    now = utcnow()
    for _ in range(3):
        existing = session.scalars(
            select(PaymentOrder).where(PaymentOrder.open_key == open_key).with_for_update()
        ).one_or_none()
        if existing is not None:
            if existing.state in PAID_STATES:
                raise AppError("payment.already_paid", 409)
            if existing.customer_id != customer_id or existing.amount_fen != amount_fen:
                raise AppError("payment.order_conflict", 409)
            if existing.expires_at - now > MIN_EXPIRY:
                return existing
            try:
                close_one(session, gw or gateway(), existing.id, reason="renew")
            except UpstreamError as exc:
                raise _upstream_error(exc) from exc
            if existing.state in PAID_STATES:
                raise AppError("payment.already_paid", 409)
            if existing.state != OrderState.CLOSED:
                raise AppError("payment.order_conflict", 409)
        order = PaymentOrder(
            out_trade_no=new_out_trade_no(now),
            customer_id=customer_id,
            store_id=store_id,
            business_type=business_type,
            business_id=str(business_id),
            open_key=open_key,
            description=description,
            amount_fen=amount_fen,
            openid=openid,
            expires_at=now + expires_in,
        )
        try:
            with unique_savepoint(session):
                session.add(order)
        except DuplicateKey:
            continue  # a concurrent create won; take its order on the next pass
        record(
            session,
            customer_id=customer_id,
            kind=Kind.PAYMENT_CREATED,
            channel=Channel.MINIPROGRAM,
            source="payments",
            source_ref=f"payment:{order.id}:created",
            store_id=store_id,
            payload={"out_trade_no": order.out_trade_no, "amount_fen": amount_fen, "business_type": business_type},
        )
        return order
    raise AppError("request.conflict", 409)


def create_order_for(
    session: Session,
    customer_id: int,
    business_type: str,
    business_id: str,
    gw: PayGateway | None = None,
    coupon_ids: list[int] | None = None,
) -> PaymentOrder:
    """The owner API's path: the price comes from the business feature's quote, not the client.

    With coupons, the order is the quote less their discounts (at least 1 fen is paid), and the
    coupons are locked to the order in this transaction: a coupon another order holds fails the
    whole request, so no order is left half-discounted."""
    hook = effects.quote_hook(business_type)
    if hook is None:
        raise AppError("payment.business_type_unknown", 422)
    # The member's request resolved them before a staff merge may have committed: the business
    # object, the coupons and the openid moved to the survivor, so the order must be theirs too
    # (else the survivor can neither see nor poll it). First, so that every read below sees it.
    customer_id = live_customer_id(session, customer_id)
    quote = hook(session, customer_id, business_id)
    discount = effects.order_discount() if coupon_ids else None
    if coupon_ids and discount is None:
        raise AppError("payment.coupon_unsupported", 422)
    offs = (
        discount.price(session, customer_id, coupon_ids, business_type, str(business_id), quote)
        if discount and coupon_ids
        else []
    )
    order = create_order(
        session,
        customer_id=customer_id,
        business_type=business_type,
        business_id=business_id,
        amount_fen=quote.amount_fen - sum(off for _, off in offs),
        description=quote.description,
        store_id=quote.store_id,
        expires_in=quote.expires_in,
        gw=gw,
    )
    if discount is not None and offs:
        discount.attach(session, offs, order.id)
    return order


def prepay(session: Session, gw: PayGateway, order: PaymentOrder) -> dict[str, str]:
    """`wx.requestPayment` parameters for an open order (prepay_id reused while it is valid)."""
    if order.state in PAID_STATES:
        raise AppError("payment.already_paid", 409)
    if order.state == OrderState.CLOSED:
        raise AppError("payment.order_closed", 409)
    now = utcnow()
    if order.prepay_id is None or order.prepaid_at is None or now - order.prepaid_at > PREPAY_ID_TTL:
        try:
            status, body = gw.jsapi_prepay(
                description=order.description,
                out_trade_no=order.out_trade_no,
                total=order.amount_fen,
                openid=order.openid,
                attach=order.business_type,
                time_expire=rfc3339(order.expires_at),
            )
        except UpstreamError as exc:
            raise _upstream_error(exc) from exc
        if status != 200 or not body.get("prepay_id"):
            code = body.get("code")
            log.warning("prepay of %s refused: %s %s", order.out_trade_no, code, body.get("message"))
            if code == "ORDERPAID":
                raise AppError("payment.already_paid", 409)
            if code == "ORDER_CLOSED":
                raise AppError("payment.order_closed", 409)
            raise AppError("payment.prepay_rejected", 502, errors={"wechatpay": {"code": code}})
        order.prepay_id = body["prepay_id"]
        order.prepaid_at = now
    return gw.request_payment_params(order.prepay_id)


# ---------------------------------------------------------------------------------------------
# "Paid": one code path for every source of truth


@dataclass(frozen=True)
class Outcome:
    result: str  # paid | duplicate | mismatch | not_paid | unknown_order | foreign
    order_id: int | None = None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else None


def flag(
    session: Session,
    kind: str,
    dedup_key: str,
    *,
    order: PaymentOrder | None = None,
    out_trade_no: str | None = None,
    out_refund_no: str | None = None,
    reconciliation_id: int | None = None,
    resolution: str = "flagged",
    detail: dict[str, Any] | None = None,
) -> PaymentIssue | None:
    """Record an issue once (by dedup key), audit it and alert (error log). None if already known."""
    issue = PaymentIssue(
        kind=kind,
        dedup_key=dedup_key[:191],
        out_trade_no=out_trade_no or (order.out_trade_no if order else None),
        out_refund_no=out_refund_no,
        order_id=order.id if order else None,
        reconciliation_id=reconciliation_id,
        resolution=resolution,
        detail=detail,
    )
    try:
        with unique_savepoint(session):
            session.add(issue)
    except DuplicateKey:
        return None
    if order is not None and resolution == "flagged":
        order.flagged = True
    write_audit(session, SYSTEM, f"payment.{kind}", "payment_order", issue.out_trade_no or "-", detail)
    log.error("payment issue %s for %s: %s", kind, issue.out_trade_no or out_refund_no, detail)
    if resolution == "flagged":
        _alert(session, issue, order)
    return issue


ISSUE_LABELS = {
    "amount_mismatch": "通知金额与订单不符",
    "second_transaction": "同一订单重复支付",
    "paid_after_close": "关单后支付",
    "refund_mismatch": "退款金额不符",
    "refund_abnormal": "退款异常",
    "paid_there_not_here": "微信已收款、本地无记录",
    "paid_here_not_there": "本地已支付、账单无记录",
    "bill_amount_mismatch": "账单金额不符",
    "refund_here_not_there": "本地已退款、账单无记录",
}


def handle_issue(session: Session, actor: StaffActor, issue_id: int, note: str) -> PaymentIssue:
    """A person looked into a flagged issue and says what was done (claimed by a conditional
    update, so two finance staff cannot both handle it)."""
    from sqlalchemy import update

    now = utcnow()
    done = session.execute(
        update(PaymentIssue)
        .where(PaymentIssue.id == issue_id, PaymentIssue.resolution == "flagged")
        .values(resolution="handled", handled_by=f"staff:{actor.staff_id}", handled_at=now, handling_note=note)
        .execution_options(synchronize_session=False)
    )
    issue = session.get(PaymentIssue, issue_id, populate_existing=True)
    if issue is None:
        raise AppError("payment.issue_not_found", 404)
    if done.rowcount != 1:
        raise AppError("payment.issue_already_handled", 409, errors={"resolution": issue.resolution})
    if issue.order_id is not None and not session.scalar(
        select(PaymentIssue.id)
        .where(PaymentIssue.order_id == issue.order_id, PaymentIssue.resolution == "flagged")
        .limit(1)
    ):
        session.execute(update(PaymentOrder).where(PaymentOrder.id == issue.order_id).values(flagged=False))
    write_audit(session, actor, "payment.issue_handled", "payment_issue", issue.id, {"note": note})
    return issue


def _alert(session: Session, issue: PaymentIssue, order: PaymentOrder | None) -> None:
    """A person must look: WeCom app messages to the group admins (finance) and the manager of
    the order's store, sent after commit, once per issue."""
    from backend.org.models import Role, Staff, StaffRole, StaffStatus
    from backend.org.service import managers_of_store
    from backend.wecom import notify
    from backend.wecom.service import current_corp_id

    admins = session.scalars(
        select(Staff)
        .join(StaffRole, StaffRole.staff_id == Staff.id)
        .where(
            Staff.corp_id == current_corp_id(), Staff.status == StaffStatus.ACTIVE, StaffRole.role == Role.GROUP_ADMIN
        )
    ).all()
    managers = managers_of_store(session, order.store_id) if order and order.store_id else []
    label = ISSUE_LABELS.get(issue.kind, issue.kind)
    what = issue.out_trade_no or issue.out_refund_no or "-"
    sent = notify.notify_staff(  # each person through their own corp's app
        session,
        notify.NotifyKind.PAYMENT_ISSUE,
        f"payment_issue:{issue.id}",
        list({person.id: person for person in [*admins, *managers]}.values()),
        text=f"支付异常（{label}）：订单 {what} 需要财务核对，详情见工作台「支付异常」。",
    )
    if not sent:
        log.error("payment issue %s: nobody to alert", issue.id)


def apply_transaction(session: Session, tx: dict[str, Any], *, via: str, mchid: str, appid: str) -> Outcome:
    """Apply a WeChat Pay transaction (notify plaintext or query answer) to our order."""
    if tx.get("mchid") != mchid or tx.get("appid") != appid:
        log.error("transaction for another merchant/app: mchid=%s appid=%s", tx.get("mchid"), tx.get("appid"))
        return Outcome("foreign")
    no = tx.get("out_trade_no")
    order = session.scalars(
        select(PaymentOrder)
        .where(PaymentOrder.out_trade_no == str(no))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if order is None:
        log.error("WeChat Pay transaction for an unknown out_trade_no %s", no)
        return Outcome("unknown_order")
    if tx.get("trade_state") != "SUCCESS":
        return Outcome("not_paid", order.id)
    amount = tx.get("amount") if isinstance(tx.get("amount"), dict) else {}
    transaction_id = tx.get("transaction_id")
    total = amount.get("total")
    if type(total) is not int or total != order.amount_fen or amount.get("currency", "CNY") != "CNY":
        flag(
            session,
            "amount_mismatch",
            f"amount:{order.out_trade_no}:{transaction_id}",
            order=order,
            detail={"ours": order.amount_fen, "theirs": total, "currency": amount.get("currency"), "via": via},
        )
        return Outcome("mismatch", order.id)
    if not isinstance(transaction_id, str) or not transaction_id:
        return Outcome("not_paid", order.id)
    if order.state in PAID_STATES:
        if order.transaction_id == transaction_id:
            return Outcome("duplicate", order.id)
        flag(
            session,
            "second_transaction",
            f"second:{order.out_trade_no}:{transaction_id}",
            order=order,
            detail={"ours": order.transaction_id, "theirs": transaction_id},
        )
        return Outcome("mismatch", order.id)
    if order.state == OrderState.CLOSED:
        # The payer's money is taken: credit it, but a person must look (holds were released).
        flag(
            session,
            "paid_after_close",
            f"after_close:{order.out_trade_no}",
            order=order,
            detail={"transaction_id": transaction_id, "via": via},
        )
    order.state = OrderState.PAID
    order.transaction_id = transaction_id
    order.paid_at = _parse_time(tx.get("success_time")) or utcnow()
    order.paid_via = via
    payer_total = amount.get("payer_total")
    order.payer_total_fen = payer_total if type(payer_total) is int else None
    session.flush()
    record(
        session,
        customer_id=order.customer_id,
        kind=Kind.PAYMENT_SUCCEEDED,
        channel=Channel.MINIPROGRAM,
        source="payments",
        source_ref=f"payment:{order.id}:paid",
        occurred_at=order.paid_at,
        store_id=order.store_id,
        payload={"out_trade_no": order.out_trade_no, "amount_fen": order.amount_fen, "via": via},
    )
    enqueue(
        session, "payments.run_effects", {"order_id": order.id, "event": "paid"}, dedup_key=f"payment:{order.id}:paid"
    )
    return Outcome("paid", order.id)


def sync_order(session: Session, gw: PayGateway, order_id: int) -> PaymentOrder:
    """Ask WeChat Pay about an open order (the client's "paid" is not proof) and apply the answer."""
    order = session.get(PaymentOrder, order_id)
    if order is None:
        raise AppError("payment.order_not_found", 404)
    if order.state != OrderState.PENDING or order.prepay_id is None:
        return order
    try:
        status, tx = gw.query_order(order.out_trade_no)
    except UpstreamError as exc:
        raise _upstream_error(exc) from exc
    if status == 200:
        apply_transaction(session, tx, via="query", mchid=gw.mchid, appid=gw.appid)
    return _lock_order(session, order_id)


def close_one(session: Session, gw: PayGateway, order_id: int, reason: str = "expired") -> PaymentOrder:
    """Close an open order at WeChat Pay, then here, and fire on_closed; ORDERPAID means paid.

    Leaves the order open when WeChat Pay cannot be reached (the next sweep retries)."""
    order = _lock_order(session, order_id)
    if order.state != OrderState.PENDING:
        return order
    status, body = gw.close_order(order.out_trade_no)  # UpstreamError propagates to the caller
    code = body.get("code")
    if status == 400 and code == "ORDERPAID":
        qstatus, tx = gw.query_order(order.out_trade_no)
        if qstatus == 200:
            apply_transaction(session, tx, via="close", mchid=gw.mchid, appid=gw.appid)
        return order
    if not (status == 204 or status == 200 or (status == 404 and code == "ORDER_NOT_EXIST")):
        log.warning("close of %s refused: %s %s", order.out_trade_no, status, body)
        return order
    order.state = OrderState.CLOSED
    order.closed_at = utcnow()
    order.open_key = None
    session.flush()
    record(
        session,
        customer_id=order.customer_id,
        kind=Kind.PAYMENT_CLOSED,
        channel=Channel.SYSTEM,
        source="payments",
        source_ref=f"payment:{order.id}:closed",
        store_id=order.store_id,
        payload={"out_trade_no": order.out_trade_no, "reason": reason},
    )
    enqueue(
        session,
        "payments.run_effects",
        {"order_id": order.id, "event": "closed"},
        dedup_key=f"payment:{order.id}:closed",
    )
    return order


def close_expired(session: Session, gw: PayGateway, now: datetime | None = None, limit: int = 100) -> list[int]:
    """Close the open orders past their expiry. Returns the ids closed."""
    now = now or utcnow()
    ids = session.scalars(
        select(PaymentOrder.id)
        .where(PaymentOrder.state == OrderState.PENDING, PaymentOrder.expires_at <= now)
        .order_by(PaymentOrder.expires_at)
        .limit(limit)
    ).all()
    closed = []
    for order_id in ids:
        try:
            if close_one(session, gw, order_id).state == OrderState.CLOSED:
                closed.append(order_id)
        except UpstreamError as exc:
            log.warning("close of order %s postponed: %s", order_id, exc)
    return closed


def sync_pending(session: Session, gw: PayGateway, now: datetime | None = None, limit: int = 200) -> dict[str, int]:
    """The notify may never come: query open prepaid orders older than a minute and refunds in
    flight; send again the refunds whose request got no answer."""
    now = now or utcnow()
    counts = {"orders": 0, "paid": 0, "refunds": 0}
    ids = session.scalars(
        select(PaymentOrder.id)
        .where(
            PaymentOrder.state == OrderState.PENDING,
            PaymentOrder.prepay_id.is_not(None),
            PaymentOrder.prepaid_at <= now - timedelta(minutes=1),
        )
        .order_by(PaymentOrder.id)
        .limit(limit)
    ).all()
    for order_id in ids:
        counts["orders"] += 1
        try:
            if sync_order(session, gw, order_id).state in PAID_STATES:
                counts["paid"] += 1
        except AppError as exc:
            log.warning("query of order %s postponed: %s", order_id, exc.code)
    refund_ids = session.scalars(
        select(PaymentRefund.id)
        .where(
            PaymentRefund.state.in_([RefundState.PROCESSING, RefundState.ABNORMAL]),
            PaymentRefund.submitted.is_(True),
            PaymentRefund.created_at <= now - timedelta(minutes=1),
        )
        .order_by(PaymentRefund.id)
        .limit(limit)
    ).all()
    for refund_id in refund_ids:
        refund = session.get(PaymentRefund, refund_id)
        assert refund is not None
        try:
            status, body = gw.query_refund(refund.out_refund_no)
        except UpstreamError as exc:
            log.warning("query of refund %s postponed: %s", refund.out_refund_no, exc)
            continue
        if status == 200:
            counts["refunds"] += 1
            apply_refund_result(session, {**body, "refund_status": body.get("status")}, mchid=gw.mchid, via="query")
    unsent_ids = session.scalars(
        select(PaymentRefund.id)
        .where(
            PaymentRefund.state == RefundState.PROCESSING,
            PaymentRefund.submitted.is_(False),
            PaymentRefund.created_at <= now - timedelta(minutes=1),
        )
        .order_by(PaymentRefund.id)
        .limit(limit)
    ).all()
    counts["resent"] = sum(_send_again(session, gw, refund_id) for refund_id in unsent_ids)
    return counts


def _send_again(session: Session, gw: PayGateway, refund_id: int) -> bool:
    """A refund whose request got no answer (WeChat Pay down, a timeout) is sent again with its
    own out_refund_no, which WeChat Pay takes as the same refund if the first request reached
    it. Without this it waited, its amount reserved, for someone to retry it by hand. True when
    WeChat Pay has it now."""
    refund = session.get(PaymentRefund, refund_id)
    assert refund is not None
    order = _lock_order(session, refund.order_id)  # lock order: order, then refund
    refund = session.scalars(
        select(PaymentRefund)
        .where(PaymentRefund.id == refund_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if refund.submitted or refund.state != RefundState.PROCESSING:
        return False  # a person's retry came first
    try:
        _submit_refund(session, gw, order, refund, fresh=False)
    except AppError as exc:  # still unreachable (kept for the next pass), or refused (closed)
        log.warning("refund %s not sent again: %s", refund.out_refund_no, exc.code)
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Refunds


def request_refund(
    session: Session,
    gw: PayGateway,
    actor: Actor,
    order_id: int,
    *,
    reason: str,
    amount_fen: int | None = None,
    out_refund_no: str | None = None,
    refusable: bool = True,
) -> tuple[PaymentRefund, bool]:
    """Refund part or all of a paid order. Returns (refund, created).

    Idempotent by `out_refund_no`: the same number again returns that refund (re-sent to WeChat
    Pay if it never got there). Checked under the order's row lock: the order is paid, the sum of
    refunds in flight and done stays within the amount, at most 50 refunds. The features' refund
    guards may refuse it (an owner's request) unless `refusable` is False: a refund the dealer owes
    (it called the service off, or accepted the cancellation already) is never refused."""
    order = _lock_order(session, order_id)
    if out_refund_no:
        existing = session.scalars(
            select(PaymentRefund).where(PaymentRefund.out_refund_no == out_refund_no).with_for_update()
        ).one_or_none()
        if existing is not None:
            if existing.order_id != order.id or (amount_fen is not None and existing.amount_fen != amount_fen):
                raise AppError("payment.refund_no_conflict", 409)
            if not existing.submitted and existing.state == RefundState.PROCESSING:
                _submit_refund(session, gw, order, existing, fresh=False)
            return existing, False
    if order.state not in (OrderState.PAID, OrderState.PARTIALLY_REFUNDED):
        raise AppError("payment.refund_not_paid", 409, errors={"state": order.state.value})
    available = order.amount_fen - order.refund_reserved_fen
    # The business may allow less than what is left (e.g. services already used are not refunded).
    cap_hook = effects.refundable_hook(order.business_type)
    cap = cap_hook(session, order.id) if cap_hook else None
    if cap is not None and cap - order.refund_reserved_fen <= 0:
        raise AppError("payment.refund_exceeds_refundable", 422, errors={"refundable_fen": 0})
    if amount_fen is None:
        amount = available if cap is None else min(available, cap - order.refund_reserved_fen)
    else:
        amount = amount_fen
    if type(amount) is not int or amount <= 0 or amount > available:
        raise AppError("payment.refund_exceeds_paid", 422, errors={"available_fen": available, "requested_fen": amount})
    if order.refund_count >= MAX_REFUNDS_PER_ORDER:
        raise AppError("payment.refund_limit", 422, errors={"refund_count": order.refund_count})
    if cap is not None and order.refund_reserved_fen + amount > cap:
        raise AppError(
            "payment.refund_exceeds_refundable",
            422,
            errors={"refundable_fen": max(0, cap - order.refund_reserved_fen), "requested_fen": amount},
        )
    for guard in effects.refund_guards(order.business_type):
        guard(session, order.id, amount, refusable=refusable)
    refund = PaymentRefund(
        order_id=order.id,
        out_refund_no=out_refund_no or f"R{order.out_trade_no}{order.refund_count + 1:02d}",
        amount_fen=amount,
        reason=reason[:80],
        requested_by=f"{actor.kind}:{actor.ident}",
    )
    try:
        with unique_savepoint(session):
            session.add(refund)
    except DuplicateKey as exc:
        raise AppError("payment.refund_no_conflict", 409) from exc
    if refusable:
        # Under the order's lock, before the amount is reserved: the features settle now what
        # the refund will undo (block policy: the points are taken back under the points
        # account's lock, the lock a spend takes), so a spend before WeChat Pay's success
        # notification cannot leave a debt. A closed refund gives them back (`refund_failed`).
        session.flush()
        for accepted in effects.refund_accepted_hooks(order.business_type):
            accepted(session, order.id, amount, refund_id=refund.id)
    order.refund_reserved_fen += amount
    order.refund_count += 1
    write_audit(
        session,
        actor,
        "payment.refund_requested",
        "payment_order",
        order.id,
        {"out_refund_no": refund.out_refund_no, "amount_fen": amount, "reason": reason, "refusable": refusable},
    )
    session.flush()
    _submit_refund(session, gw, order, refund, fresh=True)
    return refund, True


def accept_owner_full_refund(session: Session, order_id: int) -> None:
    """A feature accepts an owner's cancellation that will refund the order in full (by a job,
    after the commit, that may no longer refuse it). The refund guards' refusal (e.g.
    points.reversal_blocked) is raised now, while nothing is changed; then each feature settles
    now what the refund will undo (`refund_accepted`: the points earned are taken back under the
    points account's lock), so nothing done between this commit and the job can defeat the guard.
    The order row is not locked: the caller holds its own rows (taking the order's lock after them
    would invert the notify's order-first lock order); the features lock what they settle."""
    order = session.get(PaymentOrder, order_id)
    if order is None:
        return
    rest = order.amount_fen - order.refund_reserved_fen
    if order.state not in (OrderState.PAID, OrderState.PARTIALLY_REFUNDED) or rest <= 0:
        return
    for guard in effects.refund_guards(order.business_type):
        guard(session, order.id, rest, refusable=True)
    for accepted in effects.refund_accepted_hooks(order.business_type):
        accepted(session, order.id, rest)


def _submit_refund(
    session: Session, gw: PayGateway, order: PaymentOrder, refund: PaymentRefund, *, fresh: bool
) -> None:
    try:
        status, body = gw.refund(
            out_trade_no=order.out_trade_no,
            out_refund_no=refund.out_refund_no,
            refund=refund.amount_fen,
            total=order.amount_fen,
            reason=refund.reason,
        )
    except UpstreamError as exc:
        # Unknown whether WeChat Pay got it: keep the row (its out_refund_no is the retry key).
        session.info["commit_despite_error"] = True
        raise _upstream_error(exc) from exc
    if status != 200:
        log.warning("refund %s refused: %s %s", refund.out_refund_no, body.get("code"), body.get("message"))
        if not fresh:  # a retried refund WeChat refuses: give its amount back, keep the record
            refund.state = RefundState.CLOSED
            order.refund_reserved_fen -= refund.amount_fen
            _refund_failed(session, order, refund)
            session.info["commit_despite_error"] = True
        raise AppError(
            "payment.refund_rejected",
            422,
            errors={"wechatpay": {"code": body.get("code"), "message": body.get("message")}},
        )
    refund.submitted = True
    refund.refund_id = body.get("refund_id") or refund.refund_id
    if body.get("status") in ("SUCCESS", "CLOSED", "ABNORMAL"):
        _apply_refund_status(session, order, refund, body.get("status"), body.get("success_time"))


def apply_refund_result(session: Session, result: dict[str, Any], *, mchid: str, via: str) -> Outcome:
    """Apply a refund notification plaintext (`refund_status`) or query answer."""
    if result.get("mchid", mchid) != mchid:
        return Outcome("foreign")
    refund = session.scalars(
        select(PaymentRefund).where(PaymentRefund.out_refund_no == str(result.get("out_refund_no")))
    ).one_or_none()
    if refund is None:
        log.error("refund result for an unknown out_refund_no %s", result.get("out_refund_no"))
        return Outcome("unknown_order")
    order = _lock_order(session, refund.order_id)  # lock order: order, then refund
    refund = session.scalars(
        select(PaymentRefund)
        .where(PaymentRefund.id == refund.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    amount = result.get("amount") if isinstance(result.get("amount"), dict) else {}
    if (
        result.get("out_trade_no") != order.out_trade_no
        or amount.get("refund") != refund.amount_fen
        or amount.get("total") != order.amount_fen
    ):
        flag(
            session,
            "refund_mismatch",
            f"refund:{refund.out_refund_no}:{result.get('refund_status')}",
            order=order,
            out_refund_no=refund.out_refund_no,
            detail={"ours": refund.amount_fen, "theirs": amount.get("refund"), "via": via},
        )
        return Outcome("mismatch", order.id)
    if refund.state not in (RefundState.PROCESSING, RefundState.ABNORMAL):
        return Outcome("duplicate", order.id)
    refund.refund_id = result.get("refund_id") or refund.refund_id
    refund.submitted = True
    status = result.get("refund_status")
    if status not in ("SUCCESS", "CLOSED", "ABNORMAL"):
        return Outcome("not_paid", order.id)
    _apply_refund_status(session, order, refund, status, result.get("success_time"))
    return Outcome("paid" if status == "SUCCESS" else status.lower(), order.id)


def _apply_refund_status(
    session: Session, order: PaymentOrder, refund: PaymentRefund, status: str, success_time: Any
) -> None:
    if status == "SUCCESS":
        refund.state = RefundState.SUCCEEDED
        refund.succeeded_at = _parse_time(success_time) or utcnow()
        order.refunded_fen += refund.amount_fen
        order.state = OrderState.REFUNDED if order.refunded_fen >= order.amount_fen else OrderState.PARTIALLY_REFUNDED
        session.flush()
        record(
            session,
            customer_id=order.customer_id,
            kind=Kind.REFUND_SUCCEEDED,
            channel=Channel.SYSTEM,
            source="payments",
            source_ref=f"refund:{refund.id}:succeeded",
            occurred_at=refund.succeeded_at,
            store_id=order.store_id,
            payload={
                "out_trade_no": order.out_trade_no,
                "out_refund_no": refund.out_refund_no,
                "amount_fen": refund.amount_fen,
            },
        )
        enqueue(
            session,
            "payments.run_effects",
            {"order_id": order.id, "event": "refunded", "refund_id": refund.id},
            dedup_key=f"refund:{refund.id}:succeeded",
        )
    elif status == "CLOSED":
        refund.state = RefundState.CLOSED
        order.refund_reserved_fen -= refund.amount_fen
        _refund_failed(session, order, refund)
        write_audit(
            session, SYSTEM, "payment.refund_closed", "payment_order", order.id, {"out_refund_no": refund.out_refund_no}
        )
        log.warning("refund %s closed by WeChat Pay; amount available again", refund.out_refund_no)
    elif status == "ABNORMAL":
        refund.state = RefundState.ABNORMAL
        flag(
            session,
            "refund_abnormal",
            f"abnormal:{refund.out_refund_no}",
            order=order,
            out_refund_no=refund.out_refund_no,
            detail={"amount_fen": refund.amount_fen},
        )


def _refund_failed(session: Session, order: PaymentOrder, refund: PaymentRefund) -> None:
    """The refund is closed (once: its state moved under the order's and refund's locks): each
    feature gives back what it settled at the request (lock order: order, then the feature's).
    ABNORMAL is not a failure: WeChat Pay may still finish it (SUCCESS or CLOSED); it stays
    reserved and polled, and its points stay taken back until then."""
    for failed in effects.refund_failed_hooks(order.business_type):
        failed(session, order.id, refund.id)


# ---------------------------------------------------------------------------------------------
# Business effects (run by the payments.run_effects job, after commit)


def run_effects(session: Session, order_id: int, event: str, refund_id: int | None = None) -> int:
    order = session.get(PaymentOrder, order_id)
    if order is None:
        return 0
    ran = 0
    for effect in effects.effects_for(order.business_type):
        if event == "paid" and effect.on_paid:
            effect.on_paid(session, order_id)
        elif event == "refunded" and effect.on_refunded and refund_id is not None:
            effect.on_refunded(session, order_id, refund_id)
        elif event == "closed" and effect.on_closed:
            effect.on_closed(session, order_id)
        else:
            continue
        ran += 1
    return ran


# ---------------------------------------------------------------------------------------------
# Reconciliation with the trade bill


@dataclass(frozen=True)
class BillLine:
    trade_state: str
    transaction_id: str
    out_trade_no: str
    total_fen: int
    out_refund_no: str
    refund_fen: int


def _fen(yuan: str) -> int:
    try:
        return int((Decimal(yuan or "0") * 100).to_integral_exact())
    except InvalidOperation as exc:
        raise ValueError(f"bad amount {yuan!r}") from exc


def parse_trade_bill(text: str) -> list[BillLine]:
    """Rows of a trade bill CSV (fields start with a backtick, amounts in yuan); the summary
    lines after the rows are skipped."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = [h.strip() for h in lines[0].split(",")]
    col = {name: i for i, name in enumerate(header)}
    out = []
    for line in lines[1:]:
        if not line.startswith("`"):
            break  # the summary header (总交易单数,...) ends the rows
        fields = [f.strip().removeprefix("`") for f in line.split(",")]
        out.append(
            BillLine(
                trade_state=fields[col["交易状态"]],
                transaction_id=fields[col["微信订单号"]],
                out_trade_no=fields[col["商户订单号"]],
                total_fen=_fen(fields[col["订单金额"]]),
                out_refund_no=fields[col["商户退款单号"]] if fields[col["商户退款单号"]] != "0" else "",
                refund_fen=_fen(fields[col["退款金额"]]),
            )
        )
    return out


def china_day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), CHINA_TZ).astimezone(UTC)
    return start, start + timedelta(days=1)


def reconcile(session: Session, gw: PayGateway, bill_date: date) -> PaymentReconciliation:
    """Compare the day's trade bill with our orders and refunds; record every difference.

    Paid at WeChat but open here → repaired through `apply_transaction` after a query (the same
    path as a notify), flagged if that does not confirm it; unknown here, here but not in the
    bill, or a different amount → flagged. Re-running a day updates its row and adds only new
    issues."""
    recon = session.scalars(
        select(PaymentReconciliation).where(PaymentReconciliation.bill_date == bill_date).with_for_update()
    ).one_or_none()
    if recon is None:
        recon = PaymentReconciliation(bill_date=bill_date)
        try:
            with unique_savepoint(session):
                session.add(recon)
        except DuplicateKey:
            recon = session.scalars(
                select(PaymentReconciliation).where(PaymentReconciliation.bill_date == bill_date).with_for_update()
            ).one()
    recon.ran_at = utcnow()
    try:
        lines = parse_trade_bill(gw.trade_bill(bill_date.isoformat()))
    except (UpstreamError, ValueError, KeyError, IndexError) as exc:
        recon.status, recon.error = "failed", str(exc)[:2000]
        log.error("reconciliation of %s failed: %s", bill_date, exc)
        return recon
    day = bill_date.isoformat()
    issues = 0
    matched = 0

    def issue(kind: str, key: str, **kwargs: Any) -> None:
        nonlocal issues
        issues += 1
        flag(session, kind, f"recon:{day}:{kind}:{key}", reconciliation_id=recon.id, **kwargs)

    paid_lines = {ln.out_trade_no: ln for ln in lines if ln.trade_state == "SUCCESS"}
    refund_lines = {ln.out_refund_no: ln for ln in lines if ln.trade_state == "REFUND" and ln.out_refund_no}
    for no, line in paid_lines.items():
        order = session.scalars(select(PaymentOrder).where(PaymentOrder.out_trade_no == no)).one_or_none()
        if order is None:
            issue("paid_there_not_here", no, out_trade_no=no, detail={"total_fen": line.total_fen, "known": False})
            continue
        if order.state not in PAID_STATES:
            repaired = False
            try:
                status, tx = gw.query_order(no)
                if status == 200:
                    repaired = (
                        apply_transaction(session, tx, via="bill", mchid=gw.mchid, appid=gw.appid).result == "paid"
                    )
            except UpstreamError as exc:
                log.warning("repair query of %s failed: %s", no, exc)
            issue(
                "paid_there_not_here",
                no,
                order=order,
                resolution="repaired" if repaired else "flagged",
                detail={"total_fen": line.total_fen, "known": True},
            )
            continue
        if order.amount_fen != line.total_fen or order.transaction_id != line.transaction_id:
            issue(
                "bill_amount_mismatch",
                no,
                order=order,
                detail={"ours": order.amount_fen, "bill": line.total_fen, "transaction_id": line.transaction_id},
            )
            continue
        matched += 1
    start, end = china_day_bounds(bill_date)
    ours = session.scalars(
        select(PaymentOrder).where(
            PaymentOrder.paid_at >= start, PaymentOrder.paid_at < end, PaymentOrder.state.in_(PAID_STATES)
        )
    ).all()
    for order in ours:
        if order.out_trade_no not in paid_lines:
            issue("paid_here_not_there", order.out_trade_no, order=order, detail={"amount_fen": order.amount_fen})
    our_refunds = session.execute(
        select(PaymentRefund, PaymentOrder.out_trade_no)
        .join(PaymentOrder, PaymentOrder.id == PaymentRefund.order_id)
        .where(
            PaymentRefund.state == RefundState.SUCCEEDED,
            PaymentRefund.succeeded_at >= start,
            PaymentRefund.succeeded_at < end,
        )
    ).all()
    our_refund_nos = set()
    for refund, out_trade_no in our_refunds:
        our_refund_nos.add(refund.out_refund_no)
        line = refund_lines.get(refund.out_refund_no)
        if line is None:
            issue(
                "refund_here_not_there",
                refund.out_refund_no,
                out_trade_no=out_trade_no,
                out_refund_no=refund.out_refund_no,
            )
        elif line.refund_fen != refund.amount_fen:
            issue(
                "refund_amount_mismatch",
                refund.out_refund_no,
                out_trade_no=out_trade_no,
                out_refund_no=refund.out_refund_no,
                detail={"ours": refund.amount_fen, "bill": line.refund_fen},
            )
        else:
            matched += 1
    for no, line in refund_lines.items():
        if no not in our_refund_nos:
            issue(
                "refund_there_not_here",
                no,
                out_trade_no=line.out_trade_no,
                out_refund_no=no,
                detail={"refund_fen": line.refund_fen},
            )
    recon.status, recon.error = "done", None
    recon.bill_rows, recon.matched, recon.issues = len(lines), matched, issues
    session.flush()
    return recon


def china_today(now: datetime | None = None) -> date:
    return (now or utcnow()).astimezone(CHINA_TZ).date()
