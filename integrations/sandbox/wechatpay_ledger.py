"""WeChat Pay sandbox state beyond orders: refunds, trade bills and notification delivery.

`SandboxState` (shared with the WeCom fake) keeps orders; this module keeps everything else the
Pay fake needs on a `PayLedger` hung off the state object (`ledger(state)`). A `state.reset()`
replaces `state.orders`, which the ledger notices and resets itself with it.

Notification delivery: `deliver_notification` POSTs a signed, encrypted notification to the
order's `notify_url` (rewritten through `ledger.url_map` for local runs) through `transport`
— `requests` by default, a Flask test client in the tests. `copies` sends the same body several
times, `concurrent=True` from parallel threads; a non-2xx answer is retried up to `retries`
more times (WeChat's 15s/15s/30s/... schedule, compressed to immediate retries here).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from .state import SandboxState, rfc3339

CHINA_TZ = timezone(timedelta(hours=8))
MAX_PARTIAL_REFUNDS = 50
BILL_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
    "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,"
    "商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)

Transport = Callable[[str, dict[str, str], str], int]


@dataclass
class Refund:
    out_refund_no: str
    refund_id: str
    out_trade_no: str
    transaction_id: str
    amount: int
    total: int
    reason: str
    notify_url: str | None
    created_at: float
    status: str = "PROCESSING"
    success_time: str | None = None


@dataclass
class Delivery:
    url: str
    event_type: str
    status: int


@dataclass
class PayLedger:
    orders_ref: dict[str, Any]
    refunds: dict[str, Refund] = field(default_factory=dict)
    bill_tokens: dict[str, str] = field(default_factory=dict)  # token -> bill_date
    deliveries: list[Delivery] = field(default_factory=list)
    transport: Transport | None = None
    url_map: dict[str, str] = field(default_factory=dict)  # notify URL prefix -> reachable prefix
    # An extra row in the next bills, e.g. a payment WeChat has and we do not (reconciliation tests).
    extra_bill_rows: list[dict[str, Any]] = field(default_factory=list)
    hidden_from_bill: set[str] = field(default_factory=set)


_attach_lock = threading.Lock()


def ledger(state: SandboxState) -> PayLedger:
    """The Pay ledger of this sandbox state (fresh after each `state.reset()`)."""
    with _attach_lock:
        current: PayLedger | None = getattr(state, "_pay_ledger", None)
        if current is None or current.orders_ref is not state.orders:
            keep = {"transport": current.transport, "url_map": current.url_map} if current else {}
            current = PayLedger(orders_ref=state.orders, **keep)
            state._pay_ledger = current  # type: ignore[attr-defined]
        return current


def china_date(ts: float) -> str:
    return datetime.fromtimestamp(ts, CHINA_TZ).strftime("%Y-%m-%d")


# ----------------------------------------------------------------------------------- refunds
def refund_view(refund: Refund) -> dict[str, Any]:
    """The refund as the refund API / query answers it (status, not refund_status)."""
    view: dict[str, Any] = {
        "refund_id": refund.refund_id,
        "out_refund_no": refund.out_refund_no,
        "transaction_id": refund.transaction_id,
        "out_trade_no": refund.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "status": refund.status,
        "create_time": rfc3339(refund.created_at),
        "amount": {
            "total": refund.total,
            "refund": refund.amount,
            "payer_total": refund.total,
            "payer_refund": refund.amount,
            "settlement_total": refund.total,
            "settlement_refund": refund.amount,
            "discount_refund": 0,
            "currency": "CNY",
            "from": [],
        },
    }
    if refund.success_time:
        view["success_time"] = refund.success_time
    return view


def refund_notification_plaintext(state: SandboxState, refund: Refund) -> dict[str, Any]:
    plain: dict[str, Any] = {
        "mchid": state.credentials["WECHATPAY_MCHID"],
        "out_trade_no": refund.out_trade_no,
        "transaction_id": refund.transaction_id,
        "out_refund_no": refund.out_refund_no,
        "refund_id": refund.refund_id,
        "refund_status": refund.status,
        "user_received_account": "支付用户零钱",
        "amount": {
            "total": refund.total,
            "refund": refund.amount,
            "payer_total": refund.total,
            "payer_refund": refund.amount,
        },
    }
    if refund.success_time:
        plain["success_time"] = refund.success_time
    return plain


def apply_refund(state: SandboxState, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """`POST /v3/refund/domestic/refunds` semantics: (HTTP status, answer)."""
    book = ledger(state)
    no = data.get("out_refund_no")
    amount = data.get("amount")
    if not isinstance(no, str) or not 1 <= len(no) <= 64:
        return 400, {"code": "PARAM_ERROR", "message": "out_refund_no 必填，长度不超过 64"}
    if not isinstance(amount, dict) or type(amount.get("refund")) is not int or type(amount.get("total")) is not int:
        return 400, {"code": "PARAM_ERROR", "message": "amount.refund / amount.total 须为整数（分）"}
    if amount["refund"] <= 0:
        return 400, {"code": "PARAM_ERROR", "message": "退款金额须大于 0"}
    with state.lock:
        existing = book.refunds.get(no)
        if existing is not None:  # 同一退款单号多次请求只退一笔
            if existing.amount != amount["refund"]:
                return 400, {"code": "INVALID_REQUEST", "message": "退款单号重复且金额不一致"}
            return 200, refund_view(existing)
        order_no = data.get("out_trade_no")
        order = state.orders.get(order_no) if order_no else None
        if order is None and data.get("transaction_id"):
            for candidate_no, candidate in state.orders.items():
                if candidate.transaction_id == data["transaction_id"]:
                    order_no, order = candidate_no, candidate
                    break
        if order is None:
            return 404, {"code": "RESOURCE_NOT_EXISTS", "message": "订单不存在"}
        if order.trade_state not in ("SUCCESS", "REFUND") or order.transaction_id is None:
            return 400, {"code": "INVALID_REQUEST", "message": "订单未支付，不能退款"}
        total = order.request["amount"]["total"]
        if amount["total"] != total:
            return 400, {"code": "PARAM_ERROR", "message": "订单金额与原订单不一致"}
        mine = [r for r in book.refunds.values() if r.out_trade_no == order_no]
        if len(mine) >= MAX_PARTIAL_REFUNDS:
            return 403, {"code": "REQUEST_BLOCKED", "message": "该订单退款次数已超过 50 次"}
        already = sum(r.amount for r in mine if r.status != "CLOSED")
        if already + amount["refund"] > total:
            return 400, {"code": "NOT_ENOUGH", "message": "退款金额超过订单可退金额"}
        refund = Refund(
            out_refund_no=no,
            refund_id="50" + "".join(str(secrets.randbelow(10)) for _ in range(27)),
            out_trade_no=order_no,
            transaction_id=order.transaction_id,
            amount=amount["refund"],
            total=total,
            reason=str(data.get("reason") or ""),
            notify_url=data.get("notify_url"),
            created_at=state.now(),
        )
        book.refunds[no] = refund
        order.trade_state = "REFUND"
        return 200, refund_view(refund)


def finish_refund(state: SandboxState, out_refund_no: str, status: str = "SUCCESS") -> Refund:
    """The bank finished (SUCCESS) or gave up (CLOSED / ABNORMAL) a PROCESSING refund."""
    if status not in ("SUCCESS", "CLOSED", "ABNORMAL"):
        raise ValueError("status must be SUCCESS, CLOSED or ABNORMAL")
    book = ledger(state)
    with state.lock:
        refund = book.refunds[out_refund_no]
        if refund.status not in ("PROCESSING", "ABNORMAL"):
            raise ValueError(f"refund is {refund.status}")
        refund.status = status
        if status == "SUCCESS":
            refund.success_time = rfc3339(state.now())
        return refund


# ----------------------------------------------------------------------------------- bills
def _yuan(fen: int) -> str:
    return str((Decimal(fen) / 100).quantize(Decimal("0.01")))


def _row(values: list[str]) -> str:
    return ",".join("`" + v for v in values)


def build_trade_bill(state: SandboxState, bill_date: str, bill_type: str = "ALL") -> str:
    """The trade bill CSV of one day (China time): payments that succeeded and refunds that
    succeeded that day. Every field starts with a backtick; amounts are in yuan."""
    book = ledger(state)
    creds = state.credentials
    rows: list[str] = []
    paid_total = refund_total = 0
    with state.lock:
        for no, order in sorted(state.orders.items()):
            if order.transaction_id is None or no in book.hidden_from_bill:
                continue
            paid_at = datetime.fromisoformat(order.success_time or "").astimezone(UTC).timestamp()
            if china_date(paid_at) != bill_date or bill_type == "REFUND":
                continue
            total = order.request["amount"]["total"]
            paid_total += total
            rows.append(
                _row(
                    [
                        datetime.fromtimestamp(paid_at, CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S"),
                        creds["WECHATPAY_APPID"],
                        creds["WECHATPAY_MCHID"],
                        "0",
                        "",
                        order.transaction_id,
                        no,
                        order.request["payer"]["openid"],
                        "JSAPI",
                        "SUCCESS",
                        order.bank_type or "OTHERS",
                        "CNY",
                        _yuan(total),
                        "0.00",
                        "0",
                        "0",
                        "0.00",
                        "0.00",
                        "",
                        "",
                        order.request.get("description", ""),
                        order.request.get("attach", ""),
                        "0.00",
                        "0.60%",
                        _yuan(total),
                        "0.00",
                        "",
                    ]
                )
            )
        for refund in sorted(book.refunds.values(), key=lambda r: r.out_refund_no):
            if refund.status != "SUCCESS" or bill_type == "SUCCESS":
                continue
            done = datetime.fromisoformat(refund.success_time or "").astimezone(UTC).timestamp()
            if china_date(done) != bill_date:
                continue
            order = state.orders[refund.out_trade_no]
            refund_total += refund.amount
            rows.append(
                _row(
                    [
                        datetime.fromtimestamp(done, CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S"),
                        creds["WECHATPAY_APPID"],
                        creds["WECHATPAY_MCHID"],
                        "0",
                        "",
                        refund.transaction_id,
                        refund.out_trade_no,
                        order.request["payer"]["openid"],
                        "JSAPI",
                        "REFUND",
                        order.bank_type or "OTHERS",
                        "CNY",
                        "0.00",
                        "0.00",
                        refund.refund_id,
                        refund.out_refund_no,
                        _yuan(refund.amount),
                        "0.00",
                        "ORIGINAL",
                        "SUCCESS",
                        order.request.get("description", ""),
                        order.request.get("attach", ""),
                        "0.00",
                        "0.60%",
                        _yuan(refund.total),
                        _yuan(refund.amount),
                        "",
                    ]
                )
            )
        for extra in book.extra_bill_rows:
            if extra.get("bill_date", bill_date) != bill_date:
                continue
            paid_total += extra["total"]
            row = ["", creds["WECHATPAY_APPID"], creds["WECHATPAY_MCHID"], "0", "", extra["transaction_id"]]
            row += [extra["out_trade_no"], extra.get("openid", "oUnknown"), "JSAPI", "SUCCESS", "OTHERS", "CNY"]
            row += [_yuan(extra["total"]), "0.00", "0", "0", "0.00", "0.00", "", "", "", "", "0.00", "0.60%"]
            row += [_yuan(extra["total"]), "0.00", ""]
            row[0] = bill_date + " 12:00:00"
            rows.append(_row(row))
    summary_header = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
    summary = _row([str(len(rows)), _yuan(paid_total), _yuan(refund_total), "0.00", "0.00", _yuan(paid_total)])
    summary += ",`" + _yuan(refund_total)
    return "\n".join([BILL_HEADER, *rows, summary_header, summary]) + "\n"


def issue_bill_token(state: SandboxState, bill_date: str, bill_type: str) -> str:
    token = secrets.token_urlsafe(24)
    with state.lock:
        ledger(state).bill_tokens[token] = f"{bill_date}|{bill_type}"
    return token


def bill_for_token(state: SandboxState, token: str) -> str | None:
    with state.lock:
        spec = ledger(state).bill_tokens.get(token)
    if spec is None:
        return None
    bill_date, bill_type = spec.split("|")
    return build_trade_bill(state, bill_date, bill_type)


def sha1_hex(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()  # noqa: S324 - the protocol's hash


# ----------------------------------------------------------------------------------- delivery
def _default_transport(url: str, headers: dict[str, str], body: str) -> int:
    import requests

    try:
        return requests.post(url, data=body.encode("utf-8"), headers=headers, timeout=5).status_code
    except requests.RequestException:
        return 599


def deliver_notification(
    state: SandboxState,
    url: str,
    headers: dict[str, str],
    body: str,
    *,
    event_type: str,
    copies: int = 1,
    concurrent: bool = False,
    retries: int = 0,
) -> list[int]:
    """POST one notification `copies` times (in parallel threads if `concurrent`); each copy is
    retried while the answer is not 2xx, at most `retries` more times. Returns the final statuses."""
    book = ledger(state)
    transport = book.transport or _default_transport
    for prefix, replacement in book.url_map.items():
        if url.startswith(prefix):
            url = replacement + url[len(prefix) :]
            break

    def one() -> int:
        status = 0
        for _ in range(retries + 1):
            status = transport(url, dict(headers), body)
            with state.lock:
                book.deliveries.append(Delivery(url, event_type, status))
            if 200 <= status < 300:
                break
        return status

    if not concurrent or copies == 1:
        return [one() for _ in range(copies)]
    results: list[int] = [0] * copies
    barrier = threading.Barrier(copies)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = one()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def notify_paid(
    state: SandboxState, out_trade_no: str, *, copies: int = 1, concurrent: bool = False, retries: int = 0
) -> tuple[dict[str, Any], list[int]]:
    """The payer pays; WeChat Pay sends TRANSACTION.SUCCESS to the order's notify_url."""
    plaintext = state.mark_paid(out_trade_no)
    with state.lock:
        url = state.orders[out_trade_no].request["notify_url"]
    headers, body = state.build_pay_notification(plaintext, "TRANSACTION.SUCCESS")
    statuses = deliver_notification(
        state,
        url,
        headers,
        body,
        event_type="TRANSACTION.SUCCESS",
        copies=copies,
        concurrent=concurrent,
        retries=retries,
    )
    return plaintext, statuses


def notify_refund(
    state: SandboxState, out_refund_no: str, status: str = "SUCCESS", *, copies: int = 1, retries: int = 0
) -> tuple[dict[str, Any], list[int]]:
    """The refund finishes; WeChat Pay sends REFUND.<status> to the refund's notify_url."""
    refund = finish_refund(state, out_refund_no, status)
    plaintext = refund_notification_plaintext(state, refund)
    if not refund.notify_url:
        raise ValueError("the refund request carried no notify_url")
    headers, body = state.build_pay_notification(plaintext, f"REFUND.{status}", summary="退款状态")
    statuses = deliver_notification(
        state, refund.notify_url, headers, body, event_type=f"REFUND.{status}", copies=copies, retries=retries
    )
    return plaintext, statuses
