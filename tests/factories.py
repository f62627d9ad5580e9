"""Factory fixtures returning callables with sensible defaults. Each factory commits (inside the
test's outer transaction that is rolled back), so data survives the request boundary."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest

_seq = itertools.count(1)


@dataclass
class Tree:
    group: Any
    divisions: list[Any]
    regions: list[Any]
    stores: list[Any]


def _unit(session: Any, kind: str, name: str, parent: Any | None) -> Any:
    from backend.org.models import OrgKind, OrgUnit
    from backend.org.service import org_path

    unit = OrgUnit(
        kind=OrgKind(kind), code=f"{kind}-{next(_seq)}", name=name, parent_id=parent.id if parent else None, path="/"
    )
    session.add(unit)
    session.flush()
    unit.path = org_path(parent, unit.id)
    session.flush()
    return unit


@pytest.fixture
def make_tree(db_session: Any) -> Any:
    """group → 2 divisions → 1 region each → 2 stores each (4 stores)."""

    def build() -> Tree:
        group = _unit(db_session, "group", "测试集团", None)
        divisions, regions, stores = [], [], []
        for d in range(2):
            division = _unit(db_session, "division", f"事业部{d}", group)
            region = _unit(db_session, "region", f"区域{d}", division)
            divisions.append(division)
            regions.append(region)
            for s in range(2):
                stores.append(_unit(db_session, "store", f"门店{d}-{s}", region))
        db_session.commit()
        return Tree(group, divisions, regions, stores)

    return build


@pytest.fixture
def tree(make_tree: Any) -> Tree:
    return make_tree()


@pytest.fixture
def make_staff(db_session: Any, app: Any, sandbox_reset: Any) -> Any:
    """Staff whose WeCom userid is also a member of the sandbox's WeCom, as after a directory
    sync (WeCom refuses an app message to nobody it knows: 81013). The sandbox is reset first,
    so that a test's own reset cannot drop them; `in_wecom=False` for staff WeCom lacks."""
    from backend.org.models import Role, Staff, StaffRole

    def build(
        org_unit: Any,
        *roles: str,
        name: str | None = None,
        userid: str | None = None,
        status: str = "active",
        in_wecom: bool = True,
    ) -> Any:
        n = next(_seq)
        staff = Staff(
            corp_id=app.config["WECOM_CORP_ID"],
            wecom_userid=userid or f"user{n}",
            name=name or f"员工{n}",
            org_unit_id=org_unit.id,
            status=status,
        )
        staff.role_rows = [StaffRole(role=Role(r)) for r in roles]
        db_session.add(staff)
        db_session.commit()
        if in_wecom and staff.wecom_userid not in sandbox_reset.state.members:
            member_status = "active" if status == "active" else "resigned"
            sandbox_reset.state.add_member(staff.wecom_userid, staff.name, status=member_status)
        return staff

    return build


@pytest.fixture
def make_customer(db_session: Any, app: Any) -> Any:
    from backend.customers.models import Customer, CustomerAdvisor, CustomerIdentity, IdentityKind

    def build(
        store: Any | None = None,
        advisor: Any | None = None,
        role: str = "sales_advisor",
        name: str | None = None,
        openid: str | None = None,
        phone: str | None = None,
    ) -> Any:
        n = next(_seq)
        customer = Customer(name=name or f"客户{n}", home_store_id=store.id if store else None)
        db_session.add(customer)
        db_session.flush()
        if advisor is not None:
            db_session.add(CustomerAdvisor(customer_id=customer.id, staff_id=advisor.id, role=role))
        if openid:
            db_session.add(CustomerIdentity(customer_id=customer.id, kind=IdentityKind.OPENID, value=openid))
        if phone:
            from backend.customers.service import set_phone

            db_session.flush()
            set_phone(db_session, customer, phone, app.extensions["dealerloop.phone_vault"])
        db_session.commit()
        return customer

    return build


@pytest.fixture
def staff_headers(app: Any, db_session: Any) -> Any:
    """Authorization headers for a staff member (as after a WeCom login)."""
    from backend.org.service import load_staff_actor, staff_claims
    from backend.platform.tokens import issue_access_token

    def build(staff: Any) -> dict[str, str]:
        claims = staff_claims(load_staff_actor(db_session, staff.id))
        token = issue_access_token(app.config["SECRET_KEY"], "staff", staff.id, 900, claims)
        return {"Authorization": f"Bearer {token}"}

    return build


@pytest.fixture
def member_headers(app: Any) -> Any:
    from backend.platform.tokens import issue_access_token

    def build(customer: Any) -> dict[str, str]:
        token = issue_access_token(app.config["SECRET_KEY"], "owner", customer.id, 900)
        return {"Authorization": f"Bearer {token}"}

    return build
