"""Data scopes: the one helper that applies an actor's scope to a query.

Each scoped resource registers a rule: a function from the staff actor to a WHERE clause
on the resource's model. `scope_query` adds it to a select; `get_scoped_or_404` fetches one
object through it. An object outside the scope is answered exactly like a missing one (404),
so ids cannot be probed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, false, select, true
from sqlalchemy.orm import Session

from backend.org.models import ADVISOR_ROLES, OrgKind, OrgUnit, Role, Staff
from backend.platform.actors import DataScope, StaffActor
from backend.platform.errors import AppError

T = TypeVar("T")


@dataclass(frozen=True)
class ScopeRule:
    model: type
    where: Callable[[StaffActor], ColumnElement[bool]]
    not_found_code: str


_RULES: dict[str, ScopeRule] = {}


def register_scope(
    resource: str, model: type, where: Callable[[StaffActor], ColumnElement[bool]], not_found_code: str
) -> None:
    _RULES[resource] = ScopeRule(model, where, not_found_code)


def scope_rule(resource: str) -> ScopeRule:
    return _RULES[resource]


def scoped_resources() -> list[str]:
    return sorted(_RULES)


def scope_query(stmt: Select, actor: StaffActor, resource: str) -> Select:
    return stmt.where(_RULES[resource].where(actor))


def get_scoped_or_404(session: Session, actor: StaffActor, resource: str, object_id: Any) -> Any:
    rule = _RULES[resource]
    pk = rule.model.__mapper__.primary_key[0]
    obj = session.scalars(select(rule.model).where(pk == object_id).where(rule.where(actor))).one_or_none()
    if obj is None:
        raise AppError(rule.not_found_code, 404)
    return obj


def ensure_in_scope(session: Session, actor: StaffActor, resource: str, object_id: Any) -> None:
    """Like `get_scoped_or_404` when the view needs only the decision, not the object: one
    primary-key probe, no row or relationship loading (the timeline's hot path)."""
    rule = _RULES[resource]
    pk = rule.model.__mapper__.primary_key[0]
    if session.scalar(select(pk).where(pk == object_id).where(rule.where(actor))) is None:
        raise AppError(rule.not_found_code, 404)


# ---------------------------------------------------------------------------------------------
# Computing an actor's scope from roles and place in the tree


def subtree_store_ids(session: Session, org_unit_id: int, kind: OrgKind, path: str) -> frozenset[int]:
    """The stores at or below a unit: the store itself, or one indexed prefix match on `path`."""
    if kind == OrgKind.STORE:
        return frozenset({org_unit_id})
    rows = session.scalars(
        select(OrgUnit.id).where(OrgUnit.path.startswith(path, autoescape=True), OrgUnit.kind == OrgKind.STORE)
    ).all()
    return frozenset(rows)


def compute_scope(
    session: Session, roles: set[Role] | frozenset[Role], org_unit_id: int, kind: OrgKind, path: str
) -> DataScope:
    if Role.GROUP_ADMIN in roles:
        return DataScope(store_ids=None, own_customers_only=False)
    if roles & {Role.STORE_MANAGER, Role.REGION_MANAGER, Role.DIVISION_MANAGER, Role.MARKETING}:
        return DataScope(store_ids=subtree_store_ids(session, org_unit_id, kind, path), own_customers_only=False)
    if roles & ADVISOR_ROLES:
        return DataScope(store_ids=frozenset(), own_customers_only=True)
    return DataScope(store_ids=frozenset(), own_customers_only=False)  # no role: sees nothing


def store_filter(actor: StaffActor, column: Any) -> ColumnElement[bool]:
    """WHERE clause limiting a store id column to the actor's stores."""
    if actor.scope.store_ids is None:
        return true()
    if not actor.scope.store_ids:
        return false()
    return column.in_(sorted(actor.scope.store_ids))


def _org_unit_rule(actor: StaffActor) -> ColumnElement[bool]:
    if actor.scope.store_ids is None:
        return true()
    if actor.scope.own_customers_only:
        return OrgUnit.id == actor.org_unit_id
    return store_filter(actor, OrgUnit.id)


def _staff_rule(actor: StaffActor) -> ColumnElement[bool]:
    if actor.scope.store_ids is None:
        return true()
    if actor.scope.own_customers_only:
        return Staff.id == actor.staff_id
    return (Staff.id == actor.staff_id) | store_filter(actor, Staff.org_unit_id)


register_scope("org_unit", OrgUnit, _org_unit_rule, "org.not_found")
register_scope("staff", Staff, _staff_rule, "staff.not_found")


def acting_store(session: Session, actor: StaffActor, store_id: int | None, required_code: str, wrong_code: str) -> int:
    """The store an in-store action (a write-off, a check-in) happens at: staff working at a store
    act there; staff above stores name a store of their scope (else `required_code` 422); a store
    outside the scope is refused with `wrong_code` 403."""
    unit = session.get(OrgUnit, actor.org_unit_id)
    if store_id is None:
        if unit is None or unit.kind != OrgKind.STORE:
            raise AppError(required_code, 422, errors={"json": {"store_id": ["required"]}})
        return unit.id
    if unit is not None and unit.kind == OrgKind.STORE and unit.id == store_id:
        return store_id
    if actor.scope.store_ids is None or store_id in actor.scope.store_ids:
        return store_id
    raise AppError(wrong_code, 403)
