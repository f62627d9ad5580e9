"""Who is acting. Services take the actor explicitly; they never read the request.

A staff actor carries its data scope, computed from its roles and its place in the org tree:
advisors see their own customers, a store manager the store, region / division managers their
subtree, group admins everything, marketing its subtree.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DataScope:
    """`store_ids is None` means every store (group admin)."""

    store_ids: frozenset[int] | None
    own_customers_only: bool

    @property
    def everything(self) -> bool:
        return self.store_ids is None and not self.own_customers_only


@dataclass(frozen=True)
class StaffActor:
    staff_id: int
    roles: frozenset[str]
    org_unit_id: int
    scope: DataScope
    kind: str = field(default="staff", init=False)

    @property
    def ident(self) -> int:
        return self.staff_id

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))


@dataclass(frozen=True)
class MemberActor:
    customer_id: int
    kind: str = field(default="member", init=False)

    @property
    def ident(self) -> int:
        return self.customer_id


@dataclass(frozen=True)
class SystemActor:
    name: str
    kind: str = field(default="system", init=False)

    @property
    def ident(self) -> str:
        return self.name


Actor = StaffActor | MemberActor | SystemActor
