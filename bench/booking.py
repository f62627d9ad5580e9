"""Benchmark: maintenance booking, app vs the bare SQL.

Data: 60 stores with a profile, hours and a weekly capacity template; 31 days of slots each
(4 bay types x 8 blocks a day: about 60,000 slots), the measured store's made by the app's own
generator. Two scenarios, through gunicorn on MariaDB:

- **availability**: `GET /api/app/v1/booking/slots?...&days=14` — an owner's free slots for a
  car and a service type over 14 days (token, member, car, store and brand checks, calendar,
  slots, labour caps, serialisation), closed loop at `concurrency` connections for `duration`
  seconds. Baseline: the app's slot `SELECT` (the same text, captured in-process) run directly
  with PyMySQL by `concurrency` threads, one connection each, for the same time.
- **contention**: 200 owners (200 cars, owner JWTs) book the same slot of 20 places at once,
  `POST /api/app/v1/bookings` with an Idempotency-Key, in `rounds` rounds on fresh slots: exactly
  20 must get 201 and 180 `409 booking.slot_full`. Baseline: the app's conditional UPDATE
  (`UPDATE booking_slot SET booked = booked + 1 WHERE id = %s AND booked < capacity`),
  autocommitted, from 200 threads over a pool of 32 PyMySQL connections on the same kind of slot.

Correctness is checked after every app round: booked == 20 == the bookings holding the slot,
201s == 20, every other answer `booking.slot_full`, one `booking_created` touchpoint per booking.
"""

from __future__ import annotations

import json
import queue
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any

from bench import benchdb, loadgen, procstat, report, servers
from bench.appenv import SECRET_KEY, app_env, in_process_app

RESULTS_DIR = Path(__file__).resolve().parent / "results"
STORES = 60
DAYS = 31
CLIENTS = 200
PLACES = 20
CONTENTION_SQL = (
    "UPDATE booking_slot SET booked=(booking_slot.booked + %s) WHERE booking_slot.id = %s "
    "AND booking_slot.booked < booking_slot.capacity"
)


def setup(url: str) -> dict[str, Any]:
    """Org tree, stores, templates, slots, owners with cars; ids and tokens for the runs."""
    from sqlalchemy import insert, select

    from backend.booking.models import CapacityTemplate, Slot
    from backend.booking.service import generate_store
    from backend.customers.models import Car, Customer
    from backend.org.models import OrgKind, OrgUnit, Role, Staff, StaffRole
    from backend.platform.db import db
    from backend.platform.tokens import issue_access_token
    from backend.stores.models import BayType, ServiceType, StoreHours, StoreProfile
    from backend.stores.service import CHINA, ensure_service_types

    app = in_process_app(url, BOOKING_MAX_ACTIVE_PER_CAR=1000)
    with app.app_context():
        s = db.session()
        ensure_service_types(s)
        group = OrgUnit(kind=OrgKind.GROUP, code="BG", name="压测集团", path="/")
        s.add(group)
        s.flush()
        group.path = f"/{group.id}/"
        division = OrgUnit(kind=OrgKind.DIVISION, code="BD", name="压测事业部", parent_id=group.id, path="/")
        s.add(division)
        s.flush()
        division.path = f"{group.path}{division.id}/"
        region = OrgUnit(kind=OrgKind.REGION, code="BR", name="压测区域", parent_id=division.id, path="/")
        s.add(region)
        s.flush()
        region.path = f"{division.path}{region.id}/"
        stores = []
        for i in range(STORES):
            unit = OrgUnit(kind=OrgKind.STORE, code=f"BS{i:03d}", name=f"压测门店{i}", parent_id=region.id, path="/")
            s.add(unit)
            s.flush()
            unit.path = f"{region.path}{unit.id}/"
            stores.append(unit.id)
            s.add(
                StoreProfile(
                    store_id=unit.id,
                    address=f"压测路{i}号",
                    latitude=23.0 + i / 100,
                    longitude=113.0 + i / 100,
                    brands=["一汽-大众"],
                )
            )
            for weekday in range(7):
                s.add(StoreHours(store_id=unit.id, weekday=weekday, opens=clock(8), closes=clock(18)))
        store_id = stores[0]
        for weekday in range(7):
            for hour in range(9, 17):
                for bay in BayType:
                    s.add(
                        CapacityTemplate(
                            store_id=store_id, weekday=weekday, block_start=clock(hour), bay_type=bay, capacity=PLACES
                        )
                    )
        for k in range(2):
            advisor = Staff(wecom_userid=f"bench.service{k}", name=f"服务顾问{k}", org_unit_id=store_id)
            advisor.role_rows = [StaffRole(role=Role.SERVICE_ADVISOR)]
            s.add(advisor)
        s.commit()
        today = datetime.now(CHINA).date()
        first = today + timedelta(days=1)
        generate_store(s, store_id, first, DAYS)
        rows = []
        for other in stores[1:]:
            for d in range(DAYS):
                day = first + timedelta(days=d)
                for hour in range(9, 17):
                    starts = datetime.combine(day, clock(hour), CHINA).astimezone(UTC)
                    for bay in BayType:
                        rows.append(
                            {
                                "store_id": other,
                                "day": day,
                                "starts_at": starts,
                                "ends_at": starts + timedelta(hours=1),
                                "bay_type": bay.value,
                                "capacity": PLACES,
                                "booked": 0,
                            }
                        )
        for k in range(0, len(rows), 5000):
            s.execute(insert(Slot), rows[k : k + 5000])
        customers = [Customer(name=f"压测车主{i}", home_store_id=store_id) for i in range(CLIENTS)]
        s.add_all(customers)
        s.flush()
        cars = [
            Car(customer_id=c.id, vin=f"LFVBENCH{i:09d}", plate=f"粤A{i:05d}", brand="一汽-大众", mileage_km=1000)
            for i, c in enumerate(customers)
        ]
        s.add_all(cars)
        s.commit()
        service_type_id = s.scalar(select(ServiceType.id).where(ServiceType.code == "basic_maintenance"))
        slots_total = s.scalar(select(Slot.id).order_by(Slot.id.desc()).limit(1))
        owners = [(c.id, car.id) for c, car in zip(customers, cars, strict=True)]
        db.session.remove()
        db.engine.dispose()
    headers = [
        {
            "Authorization": f"Bearer {issue_access_token(SECRET_KEY, 'owner', cid, 3600)}",
            "Content-Type": "application/json",
        }
        for cid, _car in owners
    ]
    return {
        "store_id": store_id,
        "first_day": first,
        "service_type_id": service_type_id,
        "owners": owners,
        "headers": headers,
        "slots_total": slots_total,
    }


def availability_path(world: dict[str, Any]) -> str:
    car_id = world["owners"][0][1]
    return (
        f"/api/app/v1/booking/slots?store_id={world['store_id']}&service_type_id={world['service_type_id']}"
        f"&car_id={car_id}&days=14&start={world['first_day'].isoformat()}"
    )


def _slot_query(url: str, world: dict[str, Any]) -> tuple[str, Any, int]:
    """The app's slot SELECT captured in-process, as PyMySQL text with its parameters, and the
    number of items the app answers."""
    from sqlalchemy import event

    from backend.platform.db import db

    app = in_process_app(url, BOOKING_MAX_ACTIVE_PER_CAR=1000)
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_a: Any) -> None:
        if "FROM booking_slot" in statement and "booking_slot.booked < booking_slot.capacity" in statement:
            captured.append((statement, parameters))

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", capture)
        try:
            resp = app.test_client().get(availability_path(world), headers=world["headers"][0])
        finally:
            event.remove(db.engine, "before_cursor_execute", capture)
        db.engine.dispose()
    if resp.status_code != 200 or len(captured) != 1:
        raise SystemExit(f"in-process availability: HTTP {resp.status_code}, {len(captured)} slot queries")
    statement, params = captured[0]
    return " ".join(statement.split()), params, len(resp.get_json()["items"])


def run_sql_loop(url: str, sql: str, params: Any, *, concurrency: int, duration: float) -> dict[str, Any]:
    lock = threading.Lock()
    latencies: list[float] = []
    rows_seen: set[int] = set()
    barrier = threading.Barrier(concurrency + 1)
    box: list[float] = []

    def worker() -> None:
        conn = benchdb.connect(url)
        local: list[float] = []
        perf = time.perf_counter
        barrier.wait()
        deadline = box[0]
        try:
            while True:
                t0 = perf()
                if t0 >= deadline:
                    break
                with conn.cursor() as cur:
                    cur.execute(sql, params)
                    n = len(cur.fetchall())
                local.append((perf() - t0) * 1000)
            with lock:
                rows_seen.add(n)
        finally:
            conn.close()
            with lock:
                latencies.extend(local)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    box.append(started + duration)
    barrier.wait()
    for t in threads:
        t.join(duration + 30)
    elapsed = time.perf_counter() - started
    data = sorted(latencies)
    return {
        "requests": len(data),
        "rps": round(len(data) / elapsed, 1),
        "p50_ms": round(loadgen.percentile(data, 50), 2),
        "p95_ms": round(loadgen.percentile(data, 95), 2),
        "p99_ms": round(loadgen.percentile(data, 99), 2),
        "rows": sorted(rows_seen),
    }


def run_availability(
    srv: servers.Server, url: str, world: dict[str, Any], *, concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
    sql, params, items = _slot_query(url, world)
    path = availability_path(world)
    headers = world["headers"][0]
    loadgen.run("127.0.0.1", srv.port, path, headers, concurrency=concurrency, duration=warmup)
    run_sql_loop(url, sql, params, concurrency=concurrency, duration=min(warmup, 2.0))
    # Interleaved halves (baseline, app, app, baseline) so that drifting background load hits both.
    half = duration / 2
    base_runs, app_runs = [], []
    base_runs.append(run_sql_loop(url, sql, params, concurrency=concurrency, duration=half))
    cpu0 = procstat.tree_cpu_seconds(srv.process.pid)
    for _ in range(2):
        app_runs.append(loadgen.run("127.0.0.1", srv.port, path, headers, concurrency=concurrency, duration=half))
    cpu1 = procstat.tree_cpu_seconds(srv.process.pid)
    base_runs.append(run_sql_loop(url, sql, params, concurrency=concurrency, duration=half))
    latencies = sorted(x for r in app_runs for x in r.latencies_ms)
    app_requests = sum(r.requests for r in app_runs)
    app = {
        "requests": app_requests,
        "errors": sum(r.errors for r in app_runs),
        "error_samples": sorted({e for r in app_runs for e in r.error_samples})[:5],
        "rps": round(app_requests / sum(r.duration_s for r in app_runs), 1),
        "p50_ms": round(loadgen.percentile(latencies, 50), 2),
        "p95_ms": round(loadgen.percentile(latencies, 95), 2),
        "p99_ms": round(loadgen.percentile(latencies, 99), 2),
        "items": items,
        "gunicorn_cpu_ms_per_req": round((cpu1 - cpu0) * 1000 / max(app_requests, 1), 2)
        if None not in (cpu0, cpu1)
        else None,
    }
    base_lat_requests = sum(r["requests"] for r in base_runs)
    base = {
        "requests": base_lat_requests,
        "rps": round(sum(r["rps"] for r in base_runs) / len(base_runs), 1),
        "p50_ms": round(sum(r["p50_ms"] for r in base_runs) / len(base_runs), 2),
        "p95_ms": round(max(r["p95_ms"] for r in base_runs), 2),
        "p99_ms": round(max(r["p99_ms"] for r in base_runs), 2),
        "rows": sorted({n for r in base_runs for n in r["rows"]}),
    }
    same = base["rows"] == [items]
    return {
        "sql": sql,
        "app": app,
        "baseline": base,
        "same_rows": same,
        "ratio_app_over_baseline": {
            "rps": _ratio(app["rps"], base["rps"]),
            "p95": _ratio(app["p95_ms"], base["p95_ms"]),
        },
    }


# ---------------------------------------------------------------------------------------------
# Contention


def _contention_slot(url: str, store_id: int, round_no: int, bay: str) -> int:
    """A fresh slot of the measured store for a round (a different day and hour each time)."""
    return benchdb.scalar(
        url,
        "SELECT id FROM booking_slot WHERE store_id = %s AND bay_type = %s AND booked = 0 "
        "ORDER BY starts_at LIMIT 1 OFFSET %s",
        (store_id, bay, 10 + round_no * 9),
    )


def run_contention_baseline(url: str, slot_id: int, connections: int) -> dict[str, Any]:
    pool: queue.Queue = queue.Queue()
    conns = [benchdb.connect(url) for _ in range(connections)]
    for c in conns:
        pool.put(c)
    lock = threading.Lock()
    records: list[tuple[float, float, bool]] = []
    barrier = threading.Barrier(CLIENTS + 1)

    def client() -> None:
        barrier.wait()
        t0 = time.perf_counter()
        conn = pool.get()
        try:
            with conn.cursor() as cur:
                won = cur.execute(CONTENTION_SQL, (1, slot_id)) == 1
        finally:
            pool.put(conn)
        with lock:
            records.append((t0, time.perf_counter(), won))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join(120)
    for c in conns:
        c.close()
    booked = benchdb.scalar(url, "SELECT booked FROM booking_slot WHERE id = %s", (slot_id,))
    wins = [r for r in records if r[2]]
    last_win = max((r[1] for r in wins), default=started)
    all_ms = sorted((r[1] - r[0]) * 1000 for r in records)
    return {
        "requests": len(records),
        "ok": len(wins),
        "ok_window_s": round(last_win - started, 4),
        "ok_per_s": round(len(wins) / (last_win - started), 1) if wins else None,
        "p50_ms": round(loadgen.percentile(all_ms, 50), 2),
        "p95_ms": round(loadgen.percentile(all_ms, 95), 2),
        "p99_ms": round(loadgen.percentile(all_ms, 99), 2),
        "connections": connections,
        "correct": {"won": len(wins), "booked_after": booked, "ok": len(wins) == PLACES == booked},
    }


def run_contention_app(srv: servers.Server, url: str, world: dict[str, Any], slot_id: int) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    bodies = [
        json.dumps({"car_id": car_id, "service_type_id": world["service_type_id"], "slot_id": slot_id}).encode()
        for _cid, car_id in world["owners"]
    ]

    def script(client: int, seq: int, previous: loadgen.Exchange | None) -> loadgen.Request | None:
        if previous is not None:
            return None
        h = {**world["headers"][client], "Idempotency-Key": f"bk-{run_id}-{client}"}
        return loadgen.Request("POST", "/api/app/v1/bookings", h, bodies[client])

    cpu0 = procstat.tree_cpu_seconds(srv.process.pid)
    result = loadgen.run_script("127.0.0.1", srv.port, script, clients=CLIENTS, max_duration=120, timeout=90)
    cpu1 = procstat.tree_cpu_seconds(srv.process.pid)
    out = result.summary(ok=(201,))
    codes: dict[str, int] = {}
    for e in result.exchanges:
        if e.status and e.status != 201:
            try:
                code = json.loads(e.body).get("code", "?")
            except ValueError:
                code = "?"
            codes[f"{e.status} {code}"] = codes.get(f"{e.status} {code}", 0) + 1
    out["refusals"] = codes
    out["gunicorn_cpu_ms_per_req"] = (
        round((cpu1 - cpu0) * 1000 / max(out["requests"], 1), 2) if None not in (cpu0, cpu1) else None
    )
    booked = benchdb.scalar(url, "SELECT booked FROM booking_slot WHERE id = %s", (slot_id,))
    holding = benchdb.scalar(url, "SELECT COUNT(*) FROM booking WHERE slot_id = %s AND status = 'booked'", (slot_id,))
    touchpoints = benchdb.scalar(
        url,
        "SELECT COUNT(*) FROM touchpoint t JOIN booking b ON t.source_ref = CONCAT('booking:', b.id, ':v1:created') "
        "WHERE b.slot_id = %s",
        (slot_id,),
    )
    other = sum(v for k, v in codes.items() if k != "409 booking.slot_full")
    out["correct"] = {
        "booked_after": booked,
        "bookings": holding,
        "touchpoints": touchpoints,
        "refusals_other_than_full": other,
        "ok": out["ok"] == PLACES == booked == holding == touchpoints and other == 0,
    }
    return out


def _ratio(a: Any, b: Any) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _merge_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ok = sum(r["ok"] for r in rounds)
    window = sum(r["ok_window_s"] for r in rounds)
    return {
        "rounds": len(rounds),
        "ok": ok,
        "requests": sum(r["requests"] for r in rounds),
        "ok_per_s": round(ok / window, 1) if window else None,
        "p50_ms": round(sum(r["p50_ms"] for r in rounds) / len(rounds), 2),
        "p95_ms": round(sum(r["p95_ms"] for r in rounds) / len(rounds), 2),
        "p99_ms": round(sum(r["p99_ms"] for r in rounds) / len(rounds), 2),
        "correct": all(r["correct"]["ok"] for r in rounds),
    }


# ---------------------------------------------------------------------------------------------
# Report


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(doc: dict[str, Any]) -> str:
    av = doc["availability"]
    co = doc["contention"]
    head = ("scenario", "", "requests", "per s", "p50 ms", "p95 ms", "p99 ms", "gunicorn CPU ms/req", "correct")
    rows: list[tuple[str, ...]] = []
    title = f"availability, 14 days, {doc['settings']['concurrency']} connections"
    rows.append(
        (
            title,
            "baseline (the slot SELECT, PyMySQL)",
            _fmt(av["baseline"]["requests"]),
            _fmt(av["baseline"]["rps"], 1),
            _fmt(av["baseline"]["p50_ms"]),
            _fmt(av["baseline"]["p95_ms"]),
            _fmt(av["baseline"]["p99_ms"]),
            "",
            f"{av['baseline']['rows']} rows",
        )
    )
    rows.append(
        (
            title,
            "app (HTTP)",
            _fmt(av["app"]["requests"]),
            _fmt(av["app"]["rps"], 1),
            _fmt(av["app"]["p50_ms"]),
            _fmt(av["app"]["p95_ms"]),
            _fmt(av["app"]["p99_ms"]),
            _fmt(av["app"]["gunicorn_cpu_ms_per_req"]),
            f"{'yes' if av['same_rows'] else '**NO**'}: {av['app']['items']} slots, {av['app']['errors']} errors",
        )
    )
    r = av["ratio_app_over_baseline"]
    rows.append((title, "**app / baseline**", "", f"**{_fmt(r['rps'], 3)}**", "", f"**{_fmt(r['p95'])}**", "", "", ""))
    title = f"contention, {CLIENTS} owners on {PLACES} places, {co['app']['rounds']} rounds"
    for impl, label in (
        ("baseline", f"baseline (conditional UPDATE, {doc['settings']['baseline_connections']} conns)"),
        ("app", "app (HTTP)"),
    ):
        m = co[impl]
        rows.append(
            (
                title,
                label,
                _fmt(m["requests"]),
                f"{_fmt(m['ok_per_s'], 1)} booked/s",
                _fmt(m["p50_ms"]),
                _fmt(m["p95_ms"]),
                _fmt(m["p99_ms"]),
                "",
                f"{'yes' if m['correct'] else '**NO**'}: {m['ok']} won",
            )
        )
    r = co["ratio_app_over_baseline"]
    rows.append(
        (title, "**app / baseline**", "", f"**{_fmt(r['ok_per_s'], 3)}**", "", f"**{_fmt(r['p95'])}**", "", "", "")
    )
    return report._table(head, rows)


def readme_section(doc: dict[str, Any], tbl: str) -> str:
    return "\n".join(
        [
            report._env_line(doc),
            "",
            f"Data: {doc['settings']['stores']} stores, about {doc['settings']['slots']:,} slots; gunicorn "
            f"`{' '.join(doc['settings']['gunicorn'])}`. Availability baseline: the app's own slot `SELECT` "
            "(captured in-process) from the same number of threads, one PyMySQL connection each. Contention "
            f"baseline: `{CONTENTION_SQL}` autocommitted, {CLIENTS} threads over "
            f"{doc['settings']['baseline_connections']} connections.",
            "",
            tbl,
            "",
            "`booked/s` = places taken (201, or an UPDATE that changed the row) from the start barrier to the "
            "last success, over all rounds; latencies are over every answer (full-slot refusals included).",
            "",
            f"Run time: {doc['timings_s']['total']:.0f} s (setup {doc['timings_s']['setup']:.0f} s).",
        ]
    )


def run(
    *,
    concurrency: int = 8,
    duration: float = 10.0,
    warmup: float = 3.0,
    rounds: int = 3,
    baseline_connections: int = 32,
    update_readme: bool = True,
) -> dict[str, Any]:
    t_start = time.perf_counter()
    url = benchdb.url_for("booking")
    print(f"[booking] (re)creating {url.rsplit('/', 1)[-1]} with the migrations ...", flush=True)
    benchdb.recreate(url, "booking")
    world = setup(url)
    t_setup = time.perf_counter() - t_start
    print(f"[booking] {STORES} stores, {world['slots_total']:,} slots, {CLIENTS} owners: {t_setup:.1f} s", flush=True)
    log_dir = Path(tempfile.mkdtemp(prefix="dealerloop-bench-logs-"))
    settings = servers.with_setting("--backlog", "1024")
    srv = servers.start("app", "wsgi:app", app_env(url, BOOKING_MAX_ACTIVE_PER_CAR="1000"), log_dir, settings=settings)
    try:
        servers.wait_ready(srv, "/healthz", {})
        print(f"[booking] availability: {concurrency} connections, {duration:.0f} s each ...", flush=True)
        availability = run_availability(srv, url, world, concurrency=concurrency, duration=duration, warmup=warmup)
        print(
            f"[booking]   app {availability['app']['rps']}/s p95 {availability['app']['p95_ms']} ms; "
            f"SQL {availability['baseline']['rps']}/s p95 {availability['baseline']['p95_ms']} ms; "
            f"same rows: {availability['same_rows']}",
            flush=True,
        )
        # warm the booking path of every worker on a throw-away slot
        warm = _contention_slot(url, world["store_id"], 0, "quick")
        for i in range(8):
            body = json.dumps(
                {"car_id": world["owners"][i][1], "service_type_id": world["service_type_id"], "slot_id": warm}
            ).encode()
            status, raw = servers.request(srv, "POST", "/api/app/v1/bookings", world["headers"][i], body)
            if status not in (201, 409):
                raise SystemExit(f"warm-up booking: HTTP {status}: {raw[:300]!r}\n{srv.log_tail()}")
        base_rounds, app_rounds = [], []
        for n in range(rounds):
            base_slot = _contention_slot(url, world["store_id"], 2 * n + 1, "quick")
            base_rounds.append(run_contention_baseline(url, base_slot, baseline_connections))
            app_slot = _contention_slot(url, world["store_id"], 2 * n + 2, "quick")
            app_rounds.append(run_contention_app(srv, url, world, app_slot))
            print(
                f"[booking] contention round {n + 1}: baseline {base_rounds[-1]['ok_per_s']} booked/s, app "
                f"{app_rounds[-1]['ok_per_s']} booked/s (statuses {app_rounds[-1]['statuses']}, correct "
                f"{app_rounds[-1]['correct']['ok']})",
                flush=True,
            )
            if not app_rounds[-1]["correct"]["ok"]:
                print(f"[booking]   CORRECTNESS FAILED: {app_rounds[-1]['correct']} {app_rounds[-1]['refusals']}")
    finally:
        srv.stop()
    base, app = _merge_rounds(base_rounds), _merge_rounds(app_rounds)
    contention = {
        "baseline": base,
        "app": app,
        "rounds_detail": {"baseline": base_rounds, "app": app_rounds},
        "ratio_app_over_baseline": {
            "ok_per_s": _ratio(app["ok_per_s"], base["ok_per_s"]),
            "p95": _ratio(app["p95_ms"], base["p95_ms"]),
        },
    }
    total = time.perf_counter() - t_start
    doc = {
        "benchmark": "booking",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": benchdb.environment(url),
        "settings": {
            "gunicorn": settings,
            "concurrency": concurrency,
            "duration_s": duration,
            "rounds": rounds,
            "baseline_connections": baseline_connections,
            "stores": STORES,
            "slots": world["slots_total"],
            "clients": CLIENTS,
            "places": PLACES,
        },
        "availability": availability,
        "contention": contention,
        "timings_s": {"setup": round(t_setup, 1), "total": round(total, 1)},
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / "booking.json"
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")
    tbl = table(doc)
    print()
    print(tbl)
    print(f"\n[booking] results: {out.relative_to(servers.REPO_ROOT)}; took {total:.0f} s")
    if update_readme:
        report.update_readme("booking", readme_section(doc, tbl))
    if not (app["correct"] and base["correct"] and availability["same_rows"]):
        raise SystemExit(f"[booking] correctness failed: see {out}")
    return doc
