"""Segments: saved customer filters, their validation, and the two functions other features use.

    segment_customer_ids(session, segment_id) -> Select   # SELECT customer.id ... (a subquery)
    customer_in_segment(session, segment_id, customer_id) -> bool

Both apply the segment's owner scope: customers whose home store lies in the owner unit's
subtree (a group-owned segment: every customer), never merged-away rows. An archived or
missing segment selects nobody.

Filter vocabulary (every field optional; fields are ANDed, values inside a list are ORed):

| field | value | meaning |
|---|---|---|
| `tags_any` / `tags_all` / `tags_none` | tag ids of the segment's corp | on the customer's friend relations there |
| `tiers` | tier codes (`standard`, `silver`, `gold`, `platinum`) | current tier |
| `lifecycle_stages` | `lead` … `lost` | lifecycle stage |
| `store_ids` | store ids | home store (within the owner's subtree) |
| `has_car` | bool | has (or has no) car bound |
| `car_brands` / `car_series` | strings | has a car of one of these brands / series |
| `last_visit_within_days` | 1..3650 | visited a store in the last N days |
| `no_visit_for_days` | 1..3650 | no store visit in the last N days (or never) |
| `points_min` / `points_max` | ≥ 0 | available points balance (no account: 0) |

An unknown field answers 422 `segments.unknown_filter`, a bad value 422 `segments.filter_invalid`.

Tag ids are a WeCom corp's own, and a dealer group may run a second corp's app (two corps can
even hold the same id). A segment therefore belongs to the corp of whoever set its filters
(`Segment.corp_id`, the staff member's corp): its tag ids must be in that corp's tag library
(422 `segments.tag_unknown` otherwise, the same answer for another corp's tag as for one that
exists nowhere) and it matches the tags of that corp's friend relations only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, false, func, select, true
from sqlalchemy.orm import Session, aliased

from backend.customers.models import Car, Customer, LifecycleStage
from backend.org.models import OrgKind, OrgUnit
from backend.org.scope import register_scope, scope_query
from backend.platform.actors import StaffActor
from backend.platform.audit import write_audit
from backend.platform.db import utcnow
from backend.platform.errors import AppError, register_messages
from backend.segments.models import Segment

register_messages(
    {
        "segments.not_found": ("客户分群不存在", "Segment not found"),
        "segments.unknown_filter": ("分群条件包含不支持的字段", "Unknown segment filter field"),
        "segments.filter_invalid": ("分群条件的取值无效", "Invalid segment filter value"),
        "segments.owner_out_of_scope": ("只能在自己的管理范围内创建分群", "The owner unit is outside your scope"),
        "segments.archived": ("该分群已归档", "This segment is archived"),
        "segments.tag_unknown": ("标签不在您企业微信的标签库中", "A tag id is not in your WeCom corp's tag library"),
    }
)

MAX_LIST = 200
TAG_FIELDS = ("tags_any", "tags_all", "tags_none")
DAYS_MAX = 3650


def _tier_codes() -> set[str]:
    from backend.points.tiers import TIERS

    return {t.code for t in TIERS}


def _strings(v: Any) -> bool:
    return isinstance(v, list) and 0 < len(v) <= MAX_LIST and all(isinstance(s, str) and 0 < len(s) <= 64 for s in v)


def _ints(v: Any) -> bool:
    return isinstance(v, list) and 0 < len(v) <= MAX_LIST and all(type(i) is int and i > 0 for i in v)


def _days(v: Any) -> bool:
    return type(v) is int and 1 <= v <= DAYS_MAX


def _points(v: Any) -> bool:
    return type(v) is int and 0 <= v <= 10**9


_CHECKS: dict[str, Any] = {
    "tags_any": _strings,
    "tags_all": _strings,
    "tags_none": _strings,
    "tiers": lambda v: _strings(v) and set(v) <= _tier_codes(),
    "lifecycle_stages": lambda v: _strings(v) and set(v) <= {s.value for s in LifecycleStage},
    "store_ids": _ints,
    "has_car": lambda v: isinstance(v, bool),
    "car_brands": _strings,
    "car_series": _strings,
    "last_visit_within_days": _days,
    "no_visit_for_days": _days,
    "points_min": _points,
    "points_max": _points,
}
FILTER_FIELDS = tuple(_CHECKS)


def validate_filters(filters: Any) -> dict[str, Any]:
    if not isinstance(filters, dict):
        raise AppError("segments.filter_invalid", 422, errors={"json": {"filters": ["an object"]}})
    unknown = sorted(k for k in filters if k not in _CHECKS)
    if unknown:
        raise AppError(
            "segments.unknown_filter",
            422,
            errors={"json": {"filters": {k: [f"unknown filter; known: {', '.join(FILTER_FIELDS)}"] for k in unknown}}},
        )
    bad = {k: ["invalid value"] for k, v in filters.items() if not _CHECKS[k](v)}
    lo, hi = filters.get("points_min"), filters.get("points_max")
    if not bad and lo is not None and hi is not None and lo > hi:
        bad["points_max"] = ["must be at least points_min"]
    if bad:
        raise AppError("segments.filter_invalid", 422, errors={"json": {"filters": bad}})
    return dict(filters)


def check_tags(session: Session, actor: StaffActor, filters: dict[str, Any]) -> str:
    """The actor's corp, once every tag id of the (validated) filters is a live tag of its
    library. Another corp's tag is refused like an unknown one: a different answer would tell
    that it exists there, and a count by it would read that corp's tagging."""
    from backend.wecom.service import actor_corp_id, known_tag_ids

    corp_id = actor_corp_id(session, actor)
    wanted = {tag for field in TAG_FIELDS for tag in filters.get(field, [])}
    known = known_tag_ids(session, corp_id, wanted)
    bad = {
        field: ["tag ids of your WeCom corp's tag library"]
        for field in TAG_FIELDS
        if any(tag not in known for tag in filters.get(field, []))
    }
    if bad:
        raise AppError("segments.tag_unknown", 422, errors={"json": {"filters": bad}})
    return corp_id


# ---------------------------------------------------------------------------------------------
# Building the SELECT


def _owner_clause(session: Session, owner_unit_id: int) -> ColumnElement[bool]:
    owner = session.get(OrgUnit, owner_unit_id)
    if owner is None:
        return false()
    if owner.kind == OrgKind.GROUP:
        return true()
    in_subtree = OrgUnit.path.startswith(owner.path, autoescape=True)
    stores = select(OrgUnit.id).where(in_subtree, OrgUnit.kind == OrgKind.STORE)
    return Customer.home_store_id.in_(stores)


def _tag_exists(tag_ids: list[str], corp_id: str | None) -> ColumnElement[bool]:
    from backend.wecom.models import WeComFriend, WeComFriendTag

    # corp_id None: a segment saved before segments had a corp (its tags match in any corp)
    in_corp = [WeComFriend.corp_id == corp_id] if corp_id is not None else []
    return exists().where(
        WeComFriend.customer_id == Customer.id,
        *in_corp,
        WeComFriendTag.friend_id == WeComFriend.id,
        WeComFriendTag.tag_id.in_(tag_ids),
    )


def _filter_clauses(filters: dict[str, Any], now: datetime, corp_id: str | None) -> list[ColumnElement[bool]]:
    from backend.points.models import PointsAccount
    from backend.touchpoints.models import CustomerProfile

    out: list[ColumnElement[bool]] = []
    f = filters
    if "tags_any" in f:
        out.append(_tag_exists(f["tags_any"], corp_id))
    for tag in f.get("tags_all", []):
        out.append(_tag_exists([tag], corp_id))
    if "tags_none" in f:
        out.append(~_tag_exists(f["tags_none"], corp_id))
    if "tiers" in f:
        out.append(Customer.tier.in_(f["tiers"]))
    if "lifecycle_stages" in f:
        out.append(Customer.lifecycle_stage.in_([LifecycleStage(s) for s in f["lifecycle_stages"]]))
    if "store_ids" in f:
        out.append(Customer.home_store_id.in_(f["store_ids"]))
    if "has_car" in f:
        has = exists().where(Car.customer_id == Customer.id, Car.removed_at.is_(None))
        out.append(has if f["has_car"] else ~has)
    if "car_brands" in f:
        out.append(
            exists().where(Car.customer_id == Customer.id, Car.removed_at.is_(None), Car.brand.in_(f["car_brands"]))
        )
    if "car_series" in f:
        out.append(
            exists().where(Car.customer_id == Customer.id, Car.removed_at.is_(None), Car.series.in_(f["car_series"]))
        )
    if "last_visit_within_days" in f:
        since = now - timedelta(days=f["last_visit_within_days"])
        out.append(
            exists().where(CustomerProfile.customer_id == Customer.id, CustomerProfile.last_store_visit_at >= since)
        )
    if "no_visit_for_days" in f:
        since = now - timedelta(days=f["no_visit_for_days"])
        out.append(
            ~exists().where(CustomerProfile.customer_id == Customer.id, CustomerProfile.last_store_visit_at >= since)
        )
    if "points_min" in f or "points_max" in f:
        balance = func.coalesce(
            select(PointsAccount.available).where(PointsAccount.customer_id == Customer.id).scalar_subquery(), 0
        )
        if "points_min" in f:
            out.append(balance >= f["points_min"])
        if "points_max" in f:
            out.append(balance <= f["points_max"])
    return out


def filter_customer_ids(
    session: Session,
    owner_unit_id: int,
    filters: dict[str, Any],
    now: datetime | None = None,
    corp_id: str | None = None,
) -> Select:
    """SELECT customer.id for filters under an owner unit, tags read in `corp_id`'s relations
    (what a saved segment evaluates to)."""
    return select(Customer.id).where(
        Customer.merged_into_id.is_(None),
        _owner_clause(session, owner_unit_id),
        *_filter_clauses(filters, now or utcnow(), corp_id),
    )


def segment_customer_ids(session: Session, segment_id: int, now: datetime | None = None) -> Select:
    """A SELECT of the ids of the customers in the segment, within its owner's scope. Use it as
    a subquery (`Customer.id.in_(segment_customer_ids(...))`) or execute it. An archived or
    unknown segment selects nobody."""
    segment = session.get(Segment, segment_id)
    if segment is None or segment.archived:
        return select(Customer.id).where(false())
    return filter_customer_ids(session, segment.owner_unit_id, segment.filters, now, segment.corp_id)


def customer_in_segment(session: Session, segment_id: int, customer_id: int, now: datetime | None = None) -> bool:
    stmt = segment_customer_ids(session, segment_id, now).where(Customer.id == customer_id).limit(1)
    return session.scalar(stmt) is not None


def count(session: Session, stmt: Select) -> int:
    return int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)


# ---------------------------------------------------------------------------------------------
# Scope: staff see the segments owned by units in their subtree (group admins: all). Advisors,
# whose scope is their own customers, see none (a count over a store would leak its size).


def _segment_rule(actor: StaffActor) -> ColumnElement[bool]:
    if actor.scope.store_ids is None:
        return true()
    if actor.scope.own_customers_only or not actor.scope.store_ids:
        return false()
    owner, me = aliased(OrgUnit), aliased(OrgUnit)
    return exists().where(owner.id == Segment.owner_unit_id, me.id == actor.org_unit_id, owner.path.startswith(me.path))


register_scope("segment", Segment, _segment_rule, "segments.not_found")


def check_segment_in_scope(session: Session, actor: StaffActor, segment_id: int | None, field: str, code: str) -> None:
    """A segment named in a body (an event's or a coupon's audience, an earning rule's target)
    must be active and in the actor's scope: another unit's segment would run its filters and
    tell its members apart. Refused like an unknown one, 422 on `field`."""
    if segment_id is None:
        return
    stmt = select(Segment.id).where(Segment.id == segment_id, Segment.archived.is_(False))
    if session.scalar(scope_query(stmt, actor, "segment")) is None:
        raise AppError(code, 422, errors={"json": {field: ["a segment in your scope"]}})


def check_owner_unit(session: Session, actor: StaffActor, owner_unit_id: int | None) -> int:
    """The owner unit defaults to the actor's own unit; another one must be in the actor's subtree."""
    unit_id = owner_unit_id if owner_unit_id is not None else actor.org_unit_id
    unit = session.get(OrgUnit, unit_id)
    mine = session.get(OrgUnit, actor.org_unit_id)
    ok = unit is not None and (
        actor.scope.store_ids is None
        or (not actor.scope.own_customers_only and mine is not None and unit.path.startswith(mine.path))
    )
    if not ok:
        raise AppError("segments.owner_out_of_scope", 422, errors={"json": {"owner_unit_id": ["a unit in your scope"]}})
    return unit_id


def preview_count(session: Session, actor: StaffActor, owner_unit_id: int | None, filters: Any) -> int:
    """How many customers the filters select now under the owner unit (before saving them)."""
    owner = check_owner_unit(session, actor, owner_unit_id)
    valid = validate_filters(filters)
    corp_id = check_tags(session, actor, valid)
    return count(session, filter_customer_ids(session, owner, valid, corp_id=corp_id))


def create(session: Session, actor: StaffActor, data: dict[str, Any]) -> Segment:
    owner = check_owner_unit(session, actor, data.get("owner_unit_id"))
    filters = validate_filters(data.get("filters", {}))
    segment = Segment(
        name=data["name"],
        description=data.get("description"),
        owner_unit_id=owner,
        corp_id=check_tags(session, actor, filters),
        filters=filters,
        created_by=actor.staff_id,
    )
    session.add(segment)
    session.flush()
    write_audit(session, actor, "segment.created", "segment", segment.id, {"filters": segment.filters})
    return segment


def update_segment(session: Session, actor: StaffActor, segment: Segment, data: dict[str, Any]) -> Segment:
    if segment.archived:
        raise AppError("segments.archived", 409)
    if "filters" in data:
        filters = validate_filters(data["filters"])
        # the tags are now those of the corp of whoever set them
        segment.corp_id = check_tags(session, actor, filters)
        segment.filters = filters
    for key in ("name", "description"):
        if key in data:
            setattr(segment, key, data[key])
    session.flush()
    write_audit(session, actor, "segment.updated", "segment", segment.id, data)
    return segment


def archive(session: Session, actor: StaffActor, segment: Segment) -> Segment:
    if not segment.archived:
        segment.archived = True
        session.flush()
        write_audit(session, actor, "segment.archived", "segment", segment.id)
    return segment
