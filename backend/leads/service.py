"""Leads (线索): owner enquiries routed at once to the right advisor and tracked to an outcome.

Submission (`submit`) checks what each type needs (an accident needs photos, a location,
injuries and drivable; a trade-in the owner's car, its mileage and condition photos ...),
refuses a duplicate — the same owner, type and subject (car / listing / model) still open and
submitted within `DUPLICATE_WINDOW` — with 409 `lead.duplicate` naming the existing lead (a
retried submit with the same Idempotency-Key instead replays the first answer), routes the
lead and notifies the advisor by WeCom app message through the outbox.

Lock order of a submission: the customer row (serialises one owner's submits, so the duplicate
check cannot race), then the store's org_unit row (serialises routing in a store), then the
store's round-robin cursor. Routing: the owner's own advisor for the lead's role when that
advisor is active at the store, else the store's active staff of that role in turn (round
robin), else the store managers in turn.

SLA: a lead must leave `new` before `contact_due_at` (15 minutes for an accident, longer for
the rest). A delayed job per lead and a periodic sweep both call `escalate`, a conditional
update (`escalated_at IS NULL AND status = 'new' AND contact_due_at <= now`), so a lead is
escalated to the store managers (none: the nearest managers above the store) exactly once
however often they run.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, Select, false, select, true, update
from sqlalchemy.orm import Session

from backend.customers.models import Car, Customer, CustomerAdvisor
from backend.customers.service import vault
from backend.leads.models import (
    CLOSED_STATUSES,
    OPEN_LISTING_STATUSES,
    Lead,
    LeadPriority,
    LeadRouteCursor,
    LeadStatus,
    LeadType,
    Listing,
    ListingStatus,
)
from backend.org.models import OrgKind, OrgUnit, Role, Staff, StaffRole, StaffStatus
from backend.org.open_work import held_by, lock_active, may_take, register_open_work
from backend.org.scope import register_scope, store_filter
from backend.org.service import active_staff_with_role, managers_of_store
from backend.platform.actors import StaffActor
from backend.platform.audit import write_audit
from backend.platform.db import utcnow
from backend.platform.errors import AppError, register_messages
from backend.platform.jobs import enqueue
from backend.platform.logs import mask_phones
from backend.platform.pii import register_sealed_text, seal_into
from backend.touchpoints.models import Channel, Kind, Touchpoint
from backend.touchpoints.service import live_customer_id, record
from backend.wecom import notify

log = logging.getLogger("dealerloop.leads")

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")  # shown to people; stored in UTC
DUPLICATE_WINDOW = timedelta(minutes=30)
SLA = {
    LeadType.ACCIDENT: timedelta(minutes=15),
    LeadType.NEW_CAR: timedelta(hours=1),
    LeadType.USED_CAR: timedelta(hours=1),
    LeadType.TRADE_IN: timedelta(hours=2),
    LeadType.LOAN: timedelta(hours=4),
    LeadType.INSURANCE: timedelta(hours=4),
}
ROLE_BY_TYPE = {
    LeadType.NEW_CAR: Role.SALES_ADVISOR,
    LeadType.USED_CAR: Role.SALES_ADVISOR,
    LeadType.TRADE_IN: Role.SALES_ADVISOR,
    LeadType.LOAN: Role.INSURANCE_FINANCE,
    LeadType.INSURANCE: Role.INSURANCE_FINANCE,
    LeadType.ACCIDENT: Role.SERVICE_ADVISOR,
}
TYPE_LABELS = {
    LeadType.NEW_CAR: "新车意向",
    LeadType.USED_CAR: "二手车意向",
    LeadType.TRADE_IN: "置换估价",
    LeadType.LOAN: "分期贷款",
    LeadType.INSURANCE: "保险报价",
    LeadType.ACCIDENT: "出险报案",
}
STATUS_LABELS = {
    LeadStatus.NEW: "待联系",
    LeadStatus.CONTACTED: "已联系",
    LeadStatus.APPOINTMENT: "已预约",
    LeadStatus.WON: "已成交",
    LeadStatus.LOST: "已关闭",
}
TRANSITIONS: dict[LeadStatus, frozenset[LeadStatus]] = {
    LeadStatus.NEW: frozenset({LeadStatus.CONTACTED, LeadStatus.APPOINTMENT, LeadStatus.WON, LeadStatus.LOST}),
    LeadStatus.CONTACTED: frozenset({LeadStatus.APPOINTMENT, LeadStatus.WON, LeadStatus.LOST}),
    LeadStatus.APPOINTMENT: frozenset({LeadStatus.CONTACTED, LeadStatus.APPOINTMENT, LeadStatus.WON, LeadStatus.LOST}),
    LeadStatus.WON: frozenset(),
    LeadStatus.LOST: frozenset(),
}
MANAGER_ROLES = ("store_manager", "region_manager", "division_manager", "group_admin")
SLA_JOB = "leads.check_sla"
SOURCE = "leads"

register_messages(
    {
        "lead.not_found": ("线索不存在", "Lead not found"),
        "lead.duplicate": ("您刚刚已提交过相同的申请，顾问会尽快联系您", "The same enquiry was submitted just now"),
        "lead.photos_required": ("请上传照片", "Photos are required for this enquiry"),
        "lead.location_required": ("请提供出险地点", "The accident location is required"),
        "lead.field_required": ("请填写必填信息", "A required field is missing"),
        "lead.car_required": ("请选择您的车辆", "Choose one of your cars"),
        "lead.listing_required": ("请选择在售车辆", "Choose a vehicle for sale"),
        "lead.subject_required": ("请选择意向车型或在售车辆", "Name the model or the vehicle for sale"),
        "lead.store_required": ("请选择门店", "Choose a store"),
        "lead.listing_unavailable": ("该车辆已售出或已下架", "This vehicle is sold or withdrawn"),
        "lead.invalid_transition": ("线索状态不能这样变更", "This status change is not allowed"),
        "lead.lost_reason_required": ("请填写战败原因", "A lost lead needs a reason"),
        "lead.appointment_time_required": ("请填写预约时间", "An appointment needs its time"),
        "lead.closed": ("线索已关闭", "This lead is closed"),
        "lead.advisor_invalid": ("该员工不能接手这条线索", "This staff member cannot take this lead"),
        "lead.version_conflict": ("线索已被他人更新，请刷新后重试", "The lead changed meanwhile; reload it"),
        "listing.not_found": ("车辆不存在", "Listing not found"),
        "listing.store_invalid": ("请选择你所在的门店", "Choose a store of your scope"),
    }
)


# ---------------------------------------------------------------------------------------------
# Scopes: advisors see the leads assigned to them, managers the leads of their stores. Listings:
# staff of a store see its listings, managers those of their stores.


def _lead_rule(actor: StaffActor) -> ColumnElement[bool]:
    if actor.scope.own_customers_only:
        return Lead.advisor_id == actor.staff_id
    return store_filter(actor, Lead.store_id)


def _listing_rule(actor: StaffActor) -> ColumnElement[bool]:
    if actor.scope.store_ids is None:
        return true()
    if actor.scope.own_customers_only:
        return Listing.store_id == actor.org_unit_id
    if not actor.scope.store_ids:
        return false()
    return store_filter(actor, Listing.store_id)


register_scope("lead", Lead, _lead_rule, "lead.not_found")
register_scope("listing", Listing, _listing_rule, "listing.not_found")
register_sealed_text("lead.note", Lead, "note", "lead")


def is_overdue(lead: Lead, now: datetime | None = None) -> bool:
    return lead.status == LeadStatus.NEW and lead.contact_due_at <= (now or utcnow())


# ---------------------------------------------------------------------------------------------
# Owner side: listings


def listings_for_owner(session: Session, *, store_id: int | None = None, condition: str | None = None) -> list[Listing]:
    stmt = select(Listing).where(Listing.status.in_(OPEN_LISTING_STATUSES))
    if store_id:
        stmt = stmt.where(Listing.store_id == store_id)
    if condition:
        stmt = stmt.where(Listing.condition == condition)
    return list(session.scalars(stmt.order_by(Listing.id.desc()).limit(200)))


def listing_for_owner(session: Session, listing_id: int) -> Listing:
    listing = session.scalars(
        select(Listing).where(Listing.id == listing_id, Listing.status.in_(OPEN_LISTING_STATUSES))
    ).one_or_none()
    if listing is None:
        raise AppError("listing.not_found", 404)
    return listing


# ---------------------------------------------------------------------------------------------
# Owner side: submitting a lead

DETAIL_FIELDS = {
    LeadType.NEW_CAR: ("brand", "series", "budget_fen"),
    LeadType.USED_CAR: ("budget_fen",),
    LeadType.TRADE_IN: ("mileage_km", "condition", "target_series"),
    LeadType.LOAN: ("amount_fen", "down_payment_fen", "term_months"),
    LeadType.INSURANCE: ("insurance_kind", "current_insurer", "expires_on"),
    LeadType.ACCIDENT: (),
}


def _required(field: str, why: str) -> AppError:
    return AppError("lead.field_required", 422, errors={"json": {field: [why]}})


def _owner_car(session: Session, customer: Customer, car_id: int | None) -> Car:
    if car_id is None:
        raise AppError("lead.car_required", 422, errors={"json": {"car_id": ["one of your cars"]}})
    car = session.scalars(
        select(Car).where(Car.id == car_id, Car.customer_id == customer.id, Car.removed_at.is_(None))
    ).one_or_none()
    if car is None:
        raise AppError("car.not_found", 404)
    return car


def _open_listing(session: Session, listing_id: int) -> Listing:
    listing = session.get(Listing, listing_id)
    if listing is None:
        raise AppError("listing.not_found", 404)
    if listing.status not in OPEN_LISTING_STATUSES:
        raise AppError("lead.listing_unavailable", 409, errors={"listing_status": listing.status.value})
    return listing


def _check_and_subject(session: Session, customer: Customer, kind: LeadType, data: dict[str, Any]) -> dict[str, Any]:
    """Validate what the type needs; answer the resolved car/listing and the duplicate subject."""
    car = listing = None
    photos = data.get("photos") or []
    if data.get("listing_id") is not None:
        listing = _open_listing(session, data["listing_id"])
    if data.get("car_id") is not None or kind in (LeadType.TRADE_IN, LeadType.INSURANCE, LeadType.ACCIDENT):
        car = _owner_car(session, customer, data.get("car_id"))
    if kind == LeadType.NEW_CAR:
        if listing is None and not (data.get("series") or data.get("brand")):
            raise AppError("lead.subject_required", 422, errors={"json": {"series": ["a model or a listing_id"]}})
        subject = f"listing:{listing.id}" if listing else f"model:{data.get('brand') or ''}/{data.get('series') or ''}"
    elif kind == LeadType.USED_CAR:
        if listing is None:
            raise AppError("lead.listing_required", 422, errors={"json": {"listing_id": ["a vehicle for sale"]}})
        subject = f"listing:{listing.id}"
    elif kind == LeadType.LOAN:
        subject = f"listing:{listing.id}" if listing else (f"car:{car.id}" if car else "loan")
    else:
        assert car is not None
        subject = f"car:{car.id}"
    if kind == LeadType.TRADE_IN:
        if data.get("mileage_km") is None:
            raise _required("mileage_km", "the car's mileage")
        if not photos:
            raise AppError("lead.photos_required", 422, errors={"json": {"photos": ["condition photos"]}})
    if kind == LeadType.INSURANCE and not data.get("insurance_kind"):
        raise _required("insurance_kind", "quote or renewal")
    if kind == LeadType.ACCIDENT:
        location = data.get("location") or {}
        has_point = location.get("latitude") is not None and location.get("longitude") is not None
        if not (location.get("address") or has_point):
            raise AppError("lead.location_required", 422, errors={"json": {"location": ["address or coordinates"]}})
        if not photos:
            raise AppError("lead.photos_required", 422, errors={"json": {"photos": ["photos of the scene"]}})
        for field in ("injuries", "drivable"):
            if data.get(field) is None:
                raise _required(field, "yes or no")
        if data.get("repair_booking_requested") and data.get("preferred_time") is None:
            raise _required("preferred_time", "when you would like the repair")
    return {"car": car, "listing": listing, "subject": subject[:128]}


def _lead_store(session: Session, customer: Customer, listing: Listing | None, store_id: int | None) -> int:
    if listing is not None:
        return listing.store_id
    if store_id is not None:
        unit = session.get(OrgUnit, store_id)
        if unit is None or unit.kind != OrgKind.STORE:
            raise AppError("org.not_found", 404)
        return unit.id
    if customer.home_store_id is not None:
        return customer.home_store_id
    raise AppError("lead.store_required", 422, errors={"json": {"store_id": ["required: you have no home store"]}})


def _lock_customer(session: Session, customer: Customer) -> Customer:
    """Lock the owner's row and answer the live customer: a merge that committed after the
    request resolved its owner moved them on, and a lead left on the hidden source would be
    lost to them (not in their list, not in the duplicate check)."""
    customer_id = live_customer_id(session, customer.id, exclusive=True)
    if customer_id == customer.id:
        return customer
    return session.get(Customer, customer_id, populate_existing=True) or customer


def submit(session: Session, customer: Customer, data: dict[str, Any], now: datetime | None = None) -> Lead:
    now = now or utcnow()
    kind = LeadType(data["type"])
    customer = _lock_customer(session, customer)
    checked = _check_and_subject(session, customer, kind, data)
    duplicate = session.scalar(
        select(Lead.id).where(
            Lead.customer_id == customer.id,
            Lead.type == kind,
            Lead.subject == checked["subject"],
            Lead.status.not_in(CLOSED_STATUSES),
            Lead.created_at > now - DUPLICATE_WINDOW,
        )
    )
    if duplicate is not None:
        raise AppError("lead.duplicate", 409, errors={"lead_id": duplicate})
    store_id = _lead_store(session, customer, checked["listing"], data.get("store_id"))
    details = {k: data[k] for k in DETAIL_FIELDS[kind] if data.get(k) is not None}
    if "expires_on" in details:
        details["expires_on"] = details["expires_on"].isoformat()
    accident = kind == LeadType.ACCIDENT
    lead = Lead(
        customer_id=customer.id,
        store_id=store_id,
        type=kind,
        status=LeadStatus.NEW,
        priority=LeadPriority.HIGH if accident else LeadPriority.NORMAL,
        routed_role=ROLE_BY_TYPE[kind].value,
        routed_by="none",
        car_id=checked["car"].id if checked["car"] else None,
        listing_id=checked["listing"].id if checked["listing"] else None,
        subject=checked["subject"],
        details=details,
        photos=list(data.get("photos") or []),
        location=data.get("location") if accident else None,
        injuries=data.get("injuries") if accident else None,
        drivable=data.get("drivable") if accident else None,
        tow_requested=bool(data.get("tow_requested")) if accident else False,
        repair_booking_requested=bool(data.get("repair_booking_requested")) if accident else False,
        preferred_time=_utc(data.get("preferred_time")),
        contact_due_at=now + SLA[kind],
        created_at=now,
        updated_at=now,
    )
    seal_into(lead, "note", data.get("note"), vault())
    advisor, routed_by = route(session, customer.id, store_id, ROLE_BY_TYPE[kind])
    lead.advisor_id = advisor.id if advisor else None
    lead.routed_by = routed_by
    session.add(lead)
    session.flush()
    record(
        session,
        customer_id=customer.id,
        kind=Kind.LEAD_CREATED,
        channel=Channel.MINIPROGRAM,
        source=SOURCE,
        source_ref=f"lead:{lead.id}:created",
        occurred_at=now,
        advisor_id=lead.advisor_id,
        store_id=store_id,
        payload=_payload(lead, type=kind.value, priority=lead.priority.value),
    )
    if advisor is not None:
        _assigned(session, lead, advisor, customer, by="routing", routed_by=routed_by, now=now)
    enqueue(session, SLA_JOB, {"lead_id": lead.id}, dedup_key=f"{SLA_JOB}:{lead.id}", delay=SLA[kind], key_is_new=True)
    return lead


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def _payload(lead: Lead, **extra: Any) -> dict[str, Any]:
    return {"lead_id": lead.id, "type": lead.type.value, **extra}


# ---------------------------------------------------------------------------------------------
# Routing


def _next_in_turn(session: Session, store_id: int, role: str, candidates: list[Staff]) -> Staff:
    """The store's row lock (taken by the caller) serialises this: read, pick, move on."""
    cursor = session.scalars(
        select(LeadRouteCursor).where(LeadRouteCursor.store_id == store_id, LeadRouteCursor.role == role)
    ).one_or_none()
    if cursor is None:
        cursor = LeadRouteCursor(store_id=store_id, role=role, position=0)
        session.add(cursor)
        session.flush()
    chosen = candidates[cursor.position % len(candidates)]
    cursor.position += 1
    session.flush()
    return chosen


def route(session: Session, customer_id: int, store_id: int, role: Role) -> tuple[Staff | None, str]:
    session.execute(select(OrgUnit.id).where(OrgUnit.id == store_id).with_for_update())
    own = session.scalars(
        select(Staff)
        .join(CustomerAdvisor, CustomerAdvisor.staff_id == Staff.id)
        .join(StaffRole, StaffRole.staff_id == Staff.id)
        .where(
            CustomerAdvisor.customer_id == customer_id,
            CustomerAdvisor.role == role.value,
            StaffRole.role == role.value,
            Staff.org_unit_id == store_id,
            Staff.status == StaffStatus.ACTIVE,
        )
    ).first()
    # Each choice is confirmed under a shared lock on the advisor's row (`lock_active`): one a
    # sync is resigning meanwhile is passed over, or given the lead before the resignation
    # commits — and the departure job then moves it. Never left with someone who has gone.
    if own is not None and lock_active(session, own.id):
        return own, "assigned_advisor"
    for turn_role, routed_by in ((role.value, "round_robin"), (Role.STORE_MANAGER.value, "store_manager")):
        candidates = active_staff_with_role(session, store_id, turn_role)
        while candidates:
            chosen = _next_in_turn(session, store_id, turn_role, candidates)
            if lock_active(session, chosen.id):
                return chosen, routed_by
            candidates = [c for c in candidates if c.id != chosen.id]
    log.warning("lead for store %s: nobody to route to (role %s)", store_id, role.value)
    return None, "none"


def _describe(session: Session, lead: Lead, customer_name: str) -> str:
    parts = [f"客户「{customer_name}」{TYPE_LABELS[lead.type]}"]
    if lead.listing_id:
        listing = session.get(Listing, lead.listing_id)
        if listing is not None:
            parts.append(f"车辆：{listing.title}")
    if lead.car_id:
        car = session.get(Car, lead.car_id)
        if car is not None:
            parts.append(f"车辆：{car.plate or car.vin}")
    if lead.type == LeadType.ACCIDENT:
        parts.append(f"地点：{(lead.location or {}).get('address') or '见定位'}")
        parts.append(f"有人受伤：{'是' if lead.injuries else '否'}，可行驶：{'是' if lead.drivable else '否'}")
        if lead.tow_requested:
            parts.append("请求拖车")
        if lead.repair_booking_requested:
            parts.append("请求预约维修")
    parts.append(f"请在 {lead.contact_due_at.astimezone(CHINA).strftime('%m-%d %H:%M')} 前联系")
    return "；".join(parts)


def _assigned(
    session: Session,
    lead: Lead,
    staff: Staff,
    customer: Customer | None,
    *,
    by: str,
    routed_by: str,
    now: datetime,
    actor_id: int | None = None,
    previous: int | None = None,
) -> None:
    record(
        session,
        customer_id=lead.customer_id,
        kind=Kind.LEAD_ASSIGNED,
        channel=Channel.SYSTEM if actor_id is None else Channel.WECOM,
        source=SOURCE,
        source_ref=f"lead:{lead.id}:v{lead.version}:assigned",
        occurred_at=now,
        advisor_id=staff.id,
        store_id=lead.store_id,
        payload=_payload(lead, advisor_id=staff.id, previous_advisor_id=previous, by=by, routed_by=routed_by),
    )
    name = (customer.name if customer else None) or "车主"
    urgent = lead.priority == LeadPriority.HIGH
    title = f"【紧急】{TYPE_LABELS[lead.type]}" if urgent else f"新线索 · {TYPE_LABELS[lead.type]}"
    notify.notify(
        session,
        staff.corp_id,
        notify.NotifyKind.NEW_LEAD,
        f"lead:{lead.id}:v{lead.version}",
        [staff.wecom_userid],
        card=notify.Card(title, _describe(session, lead, name), notify.page_link(f"/workbench/leads/{lead.id}")),
    )


# ---------------------------------------------------------------------------------------------
# Owner reads


def member_leads(session: Session, customer_id: int) -> list[Lead]:
    stmt = select(Lead).where(Lead.customer_id == customer_id).order_by(Lead.id.desc()).limit(100)
    return list(session.scalars(stmt))


def member_lead(session: Session, customer_id: int, lead_id: int) -> Lead:
    lead = session.scalars(select(Lead).where(Lead.id == lead_id, Lead.customer_id == customer_id)).one_or_none()
    if lead is None:
        raise AppError("lead.not_found", 404)
    return lead


# ---------------------------------------------------------------------------------------------
# Staff side


def staff_leads_query(actor: StaffActor, filters: dict[str, Any], now: datetime | None = None) -> Select:
    now = now or utcnow()
    stmt = select(Lead).where(_lead_rule(actor))
    if filters.get("mine"):
        stmt = stmt.where(Lead.advisor_id == actor.staff_id)
    if filters.get("store_id"):
        stmt = stmt.where(Lead.store_id == filters["store_id"])
    if filters.get("type"):
        stmt = stmt.where(Lead.type.in_(filters["type"]))
    if filters.get("status"):
        stmt = stmt.where(Lead.status.in_(filters["status"]))
    if filters.get("priority"):
        stmt = stmt.where(Lead.priority == filters["priority"])
    if filters.get("overdue") is True:
        stmt = stmt.where(Lead.status == LeadStatus.NEW, Lead.contact_due_at <= now)
    elif filters.get("overdue") is False:
        stmt = stmt.where((Lead.status != LeadStatus.NEW) | (Lead.contact_due_at > now))
    return stmt


def _locked_lead(session: Session, actor: StaffActor, lead_id: int) -> Lead:
    lead = session.scalars(
        select(Lead)
        .where(Lead.id == lead_id, _lead_rule(actor))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if lead is None:
        raise AppError("lead.not_found", 404)
    return lead


def lead_history(session: Session, lead_id: int) -> list[Touchpoint]:
    prefix = f"lead:{lead_id}:"
    stmt = select(Touchpoint).where(Touchpoint.source == SOURCE, Touchpoint.source_ref.startswith(prefix))
    return list(session.scalars(stmt.order_by(Touchpoint.occurred_at, Touchpoint.id)))


def lead_history_view(session: Session, lead_id: int) -> list[dict[str, Any]]:
    """The lead's history with the names of the staff it mentions (the touchpoint's advisor and
    an assignment's previous advisor), read in one query for the whole history: the workbench
    page shows names, and an advisor cannot list the store's other staff."""
    entries = lead_history(session, lead_id)
    ids = {e.advisor_id for e in entries if e.advisor_id}
    ids |= {p["previous_advisor_id"] for p in (e.payload or {} for e in entries) if p.get("previous_advisor_id")}
    names = dict(session.execute(select(Staff.id, Staff.name).where(Staff.id.in_(ids))).all()) if ids else {}
    return [
        {
            "kind": e.kind,
            "occurred_at": e.occurred_at,
            "advisor_id": e.advisor_id,
            "advisor_name": names.get(e.advisor_id),
            "previous_advisor_name": names.get((e.payload or {}).get("previous_advisor_id")),
            "payload": e.payload,
        }
        for e in entries
    ]


def change_status(
    session: Session, actor: StaffActor, lead_id: int, data: dict[str, Any], now: datetime | None = None
) -> Lead:
    now = now or utcnow()
    lead = _locked_lead(session, actor, lead_id)
    target = LeadStatus(data["status"])
    if target == lead.status and target != LeadStatus.APPOINTMENT:
        return lead  # a repeated tap (or its retry with the version it was sent with): no change
    if data.get("version") is not None and data["version"] != lead.version:
        raise AppError("lead.version_conflict", 409, errors={"version": lead.version})
    if target not in TRANSITIONS[lead.status]:
        raise AppError("lead.invalid_transition", 409, errors={"from": lead.status.value, "to": target.value})
    if target == LeadStatus.LOST and not (data.get("lost_reason") or "").strip():
        raise AppError("lead.lost_reason_required", 422, errors={"json": {"lost_reason": ["required"]}})
    if target == LeadStatus.APPOINTMENT and data.get("appointment_at") is None:
        raise AppError("lead.appointment_time_required", 422, errors={"json": {"appointment_at": ["required"]}})
    previous = lead.status
    lead.status = target
    lead.version += 1
    lead.updated_at = now
    if previous == LeadStatus.NEW:
        lead.contacted_at = now
    if target == LeadStatus.APPOINTMENT:
        lead.appointment_at = _utc(data["appointment_at"])
    if target in CLOSED_STATUSES:
        lead.closed_at = now
        lead.lost_reason = data["lost_reason"].strip()[:255] if target == LeadStatus.LOST else None
    session.flush()
    record(
        session,
        customer_id=lead.customer_id,
        kind=Kind.LEAD_STATUS_CHANGED,
        channel=Channel.WECOM,
        source=SOURCE,
        source_ref=f"lead:{lead.id}:v{lead.version}:status",
        occurred_at=now,
        advisor_id=actor.staff_id,
        store_id=lead.store_id,
        payload=_payload(
            lead,
            **{"from": previous.value, "to": target.value},
            lost_reason=lead.lost_reason,
            appointment_at=lead.appointment_at.isoformat() if lead.appointment_at else None,
            # The follow-up note lives only in this timeline entry: numbers masked, none kept in full
            # (the owner's own number is the customer's phone, revealed through its audited read).
            note=mask_phones(data["note"]) if data.get("note") else data.get("note"),
            overdue=previous == LeadStatus.NEW and lead.contact_due_at <= now,
        ),
    )
    _notify_owner(session, lead, now)
    return lead


def _notify_owner(session: Session, lead: Lead, now: datetime) -> None:
    """A subscribe message to the owner (sent only with their grant; see backend/notices)."""
    from backend.notices.service import send_subscribe, thing

    send_subscribe(
        session,
        customer_id=lead.customer_id,
        template_setting="SUBSCRIBE_TEMPLATE_LEAD_UPDATE",
        dedup_key=f"lead:{lead.id}:v{lead.version}",
        data={
            "thing1": {"value": thing(TYPE_LABELS[lead.type])},
            "phrase2": {"value": STATUS_LABELS[lead.status]},
            "time3": {"value": now.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")},
        },
        page=f"pages/leads/detail?id={lead.id}",
        store_id=lead.store_id,
        advisor_id=lead.advisor_id,
    )


def reassign(session: Session, actor: StaffActor, lead_id: int, advisor_id: int, now: datetime | None = None) -> Lead:
    now = now or utcnow()
    if not actor.has_role(*MANAGER_ROLES):
        raise AppError("auth.forbidden", 403)
    lead = _locked_lead(session, actor, lead_id)
    if lead.status in CLOSED_STATUSES:
        raise AppError("lead.closed", 409)
    staff = session.get(Staff, advisor_id)
    if staff is None or staff.org_unit_id != lead.store_id or not lock_active(session, staff.id):
        raise AppError(
            "lead.advisor_invalid", 422, errors={"json": {"advisor_id": ["active staff of the lead's store"]}}
        )
    if lead.advisor_id == staff.id:
        return lead
    previous = lead.advisor_id
    lead.advisor_id = staff.id
    lead.routed_by = "manual"
    lead.version += 1
    lead.updated_at = now
    session.flush()
    write_audit(session, actor, "lead.reassigned", "lead", lead.id, {"from": previous, "to": staff.id})
    customer = session.get(Customer, lead.customer_id)
    _assigned(
        session,
        lead,
        staff,
        customer,
        by="manager",
        routed_by="manual",
        now=now,
        actor_id=actor.staff_id,
        previous=previous,
    )
    return lead


def move_open_leads(
    session: Session,
    from_staff: Staff | None,
    to_staff: Staff | None,
    now: datetime,
    customer_ids: list[int] | None,
    roles: set[str] | None,
) -> int:
    """`backend.org.open_work`'s mover: the open leads `from_staff` holds go to `to_staff` when
    they may take them, else to the store's routing again (the customer's active advisor of the
    role, the next in turn, a manager). A lead the routing gives back to `from_staff` (an advisor
    on duty, handing a customer to another store) stays theirs."""
    stmt = select(Lead.id).where(held_by(Lead.advisor_id, from_staff), Lead.status.not_in(CLOSED_STATUSES))
    if customer_ids is not None:
        stmt = stmt.where(Lead.customer_id.in_(customer_ids))
    if roles is not None:
        stmt = stmt.where(Lead.routed_role.in_(roles))
    moved = 0
    for lead_id, customer_id in session.execute(stmt.add_columns(Lead.customer_id).order_by(Lead.id)).all():
        # The lock order of a lead's writers: the customer (shared, as its touchpoint takes it;
        # an owner submitting holds it exclusively, then the store's routing lock), the lead.
        live_customer_id(session, customer_id)
        lead = session.scalars(
            select(Lead)
            .where(Lead.id == lead_id, held_by(Lead.advisor_id, from_staff), Lead.status.not_in(CLOSED_STATUSES))
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one_or_none()
        if lead is None:  # closed or moved meanwhile
            continue
        role = ROLE_BY_TYPE[lead.type]
        if may_take(to_staff, lead.store_id, {role.value}):
            assert to_staff is not None
            target, routed_by = to_staff, "handover"
        elif from_staff is None or may_take(from_staff, lead.store_id, {role.value, Role.STORE_MANAGER.value}):
            # (a store's manager keeps a lead routed to them when no advisor of its role was left)
            continue  # still theirs to hold (handed to someone who cannot take it, or not moved)
        else:
            target, routed_by = route(session, lead.customer_id, lead.store_id, role)
        previous = from_staff.id if from_staff is not None else None
        if target is not None and target.id == previous:
            continue
        lead.advisor_id = target.id if target is not None else None
        lead.routed_by = routed_by
        lead.version += 1
        lead.updated_at = now
        session.flush()
        by = "handover" if to_staff is not None else "departure"
        if target is not None:
            customer = session.get(Customer, lead.customer_id)
            _assigned(session, lead, target, customer, by=by, routed_by=routed_by, now=now, previous=previous)
        else:  # nobody left to route to: the store's managers see it unassigned in their list
            record(
                session,
                customer_id=lead.customer_id,
                kind=Kind.LEAD_ASSIGNED,
                channel=Channel.SYSTEM,
                source=SOURCE,
                source_ref=f"lead:{lead.id}:v{lead.version}:assigned",
                occurred_at=now,
                advisor_id=None,
                store_id=lead.store_id,
                payload=_payload(lead, advisor_id=None, previous_advisor_id=previous, by=by, routed_by="none"),
            )
        moved += 1
    return moved


register_open_work("leads", move_open_leads)


# ---------------------------------------------------------------------------------------------
# SLA escalation


def escalate(session: Session, lead_id: int, now: datetime | None = None) -> bool:
    """Escalate one overdue lead to its store managers; True only for the call that did it."""
    now = now or utcnow()
    done = session.execute(
        update(Lead)
        .where(
            Lead.id == lead_id,
            Lead.status == LeadStatus.NEW,
            Lead.escalated_at.is_(None),
            Lead.contact_due_at <= now,
        )
        .values(escalated_at=now)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:
        return False
    lead = session.scalars(select(Lead).where(Lead.id == lead_id).execution_options(populate_existing=True)).one()
    managers = managers_of_store(session, lead.store_id)
    record(
        session,
        customer_id=lead.customer_id,
        kind=Kind.LEAD_ESCALATED,
        channel=Channel.SYSTEM,
        source=SOURCE,
        source_ref=f"lead:{lead.id}:escalated",
        occurred_at=now,
        advisor_id=lead.advisor_id,
        store_id=lead.store_id,
        payload=_payload(lead, due_at=lead.contact_due_at.isoformat(), managers=[m.id for m in managers]),
    )
    advisor = session.get(Staff, lead.advisor_id) if lead.advisor_id else None
    customer = session.get(Customer, lead.customer_id)
    minutes = int((now - lead.contact_due_at).total_seconds() // 60)
    text = (
        f"线索超时未跟进：{TYPE_LABELS[lead.type]}（客户「{(customer.name if customer else None) or '车主'}」），"
        f"顾问 {advisor.name if advisor else '未分配'} 已超时 {minutes} 分钟未联系。"
    )
    notify.notify_staff(
        session,
        notify.NotifyKind.NEW_LEAD,
        f"lead:{lead.id}:escalated",
        managers,
        card=notify.Card("线索超时提醒", text, notify.page_link(f"/workbench/leads/{lead.id}")),
    )
    return True


def escalate_due(session: Session, now: datetime | None = None, limit: int = 500) -> int:
    """The sweep: every lead past its SLA not yet escalated (backs up the per-lead delayed job)."""
    now = now or utcnow()
    ids = session.scalars(
        select(Lead.id)
        .where(Lead.status == LeadStatus.NEW, Lead.escalated_at.is_(None), Lead.contact_due_at <= now)
        .order_by(Lead.id)
        .limit(limit)
    ).all()
    return sum(1 for lead_id in ids if escalate(session, lead_id, now))


# ---------------------------------------------------------------------------------------------
# Listings (staff)

LISTING_ROLES = ("sales_advisor", "store_manager", "region_manager", "division_manager", "group_admin", "marketing")


def _listing_store(actor: StaffActor, store_id: int | None) -> int:
    if actor.scope.own_customers_only:  # an advisor lists cars of their own store
        if store_id not in (None, actor.org_unit_id):
            raise AppError("listing.store_invalid", 422, errors={"json": {"store_id": ["your store"]}})
        return actor.org_unit_id
    if store_id is None or (actor.scope.store_ids is not None and store_id not in actor.scope.store_ids):
        raise AppError("listing.store_invalid", 422, errors={"json": {"store_id": ["a store in your scope"]}})
    return store_id


def create_listing(session: Session, actor: StaffActor, data: dict[str, Any]) -> Listing:
    if not actor.has_role(*LISTING_ROLES):
        raise AppError("auth.forbidden", 403)
    store_id = _listing_store(actor, data.pop("store_id", None))
    unit = session.get(OrgUnit, store_id)
    if unit is None or unit.kind != OrgKind.STORE:
        raise AppError("listing.store_invalid", 422, errors={"json": {"store_id": ["a store"]}})
    listing = Listing(**data, store_id=store_id, created_by_staff_id=actor.staff_id)
    session.add(listing)
    session.flush()
    write_audit(session, actor, "listing.created", "vehicle_listing", listing.id)
    return listing


def update_listing(session: Session, actor: StaffActor, listing: Listing, data: dict[str, Any]) -> Listing:
    if not actor.has_role(*LISTING_ROLES):
        raise AppError("auth.forbidden", 403)
    for key, value in data.items():
        setattr(listing, key, value)
    session.flush()
    changes = {k: (v.value if isinstance(v, ListingStatus) else v) for k, v in data.items() if k != "photos"}
    write_audit(session, actor, "listing.updated", "vehicle_listing", listing.id, changes)
    return listing


def withdraw_listing(session: Session, actor: StaffActor, listing: Listing) -> Listing:
    return update_listing(session, actor, listing, {"status": ListingStatus.WITHDRAWN})
