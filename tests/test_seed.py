"""The demo seed: a complete, valid, reproducible world, and nothing new on a second run.

`seed_demo` commits; under the per-test transaction those commits release SAVEPOINTs, so the
whole seed is still rolled back after each test.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.customers.models import Car, Customer, CustomerAdvisor, CustomerIdentity, IdentityKind
from backend.customers.vin import vin_problem
from backend.org.models import ADVISOR_ROLES, OrgKind, OrgUnit, Role, Staff, StaffRole
from backend.seed import (
    DEMO_ADMIN,
    DEMO_ADVISOR,
    DEMO_MANAGER,
    UNITS,
    demo_openid,
    demo_phone,
    demo_unionid,
    seed_demo,
)
from backend.touchpoints.models import CustomerKindCount, CustomerProfile, Kind, Touchpoint
from backend.touchpoints.service import profile_of, rebuild_profiles

pytestmark = [pytest.mark.usefixtures("app_ctx")]  # these call services that need the app

SEED_CODES = [code for code, _, _, _ in UNITS]
TABLES = (OrgUnit, Staff, StaffRole, Customer, CustomerIdentity, CustomerAdvisor, Car, Touchpoint, CustomerProfile)


def _counts(session: Any) -> dict[str, int]:
    return {model.__name__: session.scalar(select(func.count()).select_from(model)) for model in TABLES}


@pytest.fixture
def seeded(app: Any, db_session: Any) -> str:
    return seed_demo(customers=12)


def _staff(session: Any, app: Any, userid: str) -> Staff:
    return session.scalars(
        select(Staff).where(Staff.corp_id == app.config["WECOM_CORP_ID"], Staff.wecom_userid == userid)
    ).one()


def test_org_tree_has_every_level(seeded: str, db_session: Any) -> None:
    units = {u.code: u for u in db_session.scalars(select(OrgUnit).where(OrgUnit.code.in_(SEED_CODES)))}
    assert Counter(u.kind for u in units.values()) == {
        OrgKind.GROUP: 1,
        OrgKind.DIVISION: 2,
        OrgKind.REGION: 3,
        OrgKind.STORE: 6,
    }
    assert sorted(c for c, u in units.items() if u.kind == OrgKind.STORE) == [f"S0{i}" for i in range(1, 7)]
    by_id = {u.id: u for u in units.values()}
    for unit in units.values():
        parent = by_id.get(unit.parent_id) if unit.parent_id else None
        assert unit.path == (parent.path if parent else "/") + f"{unit.id}/"
    assert {u.name for u in units.values()} >= {"一汽大众事业部", "宝马事业部"}


def test_staff_cover_every_role_and_every_store(seeded: str, db_session: Any, app: Any) -> None:
    staff = list(db_session.scalars(select(Staff).where(Staff.wecom_userid.like("demo-%"))))
    assert 35 <= len(staff) <= 50
    assert {s.corp_id for s in staff} == {app.config["WECOM_CORP_ID"]}
    assert set().union(*(s.roles for s in staff)) == set(Role)
    for store in db_session.scalars(select(OrgUnit).where(OrgUnit.code.in_(SEED_CODES), OrgUnit.kind == "store")):
        roles = Counter(r for s in staff if s.org_unit_id == store.id for r in s.roles)
        assert roles[Role.SALES_ADVISOR] >= 1 and roles[Role.SERVICE_ADVISOR] >= 1, store.code
        assert roles[Role.INSURANCE_FINANCE] >= 1 and roles[Role.STORE_MANAGER] == 1, store.code

    advisor, manager, admin = (_staff(db_session, app, u) for u in (DEMO_ADVISOR, DEMO_MANAGER, DEMO_ADMIN))
    assert advisor.roles == {Role.SALES_ADVISOR} and advisor.org_unit.code == "S01"
    assert manager.roles == {Role.STORE_MANAGER} and manager.org_unit.code == "S01"
    assert admin.roles == {Role.GROUP_ADMIN} and admin.org_unit.kind == OrgKind.GROUP
    assert _staff(db_session, app, "demo-advisor-01").roles <= ADVISOR_ROLES


def test_customers_phones_cars_and_advisors(seeded: str, db_session: Any, app: Any) -> None:
    assert "12 customers" in seeded
    vault = app.extensions["dealerloop.phone_vault"]
    customers = list(db_session.scalars(select(Customer).order_by(Customer.id)))
    assert len(customers) == 12
    staff_store = dict(db_session.execute(select(Staff.id, Staff.org_unit_id)).all())
    for n, customer in enumerate(customers, start=1):
        assert customer.name and 2 <= len(customer.name) <= 4
        assert customer.identity(IdentityKind.OPENID) == demo_openid(n)
        assert vault.decrypt(customer.phone_encrypted) == demo_phone(n)
        assert customer.identity(IdentityKind.PHONE) == vault.blind_index(demo_phone(n))
        roles = {a.role: a.staff_id for a in customer.advisors}
        assert {"sales_advisor", "service_advisor"} <= set(roles)
        assert {staff_store[s] for s in roles.values()} == {customer.home_store_id}
        cars = list(db_session.scalars(select(Car).where(Car.customer_id == customer.id)))
        assert 1 <= len(cars) <= 2
        for car in cars:
            assert vin_problem(car.vin) is None, car.vin
            assert car.vin.startswith("L")
            assert car.plate and len(car.plate) <= 16 and car.plate[0] == "粤"
            assert car.brand and car.series and car.model
    assert len({demo_phone(n) for n in range(1, 5001)}) == 5000  # distinct numbers at scale


def test_demo_owner_is_linked_to_the_demo_advisor(seeded: str, db_session: Any, app: Any) -> None:
    owner = db_session.scalars(
        select(Customer).join(CustomerIdentity).where(CustomerIdentity.value == "demo-owner-openid-0001")
    ).one()
    assert owner.identity(IdentityKind.UNIONID) == demo_unionid(1) == "demo-owner-unionid-0001"
    advisor = _staff(db_session, app, DEMO_ADVISOR)
    assert {a.role: a.staff_id for a in owner.advisors}["sales_advisor"] == advisor.id
    assert owner.home_store_id == advisor.org_unit_id
    assert profile_of(db_session, owner.id)["touchpoint_count"] > 5


def test_touchpoints_populate_timelines_and_the_projection(seeded: str, db_session: Any) -> None:
    rows = db_session.execute(
        select(Touchpoint.kind, Touchpoint.channel, Touchpoint.source, Touchpoint.source_ref)
    ).all()
    kinds = {r.kind for r in rows}
    for kind in (
        Kind.FRIEND_ADDED,
        Kind.MESSAGE_SENT,
        Kind.BOOKING_CREATED,
        Kind.ARRIVED,
        Kind.SERVICE_COMPLETED,
        Kind.POINTS_EARNED,
        Kind.MEMBER_REGISTERED,
        Kind.CAR_BOUND,
    ):
        assert kind.value in kinds
    assert kinds <= {k.value for k in Kind}
    assert {r.channel for r in rows} == {"wecom", "miniprogram", "store", "phone", "system"}
    # The history is bulk-written with seed refs; the loyalty seed goes through the services.
    assert all(r.source_ref.startswith("seed:") for r in rows if r.source == "seed")

    ids = list(db_session.scalars(select(Customer.id)))
    before = {i: profile_of(db_session, i) for i in ids}
    for i in ids:
        times = list(db_session.scalars(select(Touchpoint.occurred_at).where(Touchpoint.customer_id == i)))
        assert before[i]["touchpoint_count"] == len(times)
        assert before[i]["last_touch_at"] == max(times)
    db_session.execute(CustomerKindCount.__table__.delete())
    db_session.execute(CustomerProfile.__table__.delete())
    rebuild_profiles(db_session)
    db_session.expire_all()
    assert {i: profile_of(db_session, i) for i in ids} == before


def test_second_run_adds_nothing_and_if_empty_returns(seeded: str, db_session: Any) -> None:
    before = _counts(db_session)
    again = seed_demo(customers=12)
    assert "created 0 org units, 0 staff, 0 customers, 0 cars, 0 touchpoints" in again
    assert _counts(db_session) == before
    assert seed_demo(if_empty=True, customers=50) == "customers already exist: nothing seeded"
    assert _counts(db_session) == before


def test_growing_the_seed_keeps_the_existing_customers(app: Any, db_session: Any) -> None:
    seed_demo(customers=3)
    first = {c.id: (c.name, c.identity(IdentityKind.OPENID)) for c in db_session.scalars(select(Customer))}
    summary = seed_demo(customers=5)
    assert "created 0 org units, 0 staff, 2 customers" in summary
    db_session.expire_all()
    now = {c.id: (c.name, c.identity(IdentityKind.OPENID)) for c in db_session.scalars(select(Customer))}
    assert len(now) == 5 and {k: now[k] for k in first} == first


def test_reproducible_from_the_fixed_seed(app: Any, db_session: Any) -> None:
    """The same numbers give the same people and cars, whatever else is in the database."""
    seed_demo(customers=4)
    snapshot = sorted(db_session.execute(select(Customer.name, Car.vin, Car.plate).join(Car)).all())
    from backend.models import metadata

    keep = {"org_unit", "staff", "staff_role", "alembic_version"}
    for table in reversed(metadata.sorted_tables):  # children first
        if table.name not in keep:
            db_session.execute(table.delete())
    db_session.commit()
    seed_demo(customers=4)
    assert sorted(db_session.execute(select(Customer.name, Car.vin, Car.plate).join(Car)).all()) == snapshot


def test_cli_command(app: Any, db_session: Any) -> None:
    result = app.test_cli_runner().invoke(args=["seed-demo", "--customers", "2"])
    assert result.exit_code == 0, result.output
    assert "2 customers" in result.output
    result = app.test_cli_runner().invoke(args=["seed-demo", "--if-empty"])
    assert result.exit_code == 0 and "nothing seeded" in result.output


def test_loyalty_demo_is_consistent_and_idempotent(seeded: str, db_session: Any, app: Any) -> None:
    from backend.packages.models import ServicePackage
    from backend.points import service
    from backend.points.models import ItemKind, MallItem, MallOrder, PointsLedger, PointsSignin

    assert "loyalty:" in seeded
    assert {i.kind for i in db_session.scalars(select(MallItem))} == set(ItemKind)
    assert db_session.scalar(select(func.count()).select_from(ServicePackage)) == 3
    owner = db_session.scalars(
        select(Customer).join(CustomerIdentity).where(CustomerIdentity.value == demo_openid(1))
    ).one()
    account = service.account(db_session, owner.id)
    from backend.points import tiers

    growth = tiers.growth_value(db_session, owner.id)
    # Upgrades are immediate (earlier windows may have reached higher), downgrades wait for the cycle.
    assert tiers.tier(owner.tier).rank >= tiers.tier_for_growth(growth).rank > 0 and account.available > 0
    assert db_session.scalar(select(func.count()).select_from(MallOrder).where(MallOrder.customer_id == owner.id)) == 2
    assert db_session.scalar(select(func.count()).select_from(PointsSignin).where(PointsSignin.customer_id == owner.id))
    # Every seeded service visit earned its points through the ledger, once.
    earned = db_session.scalar(
        select(func.count()).select_from(PointsLedger).where(PointsLedger.idempotency_key.like("seed:earn:%"))
    )
    completed = db_session.scalar(
        select(func.count()).select_from(Touchpoint).where(Touchpoint.kind == Kind.SERVICE_COMPLETED)
    )
    assert earned == completed > 0
    assert service.check_drift(db_session) == []
    rows = db_session.scalar(select(func.count()).select_from(PointsLedger))
    seed_demo(customers=12)
    assert db_session.scalar(select(func.count()).select_from(PointsLedger)) == rows
