"""Coupons (优惠券): templates, claims and the write-off at the store (核销).

- **Claim** takes one unit of the member's allowance with a conditional update on their counter
  row (`claimed < per_member_limit`), writes the coupon and its touchpoint, and last takes one
  unit of stock with a conditional update on the template row (`issued < stock`) — in one
  transaction, in that fixed order: never over the stock, never over a member's limit, no
  deadlock, and the hot template row locked only for the end of the transaction.
- **Write-off**: the owner shows a rotating signed QR (backend/platform/qr.py, 60 s) or the
  coupon's 12-digit code; staff of a store in scope preview, then confirm. Confirming is a
  conditional update (`status = unused`) plus a write-off row whose scan nonce is unique, so the
  same scan submitted again answers the same write-off instead of a refusal. Only a store
  manager (or above) reverses a write-off, audited; the coupon is usable again and the old scan
  still answers its (reversed) write-off.
- Every claim, grant, use, reversal and expiry is a touchpoint.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, and_, case, func, or_, select, true, update
from sqlalchemy.orm import Session

from backend.customers.models import Car, Customer
from backend.customers.service import live_customer
from backend.offers.models import (
    AutoIssue,
    Coupon,
    CouponClaimCounter,
    CouponKind,
    CouponPush,
    CouponStatus,
    CouponTemplate,
    CouponWriteOff,
    PushStatus,
)
from backend.org.models import MANAGER_ROLES
from backend.org.scope import acting_store, register_scope, store_filter
from backend.payments.effects import Quote
from backend.payments.models import OrderState, PaymentOrder
from backend.platform import qr
from backend.platform.actors import StaffActor
from backend.platform.audit import write_audit
from backend.platform.db import DuplicateKey, unique_savepoint, utcnow
from backend.platform.errors import AppError, register_messages
from backend.platform.jobs import enqueue
from backend.platform.upsert import upsert
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import record

SOURCE = "offers"
QR_PURPOSE = "coupon"
NEW_MEMBER_DAYS = 30

register_messages(
    {
        "coupon.template_not_found": ("优惠券不存在", "Coupon offer not found"),
        "coupon.not_found": ("优惠券不存在", "Coupon not found"),
        "coupon.not_claimable": ("不在领取时间内", "This coupon cannot be claimed now"),
        "coupon.sold_out": ("优惠券已领完", "No coupons left"),
        "coupon.limit_reached": ("您已达到领取上限", "You already hold as many as allowed"),
        "coupon.not_eligible": ("您暂不符合领取条件", "You are not eligible for this coupon"),
        "coupon.code_invalid": ("券码无效", "Coupon code not valid"),
        "coupon.already_used": ("优惠券已使用", "This coupon has been used"),
        "coupon.expired": ("优惠券已过期", "This coupon has expired"),
        "coupon.not_yet_valid": ("优惠券尚未生效", "This coupon is not valid yet"),
        "coupon.wrong_store": ("该优惠券不能在本门店使用", "This coupon cannot be used at this store"),
        "coupon.store_required": ("请选择核销门店", "Name the store the coupon is used at"),
        "coupon.write_off_not_found": ("核销记录不存在", "Write-off not found"),
        "coupon.not_reversible": ("该核销不能撤销", "This write-off cannot be reversed"),
        "coupon.reverse_forbidden": ("仅店长可撤销核销", "Only a store manager may reverse a write-off"),
        "coupon.nonce_required": ("缺少扫码流水号", "A scan nonce is required with a typed code"),
        "coupon.nonce_reused": ("扫码流水号已用于其他优惠券，请重新扫码", "This scan nonce names another coupon"),
        "coupon.in_use": ("优惠券已被其他订单占用", "Another order holds this coupon"),
        "coupon.threshold_not_met": ("未满足使用门槛", "The order does not reach this coupon's threshold"),
        "coupon.not_for_this_order": ("该优惠券不适用于此订单", "This coupon does not apply to this order"),
        "coupon.store_only": ("该券仅限到店核销", "This coupon is used at the store, not online"),
        "coupon.exchange_code_invalid": ("兑换码无效", "Exchange code not valid"),
        "coupon.exchange_code_taken": ("该兑换码已被其他优惠券使用", "Another coupon template has this exchange code"),
        "coupon.wrong_brand": ("该优惠券仅限指定品牌门店使用", "This coupon is for stores of other brands"),
        "coupon.not_combinable": ("这些优惠券不能同时使用", "These coupons cannot be used together"),
        "coupon.stock_below_issued": ("库存不能少于已发放数量", "Stock cannot drop below the coupons issued"),
    }
)


def _template_rule(actor: StaffActor) -> ColumnElement[bool]:
    """Managers see their stores' templates; advisors their own store's and the group's (to give
    them to their customers); group-wide templates belong to group-wide staff."""
    if actor.scope.store_ids is None:
        return true()
    if actor.scope.own_customers_only:
        return or_(CouponTemplate.store_id == actor.org_unit_id, CouponTemplate.store_id.is_(None))
    return store_filter(actor, CouponTemplate.store_id)


def _write_off_rule(actor: StaffActor) -> ColumnElement[bool]:
    """Managers see their stores' write-offs; advisors the ones they made."""
    if actor.scope.store_ids is None:
        return true()
    if actor.scope.own_customers_only:
        return CouponWriteOff.staff_id == actor.staff_id
    return store_filter(actor, CouponWriteOff.store_id)


register_scope("coupon_template", CouponTemplate, _template_rule, "coupon.template_not_found")
register_scope("coupon_write_off", CouponWriteOff, _write_off_rule, "coupon.write_off_not_found")


# ---------------------------------------------------------------------------------------------
# Owner side


def claimable_templates(session: Session, now: datetime | None = None) -> list[CouponTemplate]:
    now = now or utcnow()
    return list(
        session.scalars(
            select(CouponTemplate)
            .where(
                CouponTemplate.active.is_(True),
                CouponTemplate.claim_starts_at <= now,
                CouponTemplate.claim_ends_at > now,
            )
            .order_by(CouponTemplate.claim_ends_at, CouponTemplate.id)
        )
    )


def _check_eligible(session: Session, template: CouponTemplate, customer: Customer, now: datetime) -> None:
    reasons = []
    if template.eligible_tiers and customer.tier not in template.eligible_tiers:
        reasons.append("tier")
    if template.new_members_only and customer.created_at <= now - timedelta(days=NEW_MEMBER_DAYS):
        reasons.append("new_member")
    if template.car_brand and (
        session.scalar(
            select(Car.id)
            .where(Car.customer_id == customer.id, Car.brand == template.car_brand, Car.removed_at.is_(None))
            .limit(1)
        )
        is None
    ):
        reasons.append("car_brand")
    if template.segment_id is not None:
        from backend.segments.service import customer_in_segment

        if not customer_in_segment(session, template.segment_id, customer.id):
            reasons.append("segment")
    if reasons:
        raise AppError("coupon.not_eligible", 409, errors={"eligibility": reasons})


def _validity(template: CouponTemplate, now: datetime) -> tuple[datetime, datetime]:
    if template.use_days is not None:
        until = now + timedelta(days=template.use_days)
        if template.use_ends_at is not None:
            until = min(until, template.use_ends_at)
        return now, until
    return template.use_starts_at or now, template.use_ends_at or template.claim_ends_at


def _new_code(session: Session) -> str:
    while True:
        code = "".join(secrets.choice("0123456789") for _ in range(12))
        if session.scalar(select(Coupon.id).where(Coupon.code == code)) is None:
            return code


def _issue(
    session: Session, template: CouponTemplate, customer_id: int, source: str, key: str | None, now: datetime
) -> Coupon:
    """The member's allowance, the coupon, then the stock: the fixed lock order of every issue.

    The template row is what every claim of an offer contends for, so it is taken last: its lock
    is held only from that UPDATE to the commit, not while the coupon and its touchpoint are
    written. `issued` read at the start answers a sold-out offer cheaply; the conditional UPDATE
    decides. A claim's key is the member's n-th coupon of the template, read under the counter's
    row lock (so two claims of one member at once never share a key)."""
    if template.issued >= template.stock:
        raise AppError("coupon.sold_out", 409)
    # One statement, no savepoint: two taps of one member inserting the counter at once would
    # deadlock on the unique index's gap locks with insert-then-catch.
    upsert(
        session,
        CouponClaimCounter,
        {"template_id": template.id, "customer_id": customer_id, "claimed": 0},
        ["template_id", "customer_id"],
        lambda new: [("claimed", CouponClaimCounter.__table__.c.claimed)],
    )
    allowed = session.execute(
        update(CouponClaimCounter)
        .where(
            CouponClaimCounter.template_id == template.id,
            CouponClaimCounter.customer_id == customer_id,
            CouponClaimCounter.claimed < template.per_member_limit,
        )
        .values(claimed=CouponClaimCounter.claimed + 1)
    )
    if allowed.rowcount != 1:
        raise AppError("coupon.limit_reached", 409)
    if key is None:
        nth = session.scalar(
            select(CouponClaimCounter.claimed).where(
                CouponClaimCounter.template_id == template.id, CouponClaimCounter.customer_id == customer_id
            )
        )
        key = f"claim:{template.id}:{customer_id}:{nth}"
    valid_from, valid_until = _validity(template, now)
    coupon = Coupon(
        template_id=template.id,
        customer_id=customer_id,
        code=_new_code(session),
        source=source,
        issue_key=key,
        valid_from=valid_from,
        valid_until=valid_until,
        issued_at=now,
    )
    session.add(coupon)
    session.flush()
    record(
        session,
        customer_id=customer_id,
        kind=Kind.COUPON_CLAIMED if source == "claim" else Kind.COUPON_ISSUED,
        channel=Channel.MINIPROGRAM if source == "claim" else Channel.SYSTEM,
        source=SOURCE,
        source_ref=f"coupon:{coupon.id}:issued",
        occurred_at=now,
        store_id=template.store_id,
        payload={"coupon_id": coupon.id, "template_id": template.id, "name": template.name, "source": source},
    )
    taken = session.execute(
        update(CouponTemplate)
        .where(CouponTemplate.id == template.id, CouponTemplate.issued < CouponTemplate.stock)
        .values(issued=CouponTemplate.issued + 1)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:
        raise AppError("coupon.sold_out", 409)  # the request (or the caller's savepoint) rolls back the rest
    return coupon


def claim(session: Session, customer: Customer, template_id: int, now: datetime | None = None) -> Coupon:
    now = now or utcnow()
    template = session.get(CouponTemplate, template_id)
    if template is None or not template.active:
        raise AppError("coupon.template_not_found", 404)
    if not (template.claim_starts_at <= now < template.claim_ends_at):
        raise AppError("coupon.not_claimable", 409)
    customer = _lock_member(session, customer)
    _check_eligible(session, template, customer, now)
    return _issue(session, template, customer.id, "claim", None, now)


def _lock_member(session: Session, customer: Customer) -> Customer:
    """A member's claims, exchanges and gifts queue on their customer row, the first lock these
    requests take: two at once both reached the counter's INSERT … ON DUPLICATE KEY UPDATE for a
    row neither could see yet, and the next-key locks that the duplicate check takes on the
    unique index deadlocked among a burst's claims (a 500 in a run of 200 claims). One request
    now finds the other's counter row (and coupon) committed.

    Returns the customer who survives: a member resolved before a merge committed would
    otherwise get a coupon on the merged-away row, past the survivor's per-member limit."""
    return live_customer(session, customer.id, exclusive=True)


def issue_once(
    session: Session,
    template: CouponTemplate,
    customer_id: int,
    source: str,
    key: str,
    now: datetime | None = None,
    campaign_id: int | None = None,
) -> tuple[Coupon, bool]:
    """The coupon `key` names, issued now if it was not yet (stock and the member's limit apply).
    Returns it and whether it is new."""
    existing = session.scalars(select(Coupon).where(Coupon.issue_key == key)).one_or_none()
    if existing is not None:
        return existing, False
    try:
        with unique_savepoint(session):
            coupon = _issue(session, template, customer_id, source, key, now or utcnow())
    except DuplicateKey:
        # Issued by a request that committed after this one's snapshot (two phones typing one
        # exchange code, two screens sending one gift): answer that coupon. The savepoint gave
        # back the allowance taken here; the locking read sees the committed row.
        existing = session.scalars(
            select(Coupon).where(Coupon.issue_key == key).with_for_update().execution_options(populate_existing=True)
        ).one_or_none()
        if existing is None:
            raise
        return existing, False
    coupon.campaign_id = campaign_id
    return coupon, True


def give(
    session: Session, actor: StaffActor, template: CouponTemplate, customer: Customer, reason: str, ref: str
) -> Coupon:
    """Staff give a coupon with a reason; `ref` (the client's id of this gift) makes a retry give once."""
    customer = _lock_member(session, customer)
    coupon, new = issue_once(session, template, customer.id, "staff", f"give:{template.id}:{customer.id}:{ref}")
    if new:
        write_audit(session, actor, "coupon.given", "coupon", coupon.id, {"customer_id": customer.id, "reason": reason})
    return coupon


def _try_issue(session: Session, template: CouponTemplate, customer_id: int, source: str, key: str, **kw: Any) -> str:
    """One member's coupon inside a savepoint, for jobs and hooks that must not fail the rest:
    'issued', 'had' (the key was used), or the refusal code (sold out, limit, not eligible)."""
    try:
        with session.begin_nested():
            _, new = issue_once(session, template, customer_id, source, key, **kw)
    except AppError as exc:
        return exc.code
    return "issued" if new else "had"


def auto_issue(session: Session, customer_id: int, moment: AutoIssue, ref: str, now: datetime | None = None) -> int:
    """Give the templates set to `moment` (registration, first car, first paid order, birthday,
    tier upgrade) that are claimable now and the member is eligible for; `ref` makes each moment
    give once. Never fails the caller: a sold-out template is skipped. Returns coupons issued."""
    now = now or utcnow()
    customer = session.get(Customer, customer_id)
    if customer is None:
        return 0
    issued = 0
    templates = session.scalars(
        select(CouponTemplate).where(
            CouponTemplate.auto_issue_on == moment,
            CouponTemplate.active.is_(True),
            CouponTemplate.claim_starts_at <= now,
            CouponTemplate.claim_ends_at > now,
        )
    ).all()
    for template in templates:
        try:
            _check_eligible(session, template, customer, now)
        except AppError:
            continue
        key = f"auto:{moment.value}:{template.id}:{customer_id}:{ref}"
        issued += _try_issue(session, template, customer_id, "auto", key, now=now) == "issued"
    return issued


def exchange(session: Session, customer: Customer, code: str, now: datetime | None = None) -> Coupon:
    """A coupon for an exchange code (兑换码) printed on a flyer or given at an event: once per
    member and code (a retry answers the same coupon); eligibility, windows and stock apply."""
    now = now or utcnow()
    template = session.scalars(
        select(CouponTemplate).where(CouponTemplate.exchange_code == code.strip().upper())
    ).one_or_none()
    if template is None or not template.active:
        raise AppError("coupon.exchange_code_invalid", 404)
    if not (template.claim_starts_at <= now < template.claim_ends_at):
        raise AppError("coupon.not_claimable", 409)
    customer = _lock_member(session, customer)
    _check_eligible(session, template, customer, now)
    coupon, _ = issue_once(session, template, customer.id, "exchange", f"exchange:{template.id}:{customer.id}", now)
    return coupon


def issue_for_mall(
    session: Session, template_id: int | None, customer_id: int, order_no: str, quantity: int
) -> list[Coupon]:
    """Coupons bought with points in the mall, in the redemption's transaction: a template out
    of stock fails the redemption as a whole (points are not taken for nothing)."""
    template = session.get(CouponTemplate, template_id) if template_id is not None else None
    if template is None or not template.active:
        raise AppError("mall.coupon_unavailable", 409)
    return [issue_once(session, template, customer_id, "mall", f"mall:{order_no}:{n}")[0] for n in range(quantity)]


# ---------------------------------------------------------------------------------------------
# Pushes to a segment (a job)

PUSH_JOB = "offers.push"


def start_push(
    session: Session, actor: StaffActor, template: CouponTemplate, segment_id: int, campaign_id: int | None
) -> CouponPush:
    """Queue a push of `template` to the segment's members (the segment as its owner scopes it)."""
    from backend.segments.models import Segment

    segment = session.get(Segment, segment_id)
    if segment is None:
        raise AppError("segments.not_found", 404)
    if segment.archived:  # it selects nobody: a push would be queued to issue nothing
        raise AppError("segments.archived", 409)
    push = CouponPush(
        template_id=template.id, segment_id=segment_id, campaign_id=campaign_id, created_by=actor.staff_id
    )
    session.add(push)
    session.flush()
    enqueue(session, PUSH_JOB, {"push_id": push.id}, dedup_key=f"{PUSH_JOB}:{push.id}", key_is_new=True)
    write_audit(session, actor, "coupon.pushed", "coupon_push", push.id, {"segment_id": segment_id})
    return push


def run_push(session: Session, push_id: int) -> CouponPush | None:
    """Issue to every member of the segment, each keyed by (template, member, campaign or this
    push): a re-run after a crash gives nobody a second coupon; the counts are recomputed."""
    from backend.segments.service import segment_customer_ids

    push = session.get(CouponPush, push_id, with_for_update=True)
    if push is None or push.status == PushStatus.DONE:
        return push
    template = session.get(CouponTemplate, push.template_id)
    scope = f"campaign:{push.campaign_id}" if push.campaign_id is not None else f"push:{push.id}"
    counts = {"issued": 0, "skipped": 0, "sold_out": 0}
    now = utcnow()
    member_ids = session.scalars(segment_customer_ids(session, push.segment_id, now)).all()
    customers = {c.id: c for c in session.scalars(select(Customer).where(Customer.id.in_(member_ids)))}
    for customer_id in member_ids:
        customer = customers.get(customer_id)
        try:
            if customer is None:
                raise AppError("coupon.not_eligible", 409)
            _check_eligible(session, template, customer, now)
        except AppError:
            counts["skipped"] += 1
            continue
        key = f"push:{template.id}:{customer_id}:{scope}"
        outcome = _try_issue(session, template, customer_id, "push", key, now=now, campaign_id=push.campaign_id)
        if outcome in ("issued", "had"):
            counts["issued"] += 1
        elif outcome == "coupon.sold_out":
            counts["sold_out"] += 1
        else:
            counts["skipped"] += 1
    push.issued, push.skipped, push.sold_out = counts["issued"], counts["skipped"], counts["sold_out"]
    push.status = PushStatus.DONE
    push.finished_at = now
    return push


def birthday_coupons(session: Session, now: datetime | None = None) -> int:
    """Daily: members whose birthday is today (Asia/Shanghai) get the birthday templates, once a year."""
    from backend.points.service import shanghai_date

    now = now or utcnow()
    today = shanghai_date(now)
    if session.get_bind().dialect.name == "sqlite":
        born_today = func.strftime("%m-%d", Customer.birthday) == today.strftime("%m-%d")
    else:
        born_today = (func.month(Customer.birthday) == today.month) & (func.dayofmonth(Customer.birthday) == today.day)
    ids = session.scalars(select(Customer.id).where(Customer.birthday.is_not(None), born_today)).all()
    return sum(auto_issue(session, cid, AutoIssue.BIRTHDAY, ref=str(today.year), now=now) for cid in ids)


def member_coupons(session: Session, customer_id: int, status: str | None = None) -> list[Coupon]:
    stmt = select(Coupon).where(Coupon.customer_id == customer_id)
    if status:
        stmt = stmt.where(Coupon.status == status)
    return list(session.scalars(stmt.order_by(Coupon.valid_until, Coupon.id).limit(200)))


def member_coupon(session: Session, customer_id: int, coupon_id: int) -> Coupon:
    coupon = session.get(Coupon, coupon_id)
    if coupon is None or coupon.customer_id != customer_id:
        raise AppError("coupon.not_found", 404)
    return coupon


def qr_token(session: Session, customer_id: int, coupon_id: int, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    coupon = member_coupon(session, customer_id, coupon_id)
    refusal = _refusal(session.get(CouponTemplate, coupon.template_id), coupon, None, now)
    if refusal is not None and refusal != "coupon.not_yet_valid":
        raise AppError(refusal, 409)
    token = qr.issue(current_app.config["SECRET_KEY"], QR_PURPOSE, coupon.id, now)
    return {"token": token, "code": coupon.code, "expires_at": now + timedelta(seconds=qr.DEFAULT_TTL_SECONDS)}


# ---------------------------------------------------------------------------------------------
# At the store


@dataclass
class Scan:
    coupon: Coupon
    nonce: str | None


def _scan(session: Session, token: str | None, code: str | None, now: datetime) -> Scan:
    if token:
        scanned = qr.verify(current_app.config["SECRET_KEY"], token, QR_PURPOSE, now)
        coupon = session.get(Coupon, scanned.subject)
        if coupon is None:
            raise AppError("coupon.code_invalid", 404)
        return Scan(coupon, scanned.nonce)
    coupon = session.scalars(select(Coupon).where(Coupon.code == (code or ""))).one_or_none()
    if coupon is None:
        raise AppError("coupon.code_invalid", 404)
    return Scan(coupon, None)


def _refusal(
    template: CouponTemplate, coupon: Coupon, store_id: int | None, now: datetime, session: Session | None = None
) -> str | None:
    """Why this coupon cannot be used here (None: anywhere) now, as a stable code; None when it
    can. With a session, a template scoped to brands is usable only at stores serving one."""
    if coupon.status == CouponStatus.USED:
        return "coupon.already_used"
    if coupon.status == CouponStatus.LOCKED:
        return "coupon.in_use"
    if coupon.status == CouponStatus.EXPIRED or coupon.valid_until <= now:
        return "coupon.expired"
    if coupon.valid_from > now:
        return "coupon.not_yet_valid"
    if store_id is not None and template.store_id is not None and template.store_id != store_id:
        return "coupon.wrong_store"
    if (
        store_id is not None
        and template.brands
        and session is not None
        and not _store_serves(session, store_id, template.brands)
    ):
        return "coupon.wrong_brand"
    return None


def _store_serves(session: Session, store_id: int, brands: list[str]) -> bool:
    from backend.stores.models import StoreProfile

    served = session.scalar(select(StoreProfile.brands).where(StoreProfile.store_id == store_id))
    return not served or bool(set(served) & set(brands))  # a store listing no brands serves every brand


def preview(
    session: Session, actor: StaffActor, token: str | None, code: str | None, store_id: int | None
) -> dict[str, Any]:
    now = utcnow()
    store = acting_store(session, actor, store_id, "coupon.store_required", "coupon.wrong_store")
    scan = _scan(session, token, code, now)
    template = session.get(CouponTemplate, scan.coupon.template_id)
    return {
        "coupon": scan.coupon,
        "template": template,
        "store_id": store,
        "refusal": _refusal(template, scan.coupon, store, now, session),
    }


def write_off(
    session: Session,
    actor: StaffActor,
    *,
    token: str | None,
    code: str | None,
    nonce: str | None,
    store_id: int | None,
    now: datetime | None = None,
) -> tuple[Coupon, CouponWriteOff]:
    """Use the coupon at the store. The same scan (nonce) again answers the same write-off."""
    now = now or utcnow()
    store = acting_store(session, actor, store_id, "coupon.store_required", "coupon.wrong_store")
    scan = _scan(session, token, code, now)
    nonce = scan.nonce or nonce
    if not nonce:
        raise AppError("coupon.nonce_required", 422, errors={"json": {"nonce": ["required with a code"]}})
    done = session.scalars(select(CouponWriteOff).where(CouponWriteOff.nonce == nonce)).one_or_none()
    if done is not None:
        return scan.coupon, _same_scan(done, scan.coupon)
    coupon = scan.coupon
    template = session.get(CouponTemplate, coupon.template_id)
    refusal = _refusal(template, coupon, store, now, session)
    if refusal:
        raise AppError(refusal, 409)
    try:
        with unique_savepoint(session):
            used = session.execute(
                update(Coupon)
                .where(Coupon.id == coupon.id, Coupon.status == CouponStatus.UNUSED.value, Coupon.valid_until > now)
                .values(status=CouponStatus.USED.value, used_at=now)
            )
            if used.rowcount != 1:
                raise AppError("coupon.already_used", 409)
            row = CouponWriteOff(coupon_id=coupon.id, nonce=nonce, store_id=store, staff_id=actor.staff_id, used_at=now)
            session.add(row)
    except DuplicateKey:
        # The same scan confirmed twice at once: the other request wrote it off; answer with it.
        row = session.scalars(select(CouponWriteOff).where(CouponWriteOff.nonce == nonce)).one()
        session.refresh(coupon)
        return coupon, _same_scan(row, coupon)
    session.refresh(coupon)
    record(
        session,
        customer_id=coupon.customer_id,
        kind=Kind.COUPON_USED,
        channel=Channel.STORE,
        source=SOURCE,
        source_ref=f"coupon_write_off:{row.id}",
        occurred_at=now,
        advisor_id=actor.staff_id,
        store_id=store,
        payload={"coupon_id": coupon.id, "template_id": template.id, "name": template.name},
    )
    write_audit(session, actor, "coupon.written_off", "coupon", coupon.id, {"nonce": nonce, "store_id": store})
    return coupon, row


def _same_scan(row: CouponWriteOff, coupon: Coupon) -> CouponWriteOff:
    """The write-off a nonce already names answers a replay of that scan, and only of it: the
    nonce of a typed code comes from the counter's app, and one reused for another coupon would
    otherwise answer "written off" for a coupon left unused."""
    if row.coupon_id != coupon.id:
        raise AppError("coupon.nonce_reused", 409, errors={"json": {"nonce": ["names another coupon's write-off"]}})
    return row


def reverse(session: Session, actor: StaffActor, write_off_row: CouponWriteOff, reason: str) -> CouponWriteOff:
    if not actor.has_role(*MANAGER_ROLES):
        raise AppError("coupon.reverse_forbidden", 403)
    now = utcnow()
    reversed_now = session.execute(
        update(CouponWriteOff)
        .where(CouponWriteOff.id == write_off_row.id, CouponWriteOff.reversed_at.is_(None))
        .values(reversed_at=now, reversed_by=actor.staff_id, reverse_reason=reason)
    )
    if reversed_now.rowcount != 1:
        raise AppError("coupon.not_reversible", 409)
    session.execute(
        update(Coupon)
        .where(Coupon.id == write_off_row.coupon_id, Coupon.status == CouponStatus.USED.value)
        .values(status=CouponStatus.UNUSED.value, used_at=None)
    )
    session.refresh(write_off_row)
    coupon = session.get(Coupon, write_off_row.coupon_id)
    session.refresh(coupon)
    record(
        session,
        customer_id=coupon.customer_id,
        kind=Kind.COUPON_REVERSED,
        channel=Channel.STORE,
        source=SOURCE,
        source_ref=f"coupon_write_off:{write_off_row.id}:reversed",
        occurred_at=now,
        advisor_id=actor.staff_id,
        store_id=write_off_row.store_id,
        payload={"coupon_id": coupon.id, "reason": reason},
    )
    write_audit(session, actor, "coupon.write_off_reversed", "coupon_write_off", write_off_row.id, {"reason": reason})
    return write_off_row


def expire_due(session: Session, now: datetime | None = None, limit: int = 500) -> int:
    """Unused coupons past their validity become expired, each once, with a touchpoint."""
    now = now or utcnow()
    due = session.scalars(
        select(Coupon)
        .where(Coupon.status == CouponStatus.UNUSED, Coupon.valid_until <= now)
        .order_by(Coupon.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for coupon in due:
        coupon.status = CouponStatus.EXPIRED
        record(
            session,
            customer_id=coupon.customer_id,
            kind=Kind.COUPON_EXPIRED,
            channel=Channel.SYSTEM,
            source=SOURCE,
            source_ref=f"coupon:{coupon.id}:expired",
            occurred_at=now,
            payload={"coupon_id": coupon.id, "template_id": coupon.template_id},
        )
    session.flush()
    return len(due)


def report(session: Session, actor: StaffActor) -> list[dict[str, Any]]:
    """Per template in the actor's scope: issued (by source: claimed, given by staff, pushed,
    automatic, exchanged, bought in the mall), used, expired, unused; the stores that wrote
    coupons off (settlement: who funded it, who redeemed it); and issued/used per campaign.
    Three grouped queries whatever the number of templates."""
    rows = session.execute(
        select(
            CouponTemplate.id,
            CouponTemplate.name,
            CouponTemplate.store_id,
            Coupon.status,
            Coupon.source,
            func.count(Coupon.id),
        )
        .join(Coupon, Coupon.template_id == CouponTemplate.id, isouter=True)
        .where(_template_rule(actor))
        .group_by(CouponTemplate.id, CouponTemplate.name, CouponTemplate.store_id, Coupon.status, Coupon.source)
        .order_by(CouponTemplate.id)
    ).all()
    out: dict[int, dict[str, Any]] = {}
    for template_id, name, store_id, status, source, n in rows:
        entry = out.setdefault(
            template_id,
            {"template_id": template_id, "name": name, "store_id": store_id, "issued": 0, "claimed": 0, "given": 0}
            | {str(s): 0 for s in CouponStatus}
            | {"by_source": {}, "used_at_stores": [], "by_campaign": []},
        )
        if status is not None:
            entry[str(status)] += n
            entry["issued"] += n
            entry["claimed" if source == "claim" else "given"] += n
            entry["by_source"][source] = entry["by_source"].get(source, 0) + n
    if not out:
        return []
    in_report = Coupon.template_id.in_(list(out))
    for template_id, store_id, n in session.execute(
        select(Coupon.template_id, CouponWriteOff.store_id, func.count())
        .join(CouponWriteOff, CouponWriteOff.coupon_id == Coupon.id)
        .where(in_report, CouponWriteOff.reversed_at.is_(None))
        .group_by(Coupon.template_id, CouponWriteOff.store_id)
        .order_by(Coupon.template_id, CouponWriteOff.store_id)
    ):
        out[template_id]["used_at_stores"].append({"store_id": store_id, "used": n})
    used = func.sum(case((Coupon.status == CouponStatus.USED.value, 1), else_=0))
    for template_id, campaign_id, n, n_used in session.execute(
        select(Coupon.template_id, Coupon.campaign_id, func.count(), used)
        .where(in_report, Coupon.campaign_id.is_not(None))
        .group_by(Coupon.template_id, Coupon.campaign_id)
        .order_by(Coupon.template_id, Coupon.campaign_id)
    ):
        out[template_id]["by_campaign"].append({"campaign_id": campaign_id, "issued": n, "used": int(n_used or 0)})
    return list(out.values())


def check_template_segment(session: Session, actor: StaffActor, segment_id: int | None) -> None:
    """A template kept to a segment's members names a segment of the actor's scope."""
    from backend.segments.service import check_segment_in_scope

    check_segment_in_scope(session, actor, segment_id, "segment_id", "request.invalid")


def update_template(
    session: Session, actor: StaffActor, template: CouponTemplate, data: dict[str, Any]
) -> CouponTemplate:
    """Windows, stock, limits and eligibility change; the stock never drops below what is issued
    (checked in the UPDATE itself, so a claim landing meanwhile cannot slip under it)."""
    stock = data.pop("stock", None)
    if stock is not None:
        changed = session.execute(
            update(CouponTemplate)
            .where(CouponTemplate.id == template.id, CouponTemplate.issued <= stock)
            .values(stock=stock)
        )
        if changed.rowcount != 1:
            raise AppError("coupon.stock_below_issued", 409, errors={"json": {"stock": ["below the coupons issued"]}})
        session.refresh(template)
    if "segment_id" in data:
        check_template_segment(session, actor, data["segment_id"])
    for key, value in data.items():
        setattr(template, key, value)
    if template.claim_ends_at <= template.claim_starts_at:
        raise AppError("request.invalid", 422, errors={"json": {"claim_ends_at": ["must be after claim_starts_at"]}})
    save_template(session, template)
    write_audit(session, actor, "coupon_template.updated", "coupon_template", template.id, _audit_safe(data, stock))
    return template


def save_template(session: Session, template: CouponTemplate) -> None:
    """Write a new or changed template. An exchange code is unique among templates: the key
    decides (no check-then-write), and a taken code is the caller's to change, not a retry."""
    try:
        with unique_savepoint(session):
            session.add(template)
    except DuplicateKey as exc:
        raise AppError(
            "coupon.exchange_code_taken", 409, errors={"json": {"exchange_code": ["used by another template"]}}
        ) from exc


def _audit_safe(data: dict[str, Any], stock: int | None) -> dict[str, Any]:
    out = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in data.items()}
    if stock is not None:
        out["stock"] = stock
    return out


# ---------------------------------------------------------------------------------------------
# Online use: locked to a payment order at creation, used when paid, released when it closes
# (or when it is refunded in full); applied to the business object's price (after its own
# promotions, before payment), combined only as the templates' stacking rules allow.


# Application order within the order-level coupons (after the business object's own price and
# promotions, before payment): threshold coupons (each judged on the price before coupons,
# biggest first), then fixed amounts, then percentages on what is left; at least 1 fen is paid.
_APPLICATION_ORDER = {CouponKind.THRESHOLD: 0, CouponKind.FIXED: 1, CouponKind.PERCENT: 2}


def _usable_on_order(
    session: Session,
    customer_id: int,
    coupon_id: int,
    business_type: str,
    business_id: str,
    quote: Quote,
    now: datetime,
) -> tuple[Coupon, CouponTemplate]:
    coupon = member_coupon(session, customer_id, coupon_id)
    template = session.get(CouponTemplate, coupon.template_id)
    if coupon.status == CouponStatus.USED:
        raise AppError("coupon.already_used", 409, errors={"coupon_id": coupon_id})
    refusal = _refusal(template, coupon, quote.store_id, now, session)
    if refusal == "coupon.in_use":
        refusal = None  # held by an order: lock_to_order decides (this one again, or a closed one)
    if refusal is None and template.store_id is not None and quote.store_id is None:
        refusal = "coupon.wrong_store"
    if refusal is None and template.business_types is not None and business_type not in template.business_types:
        refusal = "coupon.not_for_this_order"
    if refusal is None and template.item_ids is not None and business_id not in template.item_ids:
        refusal = "coupon.not_for_this_order"
    if refusal is None and template.kind not in _APPLICATION_ORDER:
        refusal = "coupon.store_only"
    if refusal is None and template.kind == CouponKind.THRESHOLD and quote.amount_fen < template.threshold_fen:
        raise AppError(
            "coupon.threshold_not_met", 409, errors={"coupon_id": coupon_id, "threshold_fen": template.threshold_fen}
        )
    if refusal is not None:
        raise AppError(refusal, 409, errors={"coupon_id": coupon_id})
    return coupon, template


def _check_stacking(picked: list[tuple[Coupon, CouponTemplate]]) -> None:
    """The stacking rules are data on each template: `exclusive` (alone on an order),
    `combinable_kinds` (the kinds it may share an order with; null: any), `max_per_order`."""
    if len(picked) < 2:
        return
    per_template: dict[int, int] = {}
    for coupon, template in picked:
        per_template[template.id] = per_template.get(template.id, 0) + 1
        if template.exclusive:
            raise AppError("coupon.not_combinable", 409, errors={"coupon_id": coupon.id, "rule": "exclusive"})
        if per_template[template.id] > template.max_per_order:
            raise AppError("coupon.not_combinable", 409, errors={"coupon_id": coupon.id, "rule": "max_per_order"})
        others = {t.kind.value for c, t in picked if c.id != coupon.id}
        if template.combinable_kinds is not None and not others <= set(template.combinable_kinds):
            raise AppError("coupon.not_combinable", 409, errors={"coupon_id": coupon.id, "rule": "combinable_kinds"})


def price_for_order(
    session: Session, customer_id: int, coupon_ids: list[int], business_type: str, business_id: str, quote: Quote
) -> list[tuple[int, int]]:
    """(coupon id, fen it takes off) for each coupon, in the documented application order."""
    if len(set(coupon_ids)) != len(coupon_ids):
        raise AppError("request.invalid", 422, errors={"json": {"coupon_ids": ["each coupon once"]}})
    now = utcnow()
    picked = [_usable_on_order(session, customer_id, cid, business_type, business_id, quote, now) for cid in coupon_ids]
    _check_stacking(picked)
    picked.sort(key=lambda p: (_APPLICATION_ORDER[p[1].kind], -p[1].value_fen, p[0].id))
    left = quote.amount_fen
    out = []
    for coupon, template in picked:
        if template.kind == CouponKind.PERCENT:
            off = min(left * template.percent_off // 100, template.cap_fen)  # rounded down to the fen
        else:
            off = template.value_fen
        off = max(0, min(off, left - 1))
        left -= off
        out.append((coupon.id, off))
    return out


def lock_to_order(session: Session, discounts: list[tuple[int, int]], order_id: int) -> None:
    """Each coupon unused (or held by an order that has closed since, whose release job has not
    run yet, or by this very order when the owner asks again) → locked to this order, in id
    order; else coupon.in_use and the whole request fails."""
    closed_holder = (
        select(PaymentOrder.id)
        .where(PaymentOrder.id == Coupon.locked_order_id, PaymentOrder.state == OrderState.CLOSED.value)
        .exists()
    )
    for coupon_id, discount_fen in sorted(discounts):
        locked = session.execute(
            update(Coupon)
            .where(
                Coupon.id == coupon_id,
                Coupon.valid_until > utcnow(),
                or_(
                    Coupon.status == CouponStatus.UNUSED.value,
                    and_(
                        Coupon.status == CouponStatus.LOCKED.value,
                        or_(Coupon.locked_order_id == order_id, closed_holder),
                    ),
                ),
            )
            .values(status=CouponStatus.LOCKED.value, locked_order_id=order_id, discount_fen=discount_fen)
            .execution_options(synchronize_session=False)
        )
        if locked.rowcount != 1:
            raise AppError("coupon.in_use", 409, errors={"coupon_id": coupon_id})


def _order_coupons(session: Session, order_id: int, status: CouponStatus) -> list[Coupon]:
    return list(
        session.scalars(
            select(Coupon).where(Coupon.locked_order_id == order_id, Coupon.status == status).with_for_update()
        )
    )


def _paid_orders(session: Session, customer_id: int) -> int:
    return session.scalar(
        select(func.count())
        .select_from(PaymentOrder)
        .where(PaymentOrder.customer_id == customer_id, PaymentOrder.paid_at.is_not(None))
    )


def on_order_paid(session: Session, order_id: int) -> None:
    now = utcnow()
    order = session.get(PaymentOrder, order_id)
    if order is not None and _paid_orders(session, order.customer_id) == 1:
        auto_issue(session, order.customer_id, AutoIssue.FIRST_PAID_ORDER, ref="first", now=now)
    for coupon in _order_coupons(session, order_id, CouponStatus.LOCKED):
        coupon.status = CouponStatus.USED
        coupon.used_at = now
        order = session.get(PaymentOrder, order_id)
        record(
            session,
            customer_id=coupon.customer_id,
            kind=Kind.COUPON_USED,
            channel=Channel.MINIPROGRAM,
            source=SOURCE,
            source_ref=f"coupon:{coupon.id}:order:{order_id}:used",
            occurred_at=now,
            store_id=order.store_id if order else None,
            payload={"coupon_id": coupon.id, "order_id": order_id, "discount_fen": coupon.discount_fen},
        )


def _release(session: Session, order_id: int, status: CouponStatus, why: str) -> None:
    now = utcnow()
    for coupon in _order_coupons(session, order_id, status):
        coupon.status = CouponStatus.UNUSED if coupon.valid_until > now else CouponStatus.EXPIRED
        coupon.locked_order_id = None
        coupon.discount_fen = None
        coupon.used_at = None
        record(
            session,
            customer_id=coupon.customer_id,
            kind=Kind.COUPON_RELEASED,
            channel=Channel.SYSTEM,
            source=SOURCE,
            source_ref=f"coupon:{coupon.id}:order:{order_id}:{why}",
            occurred_at=now,
            payload={"coupon_id": coupon.id, "order_id": order_id, "why": why, "status": str(coupon.status)},
        )


def on_order_closed(session: Session, order_id: int) -> None:
    _release(session, order_id, CouponStatus.LOCKED, "closed")


def on_order_refunded(session: Session, order_id: int, refund_id: int) -> None:
    """A refund in full gives the coupon back (expired if its validity has passed meanwhile); a
    partial refund keeps it used: the discount stays with what was bought."""
    order = session.get(PaymentOrder, order_id)
    if order is not None and order.refunded_fen >= order.amount_fen:
        _release(session, order_id, CouponStatus.USED, "refunded")
