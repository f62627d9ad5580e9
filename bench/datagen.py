"""Synthetic dataset for the benchmarks, in a dedicated MariaDB database (`dealerloop_bench`).

The schema is built by the project's own Alembic migrations; the org tree and staff go through
the ORM models (so their defaults and paths are the app's); customers and the 1,000,000
touchpoints are bulk-loaded (`LOAD DATA LOCAL INFILE` when the server allows it, multi-row
INSERTs through PyMySQL otherwise). Nothing the app relies on is disabled: foreign keys, the
unique `source_ref`, every index stay on during the load.

The dataset is cached: a small `bench_meta` table records the spec it was generated from and the
migration head; when both match and the row count is right, generation is skipped.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pymysql
from sqlalchemy.engine import make_url

DEFAULT_DATABASE_URL = "mysql+pymysql://root@127.0.0.1:3306/dealerloop_bench"
DATASET_VERSION = 1  # bump when the generator changes what it writes


def database_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL


@dataclass(frozen=True)
class Spec:
    touchpoints: int = 1_000_000
    target_touchpoints: int = 10_000
    other_customers: int = 50_000
    seed: int = 20261123
    version: int = DATASET_VERSION


@dataclass(frozen=True)
class Dataset:
    """What the benchmarks need to know about the generated data."""

    spec: Spec
    target_customer_id: int
    manager_staff_id: int
    touchpoint_rows: int
    target_rows: int
    customer_rows: int
    generated: bool
    generation_seconds: float | None


# Ids are explicit so that the dataset is the same run after run.
N_STORES = 20  # group -> 2 divisions -> 2 regions each -> 5 stores each
ADVISORS_PER_STORE = 4
TARGET_STORE_INDEX = 0
TOUCHPOINT_COLUMNS = (
    "id",
    "occurred_at",
    "recorded_at",
    "customer_id",
    "advisor_id",
    "store_id",
    "channel",
    "kind",
    "source",
    "source_ref",
    "payload",
)

# (kind, channel, source, weight, payload maker or None). Payloads are small, like the real ones.
_KINDS: list[tuple[str, str, str, int, Any]] = [
    ("message_sent", "wecom", "wecom", 22, lambda r, i: {"msgid": f"m{i}", "preview": "您好，您的爱车保养时间快到了"}),
    ("message_received", "wecom", "wecom", 18, lambda r, i: {"msgid": f"m{i}", "preview": "好的，周六上午可以"}),
    ("script_sent", "wecom", "wecom", 5, lambda r, i: {"script_id": r.randint(1, 300)}),
    ("content_shared", "wecom", "wecom", 5, lambda r, i: {"content_id": r.randint(1, 500), "title": "冬季用车小贴士"}),
    ("content_opened", "miniprogram", "miniprogram", 6, lambda r, i: {"content_id": r.randint(1, 500)}),
    (
        "call_logged",
        "phone",
        "workbench",
        6,
        lambda r, i: {"duration_s": r.randint(10, 900), "note": "客户表示下周到店"},
    ),
    ("follow_up_done", "wecom", "workbench", 4, None),
    ("booking_created", "miniprogram", "miniprogram", 5, lambda r, i: {"booking_id": i, "service": "保养"}),
    ("arrived", "store", "store", 4, None),
    (
        "service_completed",
        "store",
        "dms",
        4,
        lambda r, i: {"ro_number": f"RO{i:08d}", "amount_cents": r.randint(30000, 500000)},
    ),
    ("payment_succeeded", "miniprogram", "wechatpay", 3, lambda r, i: {"amount_cents": r.randint(1000, 200000)}),
    (
        "points_earned",
        "system",
        "loyalty",
        6,
        lambda r, i: {"points": r.choice((10, 50, 100, 200)), "reason": "消费积分"},
    ),
    ("coupon_claimed", "miniprogram", "miniprogram", 3, lambda r, i: {"coupon_id": r.randint(1, 50)}),
    ("signed_in", "miniprogram", "miniprogram", 9, None),
]
_ADVISOR_CHANNELS = {"wecom", "phone", "store"}


def _connect(url: str, *, database: bool = True, local_infile: bool = False) -> pymysql.Connection:
    u = make_url(url)
    return pymysql.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 3306,
        user=u.username or "root",
        password=u.password or "",
        database=u.database if database else None,
        charset="utf8mb4",
        local_infile=local_infile,
        autocommit=False,
    )


def _sqlalchemy_url(url: str) -> str:
    u = make_url(url)
    return u.set(query={**u.query, "charset": "utf8mb4"}).render_as_string(hide_password=False)


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")


# ---------------------------------------------------------------------------------------------
# Cache check


def existing_dataset(url: str, spec: Spec) -> Dataset | None:
    """The dataset already in the bench database, when it matches `spec` and the migrations."""
    from backend.platform.migrate import head_revision

    try:
        conn = _connect(url)
    except pymysql.err.OperationalError:
        return None  # no database yet
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES LIKE 'bench_meta'")
            if cur.fetchone() is None:
                return None
            cur.execute("SELECT v FROM bench_meta WHERE k = 'dataset'")
            row = cur.fetchone()
            if row is None:
                return None
            meta = json.loads(row[0])
            if meta.get("spec") != asdict(spec) or meta.get("alembic_head") != head_revision():
                return None
            cur.execute("SELECT version_num FROM alembic_version")
            if (cur.fetchone() or (None,))[0] != head_revision():
                return None
            cur.execute("SELECT COUNT(*) FROM touchpoint")
            total = cur.fetchone()[0]
            cur.execute("SELECT COUNT(*) FROM touchpoint WHERE customer_id = %s", (meta["target_customer_id"],))
            target = cur.fetchone()[0]
            cur.execute("SELECT COUNT(*) FROM customer")
            customers = cur.fetchone()[0]
        if total != spec.touchpoints or target != spec.target_touchpoints:
            return None
        return Dataset(
            spec=spec,
            target_customer_id=meta["target_customer_id"],
            manager_staff_id=meta["manager_staff_id"],
            touchpoint_rows=total,
            target_rows=target,
            customer_rows=customers,
            generated=False,
            generation_seconds=meta.get("generation_seconds"),
        )
    finally:
        conn.close()


def ensure_dataset(spec: Spec | None = None, *, force: bool = False, url: str | None = None) -> Dataset:
    spec = spec or Spec()
    url = url or database_url()
    if not force:
        found = existing_dataset(url, spec)
        if found is not None:
            print(
                f"[datagen] dataset present ({found.touchpoint_rows:,} touchpoints, "
                f"{found.target_rows:,} for customer {found.target_customer_id}); generation skipped"
            )
            return found
    return generate(spec, url)


# ---------------------------------------------------------------------------------------------
# Generation


def generate(spec: Spec, url: str) -> Dataset:
    from sqlalchemy.orm import Session

    from backend.platform.db import make_engine
    from backend.platform.migrate import head_revision, upgrade

    if spec.target_touchpoints > spec.touchpoints:
        raise SystemExit("target_touchpoints must not exceed touchpoints")
    started = time.perf_counter()
    name = make_url(url).database
    if not name or not name.replace("_", "").isalnum():
        raise SystemExit(f"refusing an odd bench database name: {name!r}")
    print(f"[datagen] (re)creating database {name} and generating {spec.touchpoints:,} touchpoints ...", flush=True)

    server = _connect(url, database=False)
    try:
        with server.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        server.commit()
    finally:
        server.close()

    engine = make_engine(_sqlalchemy_url(url))
    try:
        t = time.perf_counter()
        upgrade(engine)
        print(f"[datagen]   schema (alembic upgrade head): {time.perf_counter() - t:.1f} s", flush=True)

        t = time.perf_counter()
        with Session(engine) as session:
            stores, advisors_by_store, manager_id = _org_and_staff(session)
            session.commit()
        rng = random.Random(spec.seed)
        target_id, home_store = _customers(engine, spec, rng, stores, advisors_by_store)
        print(
            f"[datagen]   org tree, {sum(len(a) for a in advisors_by_store.values()) + len(stores)} staff, "
            f"{spec.other_customers + 1:,} customers: {time.perf_counter() - t:.1f} s",
            flush=True,
        )
    finally:
        engine.dispose()

    t = time.perf_counter()
    method = _load_touchpoints(url, spec, rng, target_id, home_store, stores, advisors_by_store)
    print(f"[datagen]   {spec.touchpoints:,} touchpoints ({method}): {time.perf_counter() - t:.1f} s", flush=True)

    t = time.perf_counter()
    conn = _connect(url)
    try:
        with conn.cursor() as cur:
            for table in ("org_unit", "staff", "customer", "customer_advisor", "touchpoint"):
                cur.execute(f"ANALYZE TABLE {table}")
                cur.fetchall()
        elapsed = time.perf_counter() - started
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE bench_meta (k VARCHAR(64) PRIMARY KEY, v TEXT NOT NULL) CHARACTER SET utf8mb4")
            meta = {
                "spec": asdict(spec),
                "alembic_head": head_revision(),
                "target_customer_id": target_id,
                "manager_staff_id": manager_id,
                "generation_seconds": round(elapsed, 1),
                "load_method": method,
                "generated_at": datetime.now(UTC).isoformat(),
            }
            cur.execute("INSERT INTO bench_meta (k, v) VALUES ('dataset', %s)", (json.dumps(meta),))
        conn.commit()
    finally:
        conn.close()
    print(f"[datagen]   analyze: {time.perf_counter() - t:.1f} s", flush=True)
    print(f"[datagen] generation took {elapsed:.1f} s", flush=True)
    return Dataset(
        spec=spec,
        target_customer_id=target_id,
        manager_staff_id=manager_id,
        touchpoint_rows=spec.touchpoints,
        target_rows=spec.target_touchpoints,
        customer_rows=spec.other_customers + 1,
        generated=True,
        generation_seconds=round(elapsed, 1),
    )


def _org_and_staff(session: Any) -> tuple[list[int], dict[int, list[int]], int]:
    """group -> 2 divisions -> 2 regions each -> 5 stores each; per store one store manager and
    four advisors; the manager of the first store is the requesting staff member."""
    from backend.org.models import OrgKind, OrgUnit, Role, Staff, StaffRole
    from backend.org.service import org_path

    def unit(kind: OrgKind, code: str, name: str, parent: OrgUnit | None) -> OrgUnit:
        u = OrgUnit(kind=kind, code=code, name=name, parent_id=parent.id if parent else None, path="/")
        session.add(u)
        session.flush()
        u.path = org_path(parent, u.id)
        return u

    group = unit(OrgKind.GROUP, "bench-group", "基准集团", None)
    stores: list[OrgUnit] = []
    for d in range(2):
        division = unit(OrgKind.DIVISION, f"bench-div-{d}", f"事业部{d}", group)
        for r in range(2):
            region = unit(OrgKind.REGION, f"bench-region-{d}-{r}", f"区域{d}-{r}", division)
            for s in range(N_STORES // 4):
                stores.append(unit(OrgKind.STORE, f"bench-store-{d}-{r}-{s}", f"门店{d}-{r}-{s}", region))
    session.flush()

    def staff(store: OrgUnit, userid: str, name: str, role: Role) -> Staff:
        st = Staff(corp_id="default", wecom_userid=userid, name=name, org_unit_id=store.id)
        st.role_rows = [StaffRole(role=role)]
        session.add(st)
        return st

    managers: list[Staff] = []
    advisors: dict[int, list[Staff]] = {}
    for i, store in enumerate(stores):
        managers.append(staff(store, f"bench-manager-{i}", f"店长{i}", Role.STORE_MANAGER))
        advisors[store.id] = [
            staff(
                store,
                f"bench-advisor-{i}-{a}",
                f"顾问{i}-{a}",
                Role.SALES_ADVISOR if a % 2 == 0 else Role.SERVICE_ADVISOR,
            )
            for a in range(ADVISORS_PER_STORE)
        ]
    session.flush()
    return (
        [s.id for s in stores],
        {store_id: [a.id for a in rows] for store_id, rows in advisors.items()},
        managers[TARGET_STORE_INDEX].id,
    )


def _customers(
    engine: Any, spec: Spec, rng: random.Random, stores: list[int], advisors_by_store: dict[int, list[int]]
) -> tuple[int, dict[int, int]]:
    """`other_customers` + 1 customers with ids 1..N+1; the target sits in the middle, at the
    requesting manager's store, with a sales and a service advisor."""
    from backend.customers.models import Customer, CustomerAdvisor, CustomerIdentity, IdentityKind

    total = spec.other_customers + 1
    target_id = total // 2 + 1
    now = datetime.now(UTC)
    stages = ("lead", "prospect", "owner", "owner", "loyal", "at_risk")
    home_store: dict[int, int] = {}
    customers, advisors = [], []
    for cid in range(1, total + 1):
        store = stores[TARGET_STORE_INDEX] if cid == target_id else stores[rng.randrange(len(stores))]
        home_store[cid] = store
        customers.append(
            {
                "id": cid,
                "name": f"客户{cid}",
                "gender": rng.choice(("unknown", "male", "female")),
                "home_store_id": store,
                "lifecycle_stage": rng.choice(stages),
                "tier": "standard",
                "acquisition_channel": rng.choice(("wecom", "miniprogram", "store")),
                "created_at": now,
                "updated_at": now,
            }
        )
        advisors.append(
            {"customer_id": cid, "staff_id": advisors_by_store[store][0], "role": "sales_advisor", "assigned_at": now}
        )
        if cid == target_id:
            advisors.append(
                {
                    "customer_id": cid,
                    "staff_id": advisors_by_store[store][1],
                    "role": "service_advisor",
                    "assigned_at": now,
                }
            )
    with engine.begin() as conn:
        for i in range(0, len(customers), 5000):
            conn.execute(Customer.__table__.insert(), customers[i : i + 5000])
        for i in range(0, len(advisors), 5000):
            conn.execute(CustomerAdvisor.__table__.insert(), advisors[i : i + 5000])
        conn.execute(
            CustomerIdentity.__table__.insert(),
            [
                {
                    "customer_id": target_id,
                    "kind": IdentityKind.OPENID,
                    "value": "bench-openid-target",
                    "created_at": now,
                },
            ],
        )
    return target_id, home_store


def _touchpoint_rows(
    spec: Spec, rng: random.Random, target_id: int, home_store: dict[int, int], advisors_by_store: dict[int, list[int]]
) -> Any:
    """Yields the touchpoint rows in id order. `recorded_at` grows with the id over ~3 years;
    `occurred_at` lags it for 10 % of the rows (late callbacks, back-filled DMS data), so id
    order is not time order; every 100th touchpoint of the target repeats the previous one's
    `occurred_at` so that the keyset's id tie-break is exercised."""
    start = datetime(2023, 1, 1, tzinfo=UTC)
    step = timedelta(days=3 * 365) / spec.touchpoints
    target_positions = set(rng.sample(range(spec.touchpoints), spec.target_touchpoints))
    others = [cid for cid in home_store if cid != target_id]
    kinds = [k for k in _KINDS for _ in range(k[3])]
    last_target_at: datetime | None = None
    n_target = 0
    for i in range(spec.touchpoints):
        tid = i + 1
        recorded = start + step * i + timedelta(microseconds=rng.randrange(1_000_000))
        occurred = recorded
        if rng.random() < 0.10:
            occurred = recorded - timedelta(seconds=rng.randrange(1, 2 * 86400))
        if i in target_positions:
            cid = target_id
            n_target += 1
            if last_target_at is not None and n_target % 100 == 0:
                occurred = last_target_at
            last_target_at = occurred
        else:
            cid = others[rng.randrange(len(others))]
        kind, channel, source, _w, make_payload = kinds[rng.randrange(len(kinds))]
        store = home_store[cid]
        advisor = advisors_by_store[store][rng.randrange(ADVISORS_PER_STORE)] if channel in _ADVISOR_CHANNELS else None
        payload = make_payload(rng, tid) if make_payload is not None else None
        yield (tid, occurred, recorded, cid, advisor, store, channel, kind, source, f"bench:{kind}:{tid}", payload)


def _load_touchpoints(
    url: str,
    spec: Spec,
    rng: random.Random,
    target_id: int,
    home_store: dict[int, int],
    stores: list[int],
    advisors_by_store: dict[int, list[int]],
) -> str:
    rows = _touchpoint_rows(spec, rng, target_id, home_store, advisors_by_store)
    conn = _connect(url, local_infile=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.local_infile")
            infile = bool(cur.fetchone()[0])
        if infile and os.environ.get("BENCH_NO_LOAD_DATA") != "1":
            _load_data_infile(conn, rows, spec)
            return "LOAD DATA LOCAL INFILE"
        _insert_many(conn, rows)
        return "multi-row INSERT"
    finally:
        conn.close()


def _load_data_infile(conn: pymysql.Connection, rows: Any, spec: Spec, chunk: int = 250_000) -> None:
    """TSV files of `chunk` rows, one LOAD DATA (one transaction) each."""
    cols = ", ".join(TOUCHPOINT_COLUMNS)
    with tempfile.TemporaryDirectory(prefix="dealerloop-bench-") as tmp:
        path = os.path.join(tmp, "touchpoint.tsv")
        done = 0
        while done < spec.touchpoints:
            n = 0
            with open(path, "w", encoding="utf-8", newline="\n") as fh:
                write = fh.write
                null = "\\N"
                for tid, occurred, recorded, cid, advisor, store, channel, kind, source, ref, payload in rows:
                    body = null if payload is None else json.dumps(payload, ensure_ascii=False, separators=(", ", ": "))
                    write(
                        f"{tid}\t{_ts(occurred)}\t{_ts(recorded)}\t{cid}\t{null if advisor is None else advisor}\t"
                        f"{store}\t{channel}\t{kind}\t{source}\t{ref}\t{body}\n"
                    )
                    n += 1
                    if n == chunk:
                        break
            with conn.cursor() as cur:
                cur.execute(
                    f"LOAD DATA LOCAL INFILE %s INTO TABLE touchpoint CHARACTER SET utf8mb4 "
                    f"FIELDS TERMINATED BY '\\t' LINES TERMINATED BY '\\n' ({cols})",
                    (path,),
                )
                if cur.rowcount != n:
                    raise SystemExit(f"LOAD DATA loaded {cur.rowcount} rows of {n}")
                cur.execute("SHOW WARNINGS LIMIT 5")
                warnings = cur.fetchall()
                if warnings:
                    raise SystemExit(f"LOAD DATA warnings: {warnings}")
            conn.commit()
            done += n
            print(f"[datagen]     {done:,} touchpoints", flush=True)


def _insert_many(conn: pymysql.Connection, rows: Any, batch: int = 5000) -> None:
    sql = f"INSERT INTO touchpoint ({', '.join(TOUCHPOINT_COLUMNS)}) VALUES ({', '.join(['%s'] * len(TOUCHPOINT_COLUMNS))})"
    buf: list[tuple[Any, ...]] = []
    done = 0

    def flush() -> None:
        nonlocal done
        with conn.cursor() as cur:
            cur.executemany(sql, buf)  # PyMySQL rewrites this into multi-row INSERTs
        conn.commit()
        done += len(buf)
        buf.clear()
        if done % 200_000 == 0:
            print(f"[datagen]     {done:,} touchpoints", flush=True)

    for tid, occurred, recorded, cid, advisor, store, channel, kind, source, ref, payload in rows:
        buf.append(
            (
                tid,
                _ts(occurred),
                _ts(recorded),
                cid,
                advisor,
                store,
                channel,
                kind,
                source,
                ref,
                None if payload is None else json.dumps(payload, ensure_ascii=False, separators=(", ", ": ")),
            )
        )
        if len(buf) == batch:
            flush()
    if buf:
        flush()


# ---------------------------------------------------------------------------------------------
# Facts derived from the data


def deep_cursor(url: str, customer_id: int, depth: int) -> tuple[str, int]:
    """The cursor the app would hand out after `depth` rows of the customer's timeline (the
    next page starts at row depth + 1), encoded by the app's own `encode_cursor`."""
    from backend.touchpoints.service import encode_cursor

    conn = _connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT occurred_at, id FROM touchpoint WHERE customer_id = %s "
                "ORDER BY occurred_at DESC, id DESC LIMIT 1 OFFSET %s",
                (customer_id, depth - 1),
            )
            row = cur.fetchone()
    finally:
        conn.close()
    if row is None:
        raise SystemExit(f"customer {customer_id} has fewer than {depth} touchpoints")
    occurred, ident = row
    return encode_cursor(SimpleNamespace(occurred_at=occurred.replace(tzinfo=UTC), id=ident)), depth


def table_stats(url: str) -> dict[str, Any]:
    conn = _connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT table_name, table_rows, data_length, index_length FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name IN ('touchpoint', 'customer')"
            )
            stats = {
                name: {"approx_rows": rows, "data_mb": round(d / 2**20, 1), "index_mb": round(ix / 2**20, 1)}
                for name, rows, d, ix in cur.fetchall()
            }
            cur.execute("SELECT VERSION(), @@innodb_buffer_pool_size")
            version, pool = cur.fetchone()
        return {"tables": stats, "server_version": version, "innodb_buffer_pool_mb": int(pool) // 2**20}
    finally:
        conn.close()
