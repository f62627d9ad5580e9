"""Demo data: an org tree, staff in every role, customers with cars and a year of touchpoints.

`flask seed-demo` fills an empty development database so that every API has something to show,
and is safe to run again: org units are found by code, staff by WeCom userid and customers by
openid, and only what is missing is created. A customer is written whole (identities, phone,
advisors, cars, touchpoints) in one transaction, so a customer that exists is complete; the unique
VINs and touchpoint `source_ref`s back this up.

Everything is derived from a fixed seed, and each customer from its own number, so two runs
(or a run with `--customers 50` followed by one with `--customers 500`) give the same customers
with the same names, phones, cars and histories. Times are relative to the moment of the run,
so the timelines always look recent.

Well-known identities (documented in the README):
- staff `demo-advisor` (sales advisor at S01), `demo-manager` (S01 store manager), `demo-admin`
  (group admin), all in corp `WECOM_CORP_ID`;
- owner #1, openid `demo-owner-openid-0001`, unionid `demo-owner-unionid-0001`, assigned to
  `demo-advisor`.

The seed touches only our database: nothing is registered with WeChat, WeCom or the sandbox.
"""

from __future__ import annotations

import random
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from backend.customers.models import (
    Car,
    Customer,
    CustomerAdvisor,
    CustomerIdentity,
    Gender,
    IdentityKind,
    LifecycleStage,
)
from backend.customers.service import set_phone
from backend.customers.vin import check_digit
from backend.org.models import OrgKind, OrgUnit, Role, Staff, StaffRole
from backend.org.service import org_path
from backend.platform.db import commit, db, rollback, utcnow
from backend.platform.errors import AppError
from backend.platform.pii import PhoneVault
from backend.touchpoints.models import Channel, Kind, Touchpoint
from backend.touchpoints.service import rebuild_profiles

SEED = "dealerloop-demo-v1"
SOURCE = "seed"
BATCH = 100  # customers per transaction
MAX_CUSTOMERS = 499_999  # the VIN serial (6 digits) is derived from the customer number

DEMO_ADVISOR = "demo-advisor"
DEMO_MANAGER = "demo-manager"
DEMO_ADMIN = "demo-admin"


def demo_openid(n: int) -> str:
    return f"demo-owner-openid-{n:04d}"


def demo_unionid(n: int) -> str:
    return f"demo-owner-unionid-{n:04d}"


# ---------------------------------------------------------------------------------------------
# The org tree: (code, kind, name, parent code)

UNITS: list[tuple[str, OrgKind, str, str | None]] = [
    ("G01", OrgKind.GROUP, "粤通汽车集团", None),
    ("D01", OrgKind.DIVISION, "一汽大众事业部", "G01"),
    ("D02", OrgKind.DIVISION, "宝马事业部", "G01"),
    ("R01", OrgKind.REGION, "一汽大众广州区域", "D01"),
    ("R02", OrgKind.REGION, "一汽大众深圳区域", "D01"),
    ("R03", OrgKind.REGION, "宝马华南区域", "D02"),
    ("S01", OrgKind.STORE, "广州天河一汽-大众4S店", "R01"),
    ("S02", OrgKind.STORE, "广州番禺一汽-大众4S店", "R01"),
    ("S03", OrgKind.STORE, "深圳福田一汽-大众4S店", "R02"),
    ("S04", OrgKind.STORE, "深圳宝安一汽-大众城市展厅", "R02"),
    ("S05", OrgKind.STORE, "广州天河宝马4S店", "R03"),
    ("S06", OrgKind.STORE, "深圳南山宝马4S店", "R03"),
]
STORE_CODES = [code for code, kind, _, _ in UNITS if kind == OrgKind.STORE]
STORE_PLATE_PREFIX = {"S01": "粤A", "S02": "粤A", "S03": "粤B", "S04": "粤B", "S05": "粤A", "S06": "粤B"}
STORE_DIVISION = {"S01": "D01", "S02": "D01", "S03": "D01", "S04": "D01", "S05": "D02", "S06": "D02"}

# Per store: one manager, two sales advisors, two service advisors, one insurance/finance specialist.
STORE_STAFFING = [
    Role.STORE_MANAGER,
    Role.SALES_ADVISOR,
    Role.SALES_ADVISOR,
    Role.SERVICE_ADVISOR,
    Role.SERVICE_ADVISOR,
    Role.INSURANCE_FINANCE,
]
# Above the stores: (userid, role, unit code)
UPPER_STAFF = [
    ("demo-region-manager-01", Role.REGION_MANAGER, "R01"),
    ("demo-region-manager-02", Role.REGION_MANAGER, "R02"),
    ("demo-region-manager-03", Role.REGION_MANAGER, "R03"),
    ("demo-division-manager-01", Role.DIVISION_MANAGER, "D01"),
    ("demo-division-manager-02", Role.DIVISION_MANAGER, "D02"),
    (DEMO_ADMIN, Role.GROUP_ADMIN, "G01"),
    ("demo-marketing-01", Role.MARKETING, "G01"),
    ("demo-marketing-02", Role.MARKETING, "D02"),
]

# ---------------------------------------------------------------------------------------------
# Names, cars

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蔡"
    "蒋余杜叶程苏魏吕丁任卢姚沈钟姜崔谭陆范汪廖石金韦贾夏付方邹熊白孟秦邱侯江尹薛"
    "闫段雷龙黎史陶贺毛郝顾龚邵万覃武钱戴严莫孔向常汤"
)
GIVEN_MALE = "伟强磊军洋勇杰涛明超辉华建平刚俊峰波斌宇浩凯鹏飞鑫晨博文志国海东亮成龙健帅锋"
GIVEN_FEMALE = "芳娜敏静丽艳娟霞秀玲桂英华红燕萍婷雪琳晶慧颖倩欣悦瑶怡佳琪梦露月晓"

# (WMI, brand, [(series, [model names])])
CATALOGUE: dict[str, tuple[str, str, list[tuple[str, list[str]]]]] = {
    "D01": (
        "LFV",
        "一汽-大众",
        [
            ("速腾", ["2023款 300TSI DSG超越版", "2022款 280TSI DSG飞越版"]),
            ("迈腾", ["2023款 330TSI DSG豪华型", "2022款 380TSI DSG旗舰型"]),
            ("探岳", ["2023款 330TSI 两驱豪华智联版", "2022款 380TSI 四驱R-Line"]),
            ("宝来", ["2023款 1.5L 自动舒适智联版", "2022款 200TSI DSG悦行版"]),
            ("ID.4 CROZZ", ["2022款 PURE+", "2023款 PRO 长续航版"]),
            ("揽境", ["2022款 380TSI 四驱豪华佳境版"]),
        ],
    ),
    "D02": (
        "LBV",
        "宝马",
        [
            ("3系", ["2023款 325Li M运动套装", "2022款 320Li 豪华套装"]),
            ("5系", ["2023款 530Li 领先型 M运动套装", "2022款 525Li 豪华套装"]),
            ("X3", ["2022款 xDrive30i 领先型 M曜夜套装", "2023款 xDrive25i 豪华套装"]),
            ("X1", ["2023款 sDrive25Li M越野套装"]),
            ("iX3", ["2022款 领先型"]),
        ],
    ),
}
VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
PLATE_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
# ISO 3779 model-year codes (no I, O, Q, U, Z, 0).
YEAR_CODES = dict(zip(range(2010, 2031), "ABCDEFGHJKLMNPRSTVWXY", strict=True))

STAGES = [
    (LifecycleStage.OWNER, 50),
    (LifecycleStage.LOYAL, 22),
    (LifecycleStage.AT_RISK, 16),
    (LifecycleStage.LOST, 12),
]
SERVICE_TYPES = ["常规保养", "首保", "更换轮胎", "钣金喷漆", "空调清洗", "刹车片更换", "年检代办"]
CONTENT = [
    "新车上市｜全新车型抢先看",
    "夏季空调保养小贴士",
    "新能源车冬季续航指南",
    "车主专享：保养套餐8折",
    "自驾游路线推荐",
]
SCRIPTS = ["保养到期提醒", "生日祝福", "续保报价跟进", "活动邀约", "满意度回访"]
EVENTS = ["车主自驾游", "新车品鉴会", "亲子DIY活动", "冬季免费检测日"]
CALL_OUTCOMES = ("reached", "reached", "no_answer", "callback")


def _name(rng: random.Random, gender: Gender) -> str:
    given = GIVEN_MALE if gender == Gender.MALE else GIVEN_FEMALE
    return rng.choice(SURNAMES) + "".join(rng.choice(given) for _ in range(rng.choice((1, 2))))


def demo_phone(n: int) -> str:
    # 7919 is prime to 10, so n -> n * 7919 mod 10^9 is a bijection: every customer gets a
    # distinct, plausible mainland mobile number.
    return f"1{'35789'[n % 5]}{(n * 7919 + 10_000_000) % 1_000_000_000:09d}"


def make_vin(rng: random.Random, wmi: str, year: int, serial: int) -> str:
    vds = "".join(rng.choice(VIN_CHARS) for _ in range(5))
    plant = rng.choice("ABCDEFGH")
    draft = f"{wmi}{vds}0{YEAR_CODES[year]}{plant}{serial:06d}"
    return draft[:8] + check_digit(draft) + draft[9:]  # position 9 weighs 0: any placeholder works


def make_plate(rng: random.Random, prefix: str, electric: bool) -> str:
    if electric:  # new-energy plates: D/F then five digits/letters
        return f"{prefix}·{rng.choice('DF')}{''.join(rng.choice('0123456789') for _ in range(5))}"
    return f"{prefix}·{''.join(rng.choice(PLATE_CHARS) for _ in range(5))}"


# ---------------------------------------------------------------------------------------------
# Org and staff


@dataclass
class _Counts:
    units: int = 0
    staff: int = 0
    customers: int = 0
    cars: int = 0
    touchpoints: int = 0


@dataclass
class _StoreStaff:
    store_id: int
    by_role: dict[Role, list[int]] = field(default_factory=dict)


def _ensure_units(session: Session, counts: _Counts) -> dict[str, OrgUnit]:
    codes = [code for code, _, _, _ in UNITS]
    existing = {u.code: u for u in session.scalars(select(OrgUnit).where(OrgUnit.code.in_(codes)))}
    for code, kind, name, parent_code in UNITS:  # parents come first in UNITS
        if code in existing:
            continue
        parent = existing[parent_code] if parent_code else None
        unit = OrgUnit(kind=kind, code=code, name=name, parent_id=parent.id if parent else None, path="/")
        session.add(unit)
        session.flush()
        unit.path = org_path(parent, unit.id)
        existing[code] = unit
        counts.units += 1
    session.flush()
    return existing


def _staff_plan() -> list[tuple[str, str, Role, str]]:
    """(userid, name, role, unit code) for every demo staff member, always in the same order."""
    rng = random.Random(f"{SEED}:staff")
    plan: list[tuple[str, str, Role, str]] = []
    advisor_no = 0
    for store in STORE_CODES:
        for i, role in enumerate(STORE_STAFFING):
            if role == Role.STORE_MANAGER:
                userid = DEMO_MANAGER if store == "S01" else f"demo-manager-{store[1:]}"
            elif store == "S01" and role == Role.SALES_ADVISOR and i == 1:
                userid = DEMO_ADVISOR
            else:
                advisor_no += 1
                userid = f"demo-advisor-{advisor_no:02d}"
            plan.append((userid, _name(rng, rng.choice((Gender.MALE, Gender.FEMALE))), role, store))
    for userid, role, unit in UPPER_STAFF:
        plan.append((userid, _name(rng, rng.choice((Gender.MALE, Gender.FEMALE))), role, unit))
    return plan


def _ensure_staff(session: Session, corp_id: str, units: dict[str, OrgUnit], counts: _Counts) -> dict[str, _StoreStaff]:
    plan = _staff_plan()
    existing = {
        s.wecom_userid: s
        for s in session.scalars(
            select(Staff).where(Staff.corp_id == corp_id, Staff.wecom_userid.in_([p[0] for p in plan]))
        )
    }
    for userid, name, role, unit_code in plan:
        if userid in existing:
            continue
        staff = Staff(corp_id=corp_id, wecom_userid=userid, name=name, org_unit_id=units[unit_code].id)
        staff.role_rows = [StaffRole(role=role)]
        session.add(staff)
        existing[userid] = staff
        counts.staff += 1
    session.flush()
    stores = {code: _StoreStaff(units[code].id) for code in STORE_CODES}
    for userid, _, role, unit_code in plan:
        if unit_code in stores:
            stores[unit_code].by_role.setdefault(role, []).append(existing[userid].id)
    return stores


# ---------------------------------------------------------------------------------------------
# Customers


@dataclass
class _Plan:
    """One customer, fully decided before anything is written."""

    n: int
    store_id: int
    customer: dict[str, Any]
    advisors: dict[Role, int]
    cars: list[dict[str, Any]]
    touchpoints: list[dict[str, Any]]


def _customer_plan(n: int, stores: dict[str, _StoreStaff], demo_advisor_id: int, now: datetime) -> _Plan:
    rng = random.Random(f"{SEED}:customer:{n}")
    store = "S01" if n == 1 else rng.choice(STORE_CODES)
    staff = stores[store]
    gender = rng.choice((Gender.MALE, Gender.FEMALE))
    stage = LifecycleStage.LOYAL if n == 1 else rng.choices([s for s, _ in STAGES], [w for _, w in STAGES])[0]
    advisors = {
        Role.SALES_ADVISOR: demo_advisor_id if n == 1 else rng.choice(staff.by_role[Role.SALES_ADVISOR]),
        Role.SERVICE_ADVISOR: rng.choice(staff.by_role[Role.SERVICE_ADVISOR]),
    }
    if n == 1 or rng.random() < 0.3:
        advisors[Role.INSURANCE_FINANCE] = rng.choice(staff.by_role[Role.INSURANCE_FINANCE])
    if stage == LifecycleStage.LOYAL:
        tier = rng.choice(("gold", "platinum"))
    else:
        tier = rng.choice(("standard", "standard", "silver"))
    customer = {
        "name": "陈志远" if n == 1 else _name(rng, gender),
        "gender": Gender.MALE if n == 1 else gender,
        "birthday": date(rng.randint(1965, 2000), rng.randint(1, 12), rng.randint(1, 28)),
        "lifecycle_stage": stage,
        "tier": tier,
        "acquisition_channel": rng.choice(("store", "store", "wecom", "miniprogram", "event")),
    }

    wmi, brand, series_list = CATALOGUE[STORE_DIVISION[store]]
    cars = []
    for k in range(2 if (n == 1 or rng.random() < 0.25) else 1):
        series, models = rng.choice(series_list)
        purchased = (now - timedelta(days=rng.randint(120, 8 * 365))).date()
        cars.append(
            {
                "vin": make_vin(rng, wmi, purchased.year, n * 2 + k),
                "plate": make_plate(rng, STORE_PLATE_PREFIX[store], electric=series in ("ID.4 CROZZ", "iX3")),
                "brand": brand,
                "series": series,
                "model": rng.choice(models),
                "purchase_date": purchased,
                "mileage_km": max(500, (now.date() - purchased).days * rng.randint(20, 60)),
            }
        )
    touchpoints = _history(rng, n, stage, store, staff.store_id, advisors, cars, now)
    services = [t for t in touchpoints if t["kind"] == Kind.SERVICE_COMPLETED]
    if services:
        cars[0]["last_service_date"] = services[-1]["occurred_at"].date()
    return _Plan(n, staff.store_id, customer, advisors, cars, touchpoints)


def _history(
    rng: random.Random,
    n: int,
    stage: LifecycleStage,
    store: str,
    store_id: int,
    advisors: dict[Role, int],
    cars: list[dict[str, Any]],
    now: datetime,
) -> list[dict[str, Any]]:
    """About a year of interactions, shaped by the customer's stage: active owners up to the last
    weeks, at-risk ones fall silent 3-5 months ago, lost ones deleted their advisor."""
    start = now - timedelta(days=rng.uniform(300, 360))
    end = {
        LifecycleStage.AT_RISK: now - timedelta(days=rng.uniform(90, 150)),
        LifecycleStage.LOST: now - timedelta(days=rng.uniform(160, 240)),
    }.get(stage, now - timedelta(days=rng.uniform(0.2, 20)))
    sales, service = advisors[Role.SALES_ADVISOR], advisors[Role.SERVICE_ADVISOR]
    events: list[dict[str, Any]] = []

    def add(when: datetime, kind: Kind, channel: Channel, advisor: int | None = None, **payload: Any) -> None:
        events.append(
            {
                "occurred_at": min(when, end),
                "kind": kind,
                "channel": channel,
                "advisor_id": advisor,
                "store_id": store_id,
                "payload": payload or None,
            }
        )

    def between(a: datetime, b: datetime) -> datetime:
        return a + (b - a) * rng.random()

    add(start, Kind.FRIEND_ADDED, Channel.WECOM, sales, state=f"store:{store}")
    add(start + timedelta(hours=rng.uniform(1, 72)), Kind.MEMBER_REGISTERED, Channel.MINIPROGRAM)
    add(start + timedelta(hours=rng.uniform(72, 96)), Kind.PHONE_BOUND, Channel.MINIPROGRAM)
    for car in cars:
        when = start + timedelta(hours=rng.uniform(96, 120))
        add(when, Kind.CAR_BOUND, Channel.MINIPROGRAM, series=car["series"])
    for role, staff_id in advisors.items():
        when = start + timedelta(minutes=rng.uniform(1, 60))
        add(when, Kind.ADVISOR_ASSIGNED, Channel.SYSTEM, staff_id, role=role.value)

    # Service visits every 3-5 months: invitation or self-booking, arrival, completion (the points
    # earned for it are written by the loyalty seed through the ledger: backend/points/seed.py).
    visit = start + timedelta(days=rng.uniform(10, 60))
    while visit < end:
        if rng.random() < 0.5:
            add(
                visit - timedelta(days=rng.uniform(3, 10)),
                Kind.CALL_LOGGED,
                Channel.PHONE,
                service,
                duration_s=rng.randint(40, 420),
                outcome="invited",
            )
            add(
                visit - timedelta(days=rng.uniform(1, 3)),
                Kind.VISIT_INVITED,
                Channel.WECOM,
                service,
                planned_for=visit.date().isoformat(),
            )
        service_type = rng.choice(SERVICE_TYPES)
        add(
            visit - timedelta(days=rng.uniform(0.5, 3)),
            Kind.BOOKING_CREATED,
            Channel.MINIPROGRAM,
            service,
            service_type=service_type,
        )
        if rng.random() < 0.08:
            add(visit, Kind.NO_SHOW, Channel.STORE, service, service_type=service_type)
        else:
            amount = rng.randint(300, 4000) * 100
            add(visit, Kind.ARRIVED, Channel.STORE, service)
            add(
                visit + timedelta(hours=rng.uniform(1, 5)),
                Kind.SERVICE_COMPLETED,
                Channel.STORE,
                service,
                service_type=service_type,
                amount_fen=amount,
            )
        visit += timedelta(days=rng.uniform(90, 150))

    # Conversations and marketing in between.
    for _ in range(rng.randint(2, 6)):
        when = between(start, end)
        add(when, Kind.MESSAGE_SENT, Channel.WECOM, rng.choice((sales, service)))
        if rng.random() < 0.6:
            add(when + timedelta(minutes=rng.uniform(2, 240)), Kind.MESSAGE_RECEIVED, Channel.WECOM, sales)
    for _ in range(rng.randint(0, 2)):
        add(between(start, end), Kind.SCRIPT_SENT, Channel.WECOM, sales, script=rng.choice(SCRIPTS))
    for _ in range(rng.randint(0, 3)):
        when = between(start, end)
        title = rng.choice(CONTENT)
        add(when, Kind.CONTENT_SHARED, Channel.WECOM, sales, title=title)
        if rng.random() < 0.55:
            add(
                when + timedelta(minutes=rng.uniform(5, 600)),
                Kind.CONTENT_OPENED,
                Channel.WECOM,
                sales,
                title=title,
                read_seconds=rng.randint(5, 240),
            )
    for _ in range(rng.randint(0, 2)):
        add(
            between(start, end),
            Kind.CALL_LOGGED,
            Channel.PHONE,
            sales,
            duration_s=rng.randint(15, 600),
            outcome=rng.choice(CALL_OUTCOMES),
        )
    if Role.INSURANCE_FINANCE in advisors:
        add(
            between(start, end),
            Kind.CALL_LOGGED,
            Channel.PHONE,
            advisors[Role.INSURANCE_FINANCE],
            duration_s=rng.randint(60, 900),
            outcome="insurance_quote",
        )
    for _ in range(rng.randint(0, 3)):
        when = between(start, end)
        add(when, Kind.CONSULT_MESSAGE, Channel.MINIPROGRAM, None, direction="in")
        reply = when + timedelta(minutes=rng.uniform(1, 90))
        add(reply, Kind.CONSULT_MESSAGE, Channel.MINIPROGRAM, sales, direction="out")
    for _ in range(rng.randint(0, 2)):
        add(between(start, end), Kind.COUPON_CLAIMED, Channel.MINIPROGRAM, template="保养券100元")
    for _ in range(rng.randint(0, 4)):
        add(between(start, end), Kind.SIGNED_IN, Channel.MINIPROGRAM)
    if rng.random() < 0.25:
        when = between(start, end)
        event = rng.choice(EVENTS)
        add(when, Kind.EVENT_SIGNED_UP, Channel.MINIPROGRAM, event=event)
        checked_in = when + timedelta(days=rng.uniform(2, 14))
        add(checked_in, Kind.EVENT_CHECKED_IN, Channel.STORE, sales, event=event)
    if stage == LifecycleStage.LOST:
        add(end, Kind.FRIEND_DELETED_BY_CUSTOMER, Channel.WECOM, sales)

    events.sort(key=lambda e: e["occurred_at"])
    for i, event in enumerate(events, start=1):
        event["source_ref"] = f"seed:{n:04d}:{i:03d}"
    return events


def _create_customers(session: Session, plans: list[_Plan], vault: PhoneVault, counts: _Counts) -> None:
    rows = []
    for plan in plans:
        customer = Customer(**plan.customer, home_store_id=plan.store_id)
        customer.identities = [
            CustomerIdentity(kind=IdentityKind.OPENID, value=demo_openid(plan.n)),
            CustomerIdentity(kind=IdentityKind.UNIONID, value=demo_unionid(plan.n)),
        ]
        customer.advisors = [CustomerAdvisor(staff_id=s, role=r.value) for r, s in plan.advisors.items()]
        session.add(customer)
        rows.append((plan, customer))
    session.flush()  # one batched INSERT per table
    cars = [Car(customer_id=customer.id, **car) for plan, customer in rows for car in plan.cars]
    session.add_all(cars)
    session.flush()
    for plan, customer in rows:
        with suppress(AppError):  # the number is somebody else's in this database: go without it
            set_phone(session, customer, demo_phone(plan.n), vault)
    # Touchpoints are bulk-inserted and the batch's profiles rebuilt once, instead of one
    # `record` call each: `record` costs a savepoint and two upserts per row (about 5 ms), which
    # would make 500 customers take minutes. `rebuild_profiles` is the projection's definition
    # (the incremental updates in `record` must agree with it), and only brand-new customers are
    # in the batch, so the unique `source_ref`s cannot collide and nothing else reads them yet.
    recorded_at = utcnow()
    touchpoints = [
        {
            **tp,
            "kind": tp["kind"].value,
            "channel": tp["channel"].value,
            "customer_id": customer.id,
            "source": SOURCE,
            "recorded_at": recorded_at,
        }
        for plan, customer in rows
        for tp in plan.touchpoints
    ]
    if touchpoints:
        session.execute(insert(Touchpoint), touchpoints)
    rebuild_profiles(session, [customer.id for _, customer in rows])
    counts.touchpoints += len(touchpoints)
    counts.customers += len(rows)
    counts.cars += len(cars)


def seed_demo(if_empty: bool = False, customers: int = 500) -> str:
    if customers < 0 or customers > MAX_CUSTOMERS:
        raise ValueError(f"customers must be between 0 and {MAX_CUSTOMERS}")
    session = db.session()
    if if_empty and session.scalar(select(Customer.id).limit(1)) is not None:
        return "customers already exist: nothing seeded"

    counts = _Counts()
    corp_id = current_app.config["WECOM_CORP_ID"]
    vault: PhoneVault = current_app.extensions["dealerloop.phone_vault"]
    try:
        units = _ensure_units(session, counts)
        stores = _ensure_staff(session, corp_id, units, counts)
        demo_advisor_id = session.scalar(
            select(Staff.id).where(Staff.corp_id == corp_id, Staff.wecom_userid == DEMO_ADVISOR)
        )
        commit(session)

        now = utcnow().replace(microsecond=0)
        for first in range(1, customers + 1, BATCH):
            numbers = list(range(first, min(first + BATCH, customers + 1)))
            present = set(
                session.scalars(
                    select(CustomerIdentity.value).where(
                        CustomerIdentity.kind == IdentityKind.OPENID,
                        CustomerIdentity.value.in_([demo_openid(n) for n in numbers]),
                    )
                )
            )
            # A customer is written with all its rows in one transaction: present means complete.
            missing = [n for n in numbers if demo_openid(n) not in present]
            plans = [_customer_plan(n, stores, demo_advisor_id, now) for n in missing]
            if plans:
                _create_customers(session, plans, vault, counts)
                commit(session)
                session.expunge_all()  # keep the identity map small across batches

        from backend.points.seed import seed_loyalty

        demo_store_id = session.scalar(select(Staff.org_unit_id).where(Staff.id == demo_advisor_id))
        loyalty = seed_loyalty(session, {n: demo_openid(n) for n in range(1, customers + 1)}, demo_store_id, now)
        commit(session)
        from backend.leads.seed import seed_leads

        loyalty += "; leads: " + seed_leads(session, {n: demo_openid(n) for n in range(1, customers + 1)}, now)
        from backend.campaigns.seed import seed_campaigns

        loyalty += "; " + seed_campaigns(session, now)
        from backend.consult.seed import seed_consult

        loyalty += "; " + seed_consult(session, demo_store_id, [demo_openid(n) for n in range(1, 21)], now)
        from backend.offers.seed import seed_offers

        openids = [demo_openid(n) for n in range(1, min(customers, 12) + 1)]
        loyalty += "; " + seed_offers(session, openids, demo_store_id, demo_advisor_id, now)
        from backend.events.seed import seed_events

        loyalty += "; " + seed_events(session, demo_store_id, [demo_openid(n) for n in range(1, customers + 1)], now)
        from backend.booking.seed import seed_booking

        loyalty += "; " + seed_booking(
            session, {n: demo_openid(n) for n in range(1, customers + 1)}, demo_store_id, now
        )
        commit(session)
    except BaseException:
        rollback(session)
        raise
    return (
        f"demo data: created {counts.units} org units, {counts.staff} staff, {counts.customers} customers, "
        f"{counts.cars} cars, {counts.touchpoints} touchpoints; loyalty: {loyalty}"
        + ("" if counts.customers or counts.units or counts.staff else " (everything was already there)")
    )
