"""Customers: identity stitching, owner login, phone binding, profile and cars, merges.

A person reaches us as a mini-program openid, a unionid, a WeCom external_userid and a phone
number. Each identifier is a row of `customer_identity` with a unique (kind, value), so the
same identifier can never point at two customers, and finding a customer by any of them is
one indexed lookup.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import UniqueConstraint, exists, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.customers.models import Car, Customer, CustomerAdvisor, CustomerIdentity, CustomerMerge, IdentityKind
from backend.customers.vin import normalize_vin, vin_problem
from backend.org.scope import get_scoped_or_404, register_scope, store_filter
from backend.platform.actors import MemberActor, StaffActor, SystemActor
from backend.platform.audit import write_audit
from backend.platform.db import Base, DuplicateKey, unique_savepoint, utcnow
from backend.platform.errors import AppError, upstream_error
from backend.platform.logs import mask_phone
from backend.platform.pii import PhoneInvalid, PhoneVault, normalize_phone, sealed_text_field
from backend.platform.ports import MiniProgramGateway, UpstreamError
from backend.platform.tokens import revoke_sessions_since
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import live_customer_id, rebuild_profiles, record

# ---------------------------------------------------------------------------------------------
# Scope: advisors see the customers assigned to them, managers the customers of their stores.


def _customer_rule(actor: StaffActor) -> Any:
    not_merged = Customer.merged_into_id.is_(None)
    if actor.scope.own_customers_only:
        mine = exists().where(CustomerAdvisor.customer_id == Customer.id, CustomerAdvisor.staff_id == actor.staff_id)
        return not_merged & mine
    if actor.scope.store_ids is None:
        return not_merged & true()
    return not_merged & store_filter(actor, Customer.home_store_id)


def _customer_merge_rule(actor: StaffActor) -> Any:
    # A merge is visible to whoever sees its surviving customer.
    return exists().where(Customer.id == CustomerMerge.target_id, _customer_rule(actor))


register_scope("customer", Customer, _customer_rule, "customer.not_found")
register_scope("customer_merge", CustomerMerge, _customer_merge_rule, "customer.merge_not_found")


def vault() -> PhoneVault:
    return current_app.extensions["dealerloop.phone_vault"]


def masked_phone(customer: Customer, phone_vault: PhoneVault | None = None) -> str | None:
    if customer.phone_encrypted is None:
        return None
    return mask_phone((phone_vault or vault()).decrypt(customer.phone_encrypted))


# ---------------------------------------------------------------------------------------------
# Identity


def find_by_identity(session: Session, kind: IdentityKind, value: str) -> Customer | None:
    customer = session.scalars(
        select(Customer).join(CustomerIdentity).where(CustomerIdentity.kind == kind, CustomerIdentity.value == value)
    ).one_or_none()
    return _follow_merges(session, customer)


def _follow_merges(session: Session, customer: Customer | None) -> Customer | None:
    seen = 0
    while customer is not None and customer.merged_into_id is not None and seen < 10:
        customer = session.get(Customer, customer.merged_into_id)
        seen += 1
    return customer


def live_customer(session: Session, customer_id: int, *, exclusive: bool = False) -> Customer:
    """The customer a writer about to attach rows to `customer_id` must use: the survivor, read
    after a merge in progress commits (find_by_identity reads without a lock, and a request's
    actor is resolved before, so either can still name the source of a merge that commits a
    moment later). `exclusive`: the survivor's row stays locked FOR UPDATE until commit (two
    writes of one member then wait for each other)."""
    live_id = live_customer_id(session, customer_id, exclusive=exclusive)
    # Re-read what moved or is now locked; the caller's own object (and its pending changes) is
    # left as it is otherwise.
    survivor = session.get(Customer, live_id, populate_existing=exclusive or live_id != customer_id)
    if survivor is None:
        raise AppError("member.not_found", 404)
    return survivor


def attach_identity(session: Session, customer: Customer, kind: IdentityKind, value: str) -> bool:
    """Link an identifier to a customer. False if it already belongs to someone (maybe them)."""
    customer_id = live_customer_id(session, customer.id)
    try:
        with unique_savepoint(session):
            session.add(CustomerIdentity(customer_id=customer_id, kind=kind, value=value))
    except DuplicateKey:
        return False
    session.expire(customer, ["identities"])
    return True


def attach_unionid(session: Session, customer: Customer, unionid: str, stitched_by: str) -> Customer:
    """Link a unionid to the customer; the customer who holds it from then on. When another
    customer holds it already and this one has none, both are the same WeChat user who arrived
    two ways (a member whose first login came before the open-platform binding, a WeCom contact
    stored before WeCom said who it is): stitched with the audited, reversible merge, the member
    (the customer with an openid) surviving. A merge staff reversed stays undone.

    The holder is looked up before anything is written: an identity insert takes a shared lock
    on its customer row (the foreign key), and two logins of the same person would then both
    hold it while the merge asks for the exclusive one (a deadlock)."""
    holder = find_by_identity(session, IdentityKind.UNIONID, unionid)
    if holder is None:
        if attach_identity(session, customer, IdentityKind.UNIONID, unionid):
            return customer
        holder = find_by_identity(session, IdentityKind.UNIONID, unionid)  # attached meanwhile
    if holder is None or holder.id == customer.id or customer.identity(IdentityKind.UNIONID) is not None:
        return customer
    source, target = (holder, customer) if customer.identity(IdentityKind.OPENID) is not None else (customer, holder)
    if _merge_was_reversed(session, source.id, target.id):
        return customer
    try:
        merge_customers(session, SystemActor(stitched_by), source.id, target.id, "same WeChat user (unionid)")
    except AppError as exc:
        if exc.code != "customer.merge_invalid":
            raise
        # A concurrent login or event of the same person merged them first (merge_customers
        # found them merged once it had their locks): the same outcome.
        return _follow_merges(session, session.get(Customer, customer.id, populate_existing=True)) or customer
    return target


def _merge_was_reversed(session: Session, source_id: int, target_id: int) -> bool:
    """A staff member undid this very merge: their decision stands over the automatic one."""
    return (
        session.scalar(
            select(CustomerMerge.id).where(
                CustomerMerge.source_id == source_id,
                CustomerMerge.target_id == target_id,
                CustomerMerge.reversed_at.is_not(None),
            )
        )
        is not None
    )


def member_customer(session: Session, actor: MemberActor) -> Customer:
    """The signed-in owner's customer row (404 member.not_found once it is gone)."""
    customer = session.get(Customer, actor.customer_id)
    if customer is None:
        raise AppError("member.not_found", 404)
    return customer


SESSION_GENERATION_CLAIM = "session_gen"


def owner_token_claims(session: Session, customer_id: int) -> dict[str, int]:
    """What an owner's access token carries besides its subject: the customer's session
    generation now (a token from before it is raised no longer acts as them).

    Read from the row, not the session's object: a login that loaded the customer before a
    merge reversal committed (and waited for it) would otherwise sign the generation the
    reversal has just raised, and its first request would be refused as revoked."""
    generation = session.scalar(select(Customer.session_generation).where(Customer.id == customer_id))
    return {SESSION_GENERATION_CLAIM: generation if generation is not None else 0}


def load_member_actor(session: Session, customer_id: int, claims: dict[str, Any]) -> MemberActor:
    """The member a verified owner token acts as: the survivor of its subject's merges, unless
    the token is of a session generation the subject has since ended (checked on the row read
    here anyway, so it holds whether or not Redis is up)."""
    subject = session.get(Customer, customer_id)
    if subject is None:
        raise AppError("auth.token_invalid", 401)
    generation = claims.get(SESSION_GENERATION_CLAIM, 0)  # tokens from before the claim: 0
    if type(generation) is not int or generation < subject.session_generation:
        raise AppError("auth.session_revoked", 401)
    customer = _follow_merges(session, subject)
    if customer is None:
        raise AppError("auth.token_invalid", 401)
    return MemberActor(customer_id=customer.id)


@dataclass
class LoginResult:
    customer: Customer
    created: bool


def login_code_error(exc: UpstreamError, rejected_code: str, rejected_status: int = 401) -> AppError:
    """A login code WeChat refuses (invalid, used, expired) is the client's fault, not ours."""
    if exc.reason == "rejected" and exc.errcode in (40029, 40163, 40226, 41008):
        return AppError(rejected_code, rejected_status, errors={"upstream": {"errcode": exc.errcode}})
    return upstream_error(exc)


def login_member(session: Session, gateway: MiniProgramGateway, js_code: str) -> LoginResult:
    try:
        wx = gateway.code_to_session(js_code)
    except UpstreamError as exc:
        raise login_code_error(exc, "auth.login_code_invalid") from exc

    by_openid = find_by_identity(session, IdentityKind.OPENID, wx.openid)
    customer = by_openid
    if customer is None and wx.unionid:
        customer = find_by_identity(session, IdentityKind.UNIONID, wx.unionid)
    created = False
    if customer is None:
        customer, created = _create_member(session, wx.openid, wx.unionid)
    else:
        if by_openid is None:  # found by unionid: a first login from this mini-program
            attach_identity(session, customer, IdentityKind.OPENID, wx.openid)
        if wx.unionid:
            customer = attach_unionid(session, customer, wx.unionid, "member_login")
        # The openid was read without a lock: a merge or its reversal holding this customer's row
        # may be moving it right now. Wait for it (the lock order of merges: customers first) and
        # look again, or a login racing a reversal would open a session of the survivor that the
        # reversal's revocation, already run, never sees.
        live_customer_id(session, customer.id)
        customer = find_by_identity(session, IdentityKind.OPENID, wx.openid) or customer
    if created:
        record(
            session,
            customer_id=customer.id,
            kind=Kind.MEMBER_REGISTERED,
            channel=Channel.MINIPROGRAM,
            source="owner_login",
            source_ref=f"member_registered:{customer.id}",
        )
        from backend.campaigns.service import on_action

        on_action(session, customer.id, "registration", ref=f"customer:{customer.id}")
        from backend.offers.models import AutoIssue
        from backend.offers.service import auto_issue

        auto_issue(session, customer.id, AutoIssue.REGISTRATION, ref="member")
    return LoginResult(customer, created)


def _create_member(session: Session, openid: str, unionid: str | None) -> tuple[Customer, bool]:
    """Two first logins of the same person can race; the unique identity decides who wins."""
    try:
        with unique_savepoint(session):
            customer = Customer(acquisition_channel="miniprogram")
            session.add(customer)
            session.flush()
            session.add(CustomerIdentity(customer_id=customer.id, kind=IdentityKind.OPENID, value=openid))
            session.flush()
    except DuplicateKey:
        existing = find_by_identity(session, IdentityKind.OPENID, openid)
        if existing is None:
            raise
        return existing, False
    if unionid and not attach_identity(session, customer, IdentityKind.UNIONID, unionid):
        # The unionid already belongs to a customer who arrived another way (e.g. WeCom): that is
        # the same person. Keep the older row and drop the empty one we just made.
        other = find_by_identity(session, IdentityKind.UNIONID, unionid)
        assert other is not None
        session.execute(
            update(CustomerIdentity).where(CustomerIdentity.customer_id == customer.id).values(customer_id=other.id)
        )
        session.delete(customer)
        session.flush()
        return other, False
    return customer, True


# ---------------------------------------------------------------------------------------------
# Phone


def set_phone(session: Session, customer: Customer, phone: str, phone_vault: PhoneVault) -> None:
    """Store the phone encrypted and index it; raises phone_taken if it identifies someone else."""
    normalized = normalize_phone(phone)
    index = phone_vault.blind_index(normalized)
    owner = find_by_identity(session, IdentityKind.PHONE, index)
    if owner is not None and owner.id != customer.id:
        raise AppError("member.phone_taken", 409)
    # Replace a previous phone identity of this customer.
    for ident in list(customer.identities):
        if ident.kind == IdentityKind.PHONE and ident.value != index:
            session.delete(ident)
    session.flush()
    if owner is None and not attach_identity(session, customer, IdentityKind.PHONE, index):
        raise AppError("member.phone_taken", 409)
    customer.phone_encrypted = phone_vault.encrypt(normalized)


def bind_phone(
    session: Session, actor: MemberActor, gateway: MiniProgramGateway, phone_vault: PhoneVault, phone_code: str
) -> Customer:
    customer = live_customer(session, actor.customer_id, exclusive=True)
    try:
        phone = gateway.get_phone_number(phone_code)
    except UpstreamError as exc:
        raise login_code_error(exc, "member.phone_code_invalid", 422) from exc
    try:
        normalized = normalize_phone(phone)
    except PhoneInvalid as exc:
        raise AppError("member.phone_code_invalid", 422) from exc
    other = find_by_identity(session, IdentityKind.PHONE, phone_vault.blind_index(normalized))
    if other is not None and other.id != customer.id:
        if other.identity(IdentityKind.OPENID) is not None:
            raise AppError("member.phone_taken", 409)
        # WeChat verified this number: the customer an advisor created with it (from WeCom or the
        # store) is this owner. Stitch them with an explicit, audited, reversible merge.
        merge_customers(session, SystemActor("phone_binding"), other.id, customer.id, "phone verified by WeChat")
    set_phone(session, customer, normalized, phone_vault)
    record(
        session,
        customer_id=customer.id,
        kind=Kind.PHONE_BOUND,
        channel=Channel.MINIPROGRAM,
        source="owner_app",
        source_ref=f"phone_bound:{customer.id}:{phone_vault.blind_index(normalized)[:16]}",
    )
    return customer


def check_phone_access(actor: StaffActor) -> None:
    """Full numbers are for the people who call customers: their advisors and store managers
    (and group admins). Region/division managers and marketing work on masked data."""
    if not (actor.scope.own_customers_only or actor.has_role("store_manager", "group_admin")):
        raise AppError("customer.phone_forbidden", 403)


def reveal_phone(session: Session, actor: StaffActor, customer: Customer, phone_vault: PhoneVault) -> str | None:
    """Full number for staff allowed to call the customer; every access is audited."""
    check_phone_access(actor)
    write_audit(session, actor, "customer.phone_revealed", "customer", customer.id)
    if customer.phone_encrypted is None:
        return None
    return phone_vault.decrypt(customer.phone_encrypted)


def reveal_sealed_text(
    session: Session, actor: StaffActor, kind: str, object_id: int, phone_vault: PhoneVault
) -> str | None:
    """Free text as it was typed, numbers in full (an advisor calls the owner back on the number
    written into a message): the object must be in the actor's scope (404 otherwise), the actor
    must have the right to full numbers, and the access is audited like a phone reveal."""
    field = sealed_text_field(kind)
    obj = get_scoped_or_404(session, actor, field.scope, object_id)
    check_phone_access(actor)
    write_audit(session, actor, "text.phone_revealed", kind, object_id)
    return phone_vault.open_text(getattr(obj, field.column), getattr(obj, f"{field.column}_sealed"))


def search_by_phone(session: Session, actor: StaffActor, phone_vault: PhoneVault, phone: str) -> list[int]:
    """Ids of the customers (any scope; the caller filters) whose phone is exactly this one."""
    check_phone_access(actor)
    try:
        index = phone_vault.blind_index(phone)
    except PhoneInvalid as exc:
        raise AppError("request.invalid", 422, errors={"json": {"phone": ["not a mobile number"]}}) from exc
    write_audit(session, actor, "customer.phone_searched", "phone", index[:16])
    ids = session.scalars(
        select(CustomerIdentity.customer_id).where(
            CustomerIdentity.kind == IdentityKind.PHONE, CustomerIdentity.value == index
        )
    ).all()
    return list(ids)


# ---------------------------------------------------------------------------------------------
# Profile and cars (owner side)

PROFILE_FIELDS = ("name", "gender", "birthday")


def update_profile(session: Session, actor: MemberActor, changes: dict[str, Any]) -> Customer:
    customer = live_customer(session, actor.customer_id, exclusive=True)  # the survivor of a merge meanwhile
    changed = {k: v for k, v in changes.items() if k in PROFILE_FIELDS and getattr(customer, k) != v}
    for key, value in changed.items():
        setattr(customer, key, value)
    if changed:
        session.flush()
        ref = f"profile_updated:{customer.id}:{customer.updated_at.timestamp()}"
        _owner_touch(session, actor, Kind.PROFILE_UPDATED, ref, {"fields": sorted(changed)})
    return customer


def member_car_or_404(session: Session, actor: MemberActor, car_id: int) -> Car:
    car = session.scalars(
        select(Car).where(Car.id == car_id, Car.customer_id == actor.customer_id, Car.removed_at.is_(None))
    ).one_or_none()
    if car is None:
        raise AppError("car.not_found", 404)
    return car


def list_member_cars(session: Session, actor: MemberActor) -> list[Car]:
    return list(
        session.scalars(
            select(Car).where(Car.customer_id == actor.customer_id, Car.removed_at.is_(None)).order_by(Car.id)
        )
    )


def _check_vin(vin: str) -> str:
    problem = vin_problem(vin)
    if problem:
        raise AppError("request.invalid", 422, errors={"json": {"vin": [problem]}})
    return normalize_vin(vin)


def add_car(session: Session, actor: MemberActor, data: dict[str, Any]) -> Car:
    vin = _check_vin(data["vin"])
    customer_id = live_customer_id(session, actor.customer_id)
    removed = session.scalars(
        select(Car).where(Car.vin == vin, Car.removed_at.is_not(None)).with_for_update()
    ).one_or_none()
    if removed is not None:
        # Removed by its owner (sold, scrapped): bound again, by them or by its next owner. The
        # row moves; the bookings, leads and consultations about it stay with their customers.
        car = removed
        for key, value in {**_CLEARED_CAR_FIELDS, **data, "vin": vin}.items():
            setattr(car, key, value)
        car.customer_id, car.removed_at = customer_id, None
        session.flush()
    else:
        car = Car(customer_id=customer_id, **{**data, "vin": vin})
        with _vin_unique(session):
            session.add(car)
    ref = f"car_bound:{car.id}" if removed is None else f"car_bound:{car.id}:{utcnow().timestamp()}"
    _owner_touch(session, actor, Kind.CAR_BOUND, ref, {"car_id": car.id, "brand": car.brand})
    from backend.campaigns.service import on_action

    on_action(session, car.customer_id, "car_bound", ref=f"car:{car.vin}")
    from backend.offers.models import AutoIssue
    from backend.offers.service import auto_issue

    auto_issue(session, car.customer_id, AutoIssue.CAR_BOUND, ref="first")  # once: the first car's
    return car


# What a car bound again does not inherit from its previous binding.
_CLEARED_CAR_FIELDS = {
    "plate": None,
    "brand": None,
    "series": None,
    "model": None,
    "purchase_date": None,
    "mileage_km": None,
    "last_service_date": None,
}


@contextmanager
def _vin_unique(session: Session) -> Iterator[None]:
    try:
        with unique_savepoint(session):
            yield
    except DuplicateKey as exc:
        raise AppError("car.vin_taken", 409) from exc


def _owner_touch(session: Session, actor: MemberActor, kind: Kind, ref: str, payload: dict | None = None) -> None:
    record(
        session,
        customer_id=actor.customer_id,
        kind=kind,
        channel=Channel.MINIPROGRAM,
        source="owner_app",
        source_ref=ref,
        payload=payload,
    )


def update_car(session: Session, actor: MemberActor, car_id: int, data: dict[str, Any]) -> Car:
    car = member_car_or_404(session, actor, car_id)
    if "vin" in data:
        data["vin"] = _check_vin(data["vin"])
    for key, value in data.items():
        setattr(car, key, value)
    with _vin_unique(session):
        session.flush()
    ref = f"car_updated:{car.id}:{utcnow().timestamp()}"
    _owner_touch(session, actor, Kind.CAR_UPDATED, ref, {"car_id": car.id, "fields": sorted(data)})
    return car


def remove_car(session: Session, actor: MemberActor, car_id: int) -> None:
    """Deleted when nothing was ever about it; else kept for the history, removed from the
    owner (sold, scrapped). A car with a booking still to come is refused: cancel it first."""
    from backend.booking.models import ACTIVE_STATUSES, Booking

    car = session.scalars(
        select(Car)
        .where(Car.id == car_id, Car.customer_id == actor.customer_id, Car.removed_at.is_(None))
        .with_for_update()
    ).one_or_none()
    if car is None:
        raise AppError("car.not_found", 404)
    if session.scalar(select(Booking.id).where(Booking.car_id == car.id, Booking.status.in_(ACTIVE_STATUSES)).limit(1)):
        raise AppError("car.has_active_booking", 409)
    now = utcnow()
    payload = {"car_id": car.id, "vin_last6": car.vin[-6:]}
    _owner_touch(session, actor, Kind.CAR_REMOVED, f"car_removed:{car.id}:{now.timestamp()}", payload)
    try:
        with session.begin_nested():
            session.delete(car)
    except IntegrityError:
        # Bookings, leads or consultations were about it (their foreign keys refuse the delete):
        # they keep it, the owner does not.
        session.refresh(car)
        car.removed_at = now
        session.flush()


# ---------------------------------------------------------------------------------------------
# Merges: explicit, audited, reversible. Every row pointing at the source customer moves to
# the target, and the ids moved are kept so that a reversal moves exactly those back.

# Projections are rebuilt, not moved; the merge record itself stays put.
_NOT_MOVED = {"customer_profile", "customer_kind_count", "customer_merge", "customer"}


def _customer_references() -> list[tuple[Any, Any]]:
    refs = []
    for table in Base.metadata.sorted_tables:
        if table.name in _NOT_MOVED:
            continue
        for fk in table.foreign_keys:
            if fk.column.table.name == "customer" and fk.column.name == "id":
                refs.append((table, fk.parent))
    return refs


def _kept_by_target(table: Any, column: Any, target_id: int) -> list[Any]:
    """Conditions leaving behind the source's rows that a unique key with the customer column
    would refuse next to the target's: the target's advisor for a role both have, its points
    account (the ledger moves and the books are re-summed), a sign-in of the same day, a
    redemption counter of the same item and period. They stay with the source (not in the
    merge record, so a reversal leaves them where they are)."""
    conditions = []
    for constraint in table.constraints:
        if not isinstance(constraint, UniqueConstraint) or column.name not in constraint.columns:
            continue
        theirs = table.alias()
        others = [c.name for c in constraint.columns if c.name != column.name]
        conditions.append(
            ~exists().where(theirs.c[column.name] == target_id, *(theirs.c[o] == table.c[o] for o in others))
        )
    return conditions


def _move_signup_holds(session: Session, moved: dict[str, list[int]], source_id: int, target_id: int) -> None:
    """An event sign-up names its holder a second time, outside the foreign key
    (`active_customer_id`, under the one-active-sign-up-per-event key): the moved sign-ups'
    holds follow them, or the survivor would not see them and could take a second seat. Where
    the target holds one for the same event already, the source's keeps its old holder (its
    seat stays taken; the key allows no second). Recorded, so the reversal hands them back."""
    regs = Base.metadata.tables["event_registration"]
    if not (ids := moved.get("event_registration.customer_id")):
        return
    theirs = regs.alias()
    holds = list(
        session.scalars(
            select(regs.c.id).where(
                regs.c.id.in_(ids),
                regs.c.active_customer_id == source_id,
                ~exists().where(theirs.c.event_id == regs.c.event_id, theirs.c.active_customer_id == target_id),
            )
        )
    )
    if holds:
        session.execute(update(regs).where(regs.c.id.in_(holds)).values(active_customer_id=target_id))
        moved["event_registration.active_customer_id"] = holds


def _rebuild_points(session: Session, customer_ids: list[int]) -> None:
    from backend.points.service import rebuild_accounts

    rebuild_accounts(session, customer_ids)


def _lock_customers(session: Session, ids: set[int]) -> dict[int, Customer]:
    """Lock customer rows in id order (no deadlock between two merges) and re-read them."""
    rows = session.scalars(
        select(Customer)
        .where(Customer.id.in_(sorted(ids)))
        .order_by(Customer.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {c.id: c for c in rows}


def merge_customers(
    session: Session, actor: StaffActor | SystemActor, source_id: int, target_id: int, reason: str
) -> CustomerMerge:
    if source_id == target_id:
        raise AppError("customer.merge_invalid", 422, errors={"json": {"source_id": ["same as target"]}})
    locked = _lock_customers(session, {source_id, target_id})
    source, target = locked.get(source_id), locked.get(target_id)
    if source is None or target is None:
        raise AppError("customer.not_found", 404)
    if source.merged_into_id is not None or target.merged_into_id is not None:
        raise AppError("customer.merge_invalid", 422, errors={"json": {"_schema": ["already merged"]}})

    moved: dict[str, list[int]] = {}
    for table, column in _customer_references():
        stmt = select(table.c.id).where(column == source_id, *_kept_by_target(table, column, target_id))
        ids = list(session.scalars(stmt))
        if ids:
            session.execute(update(table).where(table.c.id.in_(ids)).values({column.name: target_id}))
            moved[f"{table.name}.{column.name}"] = ids
    _move_signup_holds(session, moved, source_id, target_id)
    if source.phone_encrypted is not None and target.phone_encrypted is None:
        target.phone_encrypted = source.phone_encrypted
        moved["customer.phone"] = [source.id]
    for attr in ("name", "birthday", "home_store_id"):
        if getattr(target, attr) is None and getattr(source, attr) is not None:
            setattr(target, attr, getattr(source, attr))
            moved.setdefault("customer.filled", []).append(attr)  # type: ignore[arg-type]
    source.merged_into_id = target_id
    merge = CustomerMerge(
        source_id=source_id,
        target_id=target_id,
        reason=reason,
        merged_by_staff_id=actor.staff_id if isinstance(actor, StaffActor) else None,
        moved=moved,
    )
    session.add(merge)
    session.flush()
    session.expire_all()
    rebuild_profiles(session, [source_id, target_id])
    _rebuild_points(session, [source_id, target_id])
    write_audit(
        session,
        actor,
        "customer.merged",
        "customer",
        target_id,
        {"merge_id": merge.id, "source_id": source_id, "reason": reason},
    )
    record(
        session,
        customer_id=target_id,
        kind=Kind.CUSTOMER_MERGED,
        channel=Channel.SYSTEM,
        source="merge",
        source_ref=f"customer_merged:{merge.id}",
        payload={"source_id": source_id, "reason": reason},
    )
    return merge


def reverse_merge(session: Session, actor: StaffActor, merge: CustomerMerge) -> CustomerMerge:
    # Claim the reversal with a conditional update: of two concurrent reversals one wins.
    claimed = session.execute(
        update(CustomerMerge)
        .where(CustomerMerge.id == merge.id, CustomerMerge.reversed_at.is_(None))
        .values(reversed_at=utcnow(), reversed_by_staff_id=actor.staff_id)
    ).rowcount
    if claimed != 1:
        raise AppError("customer.merge_already_reversed", 409)
    session.refresh(merge)
    locked = _lock_customers(session, {merge.source_id, merge.target_id})
    by_id = locked
    source, target = by_id[merge.source_id], by_id[merge.target_id]
    tables = {t.name: t for t in Base.metadata.sorted_tables}
    for key, ids in merge.moved.items():
        table_name, _, column_name = key.partition(".")
        if table_name == "customer":
            continue
        table = tables[table_name]
        session.execute(
            update(table)
            .where(table.c.id.in_(ids), table.c[column_name] == merge.target_id)
            .values({column_name: merge.source_id})
        )
    if "customer.phone" in merge.moved:
        target.phone_encrypted = None
    for attr in merge.moved.get("customer.filled", []):
        setattr(target, str(attr), None)
    source.merged_into_id = None
    # An owner who signed in while merged holds the survivor's tokens: a device of the member
    # split off again would go on acting as the survivor. The sessions opened since the merge
    # end (the mini-program signs in again, silently), and so do the survivor's access tokens
    # issued until now (auth.session_revoked; the survivor's own sessions from before the merge
    # stay, so its devices refresh). Access tokens name no session, so all of them go.
    session.execute(revoke_sessions_since("owner", merge.target_id, merge.merged_at))
    target.session_generation += 1
    session.flush()
    session.expire_all()
    rebuild_profiles(session, [merge.source_id, merge.target_id])
    _rebuild_points(session, [merge.source_id, merge.target_id])
    write_audit(session, actor, "customer.merge_reversed", "customer", merge.target_id, {"merge_id": merge.id})
    record(
        session,
        customer_id=merge.target_id,
        kind=Kind.CUSTOMER_UNMERGED,
        channel=Channel.SYSTEM,
        source="merge",
        source_ref=f"customer_unmerged:{merge.id}",
        payload={"source_id": merge.source_id},
    )
    return merge
