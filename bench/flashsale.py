"""Benchmark: a points-mall flash sale, app vs the bare conditional UPDATE.

500 members (JWT owner tokens minted like the tests' `member_headers`, points credited through
`backend.points.service.earn`) hit `POST /api/app/v1/mall/redemptions` for one physical item, all
at once, through gunicorn on MariaDB. Two scenarios:

- **stock 100**: each client redeems once — 100 must win, 400 must get `409 mall.sold_out`;
- **stock 5,000**: each client redeems again and again until it gets `mall.sold_out`, so that
  the throughput is that of successful redemptions, not of sold-out answers.

The baseline is the hot-row statement alone: `UPDATE mall_item SET stock = stock - 1, sold =
sold + 1 WHERE id = %s AND stock >= 1 AND active` (the app's step 1, autocommitted) from the
same 500 client threads with PyMySQL, on the same row (reset to the same stock), clients
stopping as the app's do. MariaDB here accepts 151 connections and is shared, so the 500
threads share a pool of `baseline_connections` connections (the app itself reaches MariaDB
through its 4 gunicorn workers, i.e. 4 connections at a time).

Correctness is checked after each app run: orders == stock, stock == 0 and sold == stock,
201s == orders, every other answer `mall.sold_out`, no negative balance, the ledger of every
member re-sums to the account (`service.check_drift`) and the points debited equal orders x price.
"""

from __future__ import annotations

import json
import queue
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import benchdb, loadgen, procstat, report, servers
from bench.appenv import SECRET_KEY, app_env, in_process_app

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PATH = "/api/app/v1/mall/redemptions"
PRICE = 100
POINTS_EACH = 10_000  # enough for 100 redemptions: the stock, not the points, decides
ADDRESS = {"name": "张三", "phone": "13800138000", "region": "上海市浦东新区", "detail": "世纪大道1号"}
BASELINE_SQL = (
    "UPDATE mall_item SET stock = stock - %s, sold = sold + %s WHERE mall_item.id = %s AND mall_item.stock >= %s "
    "AND mall_item.active IS true"
)


@dataclass(frozen=True)
class Scenario:
    name: str
    stock: int
    repeat: bool  # clients redeem until sold out (else once each)


def setup_members(url: str, members: int) -> tuple[list[int], list[dict[str, str]], float]:
    """Members with POINTS_EACH points each (through the ledger) and their owner tokens."""
    from backend.customers.models import Customer
    from backend.platform.db import db
    from backend.platform.tokens import issue_access_token
    from backend.points import service

    started = time.perf_counter()
    app = in_process_app(url)
    with app.app_context():
        s = db.session()
        customers = [Customer(name=f"抢购会员{i}") for i in range(members)]
        s.add_all(customers)
        s.commit()
        ids = [c.id for c in customers]
        db.session.remove()

    def credit(part: list[int]) -> None:  # four sessions in parallel: the ledger path is not fast
        with app.app_context():
            s = db.session()
            for cid in part:
                service.earn(
                    s,
                    cid,
                    POINTS_EACH,
                    key=f"bench:seed:{cid}",
                    reason_code="bench",
                    operator="system:bench",
                    expiry="never",
                )
            s.commit()
            db.session.remove()

    threads = [threading.Thread(target=credit, args=(ids[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with app.app_context():
        db.engine.dispose()
    headers = [
        {
            "Authorization": f"Bearer {issue_access_token(SECRET_KEY, 'owner', cid, 3600)}",
            "Content-Type": "application/json",
        }
        for cid in ids
    ]
    return ids, headers, time.perf_counter() - started


def create_item(url: str, stock: int, name: str) -> int:
    from backend.platform.db import db
    from backend.points.models import ItemKind, MallItem

    app = in_process_app(url)
    with app.app_context():
        s = db.session()
        item = MallItem(name=name, kind=ItemKind.PHYSICAL, points_price=PRICE, stock=stock, per_order_limit=1)
        s.add(item)
        s.commit()
        item_id = item.id
        db.session.remove()
        db.engine.dispose()
    return item_id


def set_stock(url: str, item_id: int, stock: int) -> None:
    conn = benchdb.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE mall_item SET stock = %s, sold = 0 WHERE id = %s", (stock, item_id))
    finally:
        conn.close()


def redemption_sql(url: str, item_id: int, headers: dict[str, str]) -> list[str]:
    """In-process, the statements one redemption sends (SQLAlchemy events), for the report."""
    from sqlalchemy import event

    from backend.platform.db import db

    app = in_process_app(url)
    statements: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()))

    def on(name: str) -> Any:
        return lambda *_a: statements.append(name)

    hooks = [("before_cursor_execute", capture), ("commit", on("COMMIT")), ("rollback", on("ROLLBACK"))]
    for name, fn in hooks:
        event.listen(db.engine, name, fn)
    try:
        body = {"item_id": item_id, "address": ADDRESS}
        resp = app.test_client().post(PATH, json=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
        if resp.status_code != 201:
            raise SystemExit(f"in-process redemption: HTTP {resp.status_code}: {resp.data[:300]!r}")
    finally:
        for name, fn in hooks:
            event.remove(db.engine, name, fn)
        db.engine.dispose()
    return statements


# ---------------------------------------------------------------------------------------------
# Baseline: the conditional UPDATE from the same number of client threads


def run_baseline(url: str, item_id: int, scenario: Scenario, clients: int, connections: int) -> dict[str, Any]:
    set_stock(url, item_id, scenario.stock)
    pool: queue.Queue = queue.Queue()
    conns = [benchdb.connect(url) for _ in range(connections)]
    for c in conns:
        pool.put(c)
    lock = threading.Lock()
    records: list[tuple[float, float, bool]] = []
    barrier = threading.Barrier(clients + 1)
    errors: list[str] = []

    def client(_i: int) -> None:
        local: list[tuple[float, float, bool]] = []
        barrier.wait()
        perf = time.perf_counter
        try:
            while True:
                t0 = perf()
                conn = pool.get()
                try:
                    with conn.cursor() as cur:
                        won = cur.execute(BASELINE_SQL, (1, 1, item_id, 1)) == 1
                finally:
                    pool.put(conn)
                local.append((t0, perf(), won))
                if not won or not scenario.repeat:
                    break
        except Exception as exc:  # noqa: BLE001 - reported, stops the run below
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            with lock:
                records.extend(local)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join(300)
    for c in conns:
        c.close()
    if errors:
        raise SystemExit(f"baseline {scenario.name}: {len(errors)} errors, e.g. {errors[0]}")
    stock_after = benchdb.scalar(url, "SELECT stock FROM mall_item WHERE id = %s", (item_id,))
    wins = [r for r in records if r[2]]
    last_win = max((r[1] for r in wins), default=started)
    all_ms = sorted((r[1] - r[0]) * 1000 for r in records)
    win_ms = sorted((r[1] - r[0]) * 1000 for r in wins)
    duration = max(r[1] for r in records) - started
    return {
        "requests": len(records),
        "ok": len(wins),
        "sold_out": len(records) - len(wins),
        "duration_s": round(duration, 3),
        "ok_window_s": round(last_win - started, 3),
        "ok_per_s": round(len(wins) / (last_win - started), 1) if wins else None,
        "answers_per_s": round(len(records) / duration, 1),
        "p50_ms": round(loadgen.percentile(all_ms, 50), 2),
        "p95_ms": round(loadgen.percentile(all_ms, 95), 2),
        "p99_ms": round(loadgen.percentile(all_ms, 99), 2),
        "max_ms": round(all_ms[-1], 2),
        "ok_p95_ms": round(loadgen.percentile(win_ms, 95), 2),
        "connections": connections,
        "correct": {"updates_won": len(wins), "stock_after": stock_after, "ok": len(wins) == scenario.stock},
    }


# ---------------------------------------------------------------------------------------------
# App


def run_app(
    server: servers.Server, url: str, item_id: int, scenario: Scenario, headers: list[dict[str, str]]
) -> dict[str, Any]:
    body = json.dumps({"item_id": item_id, "quantity": 1, "address": ADDRESS}, ensure_ascii=False).encode()
    run_id = uuid.uuid4().hex[:8]

    def script(client: int, seq: int, previous: loadgen.Exchange | None) -> loadgen.Request | None:
        if previous is not None and (not scenario.repeat or previous.status != 201):
            return None  # once each, or until the first refusal (sold out)
        h = {**headers[client], "Idempotency-Key": f"flash-{run_id}-{client}-{seq}"}
        return loadgen.Request("POST", PATH, h, body)

    mysqld = procstat.find_pid("mariadbd", "mysqld")
    cpu0 = procstat.tree_cpu_seconds(server.process.pid)
    db0 = procstat.tree_cpu_seconds(mysqld) if mysqld else None
    sys0 = procstat.system_cpu_seconds()
    client0 = time.process_time()
    # A safety cap, not a measurement window: a sale that has not sold out by then is reported as such.
    cap = max(170.0, scenario.stock * 0.08)
    result = loadgen.run_script("127.0.0.1", server.port, script, clients=len(headers), max_duration=cap, timeout=90)
    client1 = time.process_time()
    sys1 = procstat.system_cpu_seconds()
    cpu1 = procstat.tree_cpu_seconds(server.process.pid)
    db1 = procstat.tree_cpu_seconds(mysqld) if mysqld else None
    out = result.summary(ok=(201,))
    codes: dict[str, int] = {}
    for e in result.exchanges:
        if e.status and e.status != 201:
            try:
                code = json.loads(e.body).get("code", "?")
            except ValueError:
                code = "?"
            key = f"{e.status} {code}"
            codes[key] = codes.get(key, 0) + 1
    out["refusals"] = codes
    n = max(out["requests"], 1)
    out["gunicorn_cpu_ms_per_req"] = round((cpu1 - cpu0) * 1000 / n, 2) if None not in (cpu0, cpu1) else None
    out["mariadb_cpu_ms_per_req"] = round((db1 - db0) * 1000 / n, 2) if None not in (db0, db1) else None
    out["client_cpu_ms_per_req"] = round((client1 - client0) * 1000 / n, 2)
    if sys0 and sys1 and None not in (cpu0, cpu1, db0, db1):
        busy, total = sys1[0] - sys0[0], sys1[1] - sys0[1]
        ours = (cpu1 - cpu0) + (db1 - db0) + (client1 - client0)  # type: ignore[operator]
        out["machine_cpu_busy_pct"] = round(100 * busy / total, 1) if total else None
        # CPU used by anything else on the machine while measuring (other tests, builds): noise.
        out["other_processes_cpu_pct"] = round(100 * max(busy - ours, 0) / total, 1) if total else None
    out["correct"] = check_books(url, item_id, scenario, out["ok"], codes)
    return out


def check_books(url: str, item_id: int, scenario: Scenario, created: int, refusals: dict[str, int]) -> dict[str, Any]:
    from sqlalchemy import func, select

    from backend.platform.db import db
    from backend.points import service
    from backend.points.models import MallItem, MallOrder, PointsAccount, PointsLedger
    from backend.touchpoints.models import Touchpoint

    app = in_process_app(url)
    with app.app_context():
        s = db.session()
        item = s.get(MallItem, item_id)
        orders = s.scalar(select(func.count()).select_from(MallOrder).where(MallOrder.item_id == item_id))
        negative = s.scalar(select(func.count()).select_from(PointsAccount).where(PointsAccount.available < 0))
        order_nos = select(MallOrder.order_no).where(MallOrder.item_id == item_id).scalar_subquery()
        debited = -int(
            s.scalar(
                select(func.coalesce(func.sum(PointsLedger.delta + PointsLedger.frozen_delta), 0)).where(
                    PointsLedger.ref_type == "mall_order", PointsLedger.ref_id.in_(order_nos)
                )
            )
            or 0
        )
        drift = service.check_drift(s)
        members = s.scalar(select(func.count()).select_from(PointsAccount))
        tp_refs = select(func.concat("mall:", MallOrder.id, ":redeemed")).where(MallOrder.item_id == item_id)
        touchpoints = s.scalar(select(func.count()).select_from(Touchpoint).where(Touchpoint.source_ref.in_(tp_refs)))
        result = {
            "orders": orders,
            "http_201": created,
            "stock_after": item.stock,
            "sold_after": item.sold,
            "negative_balances": negative,
            "accounts_checked": members,
            "ledger_drift_members": len(drift),
            "points_debited": debited,
            "orders_with_one_touchpoint": touchpoints,
            "refusals_other_than_sold_out": sum(v for k, v in refusals.items() if k != "409 mall.sold_out"),
        }
        db.session.remove()
        db.engine.dispose()
    # The books must balance whether or not the sale finished within the bench's time cap.
    result["sold_out"] = item.stock == 0 and orders == scenario.stock
    result["ok"] = (
        orders == created
        and item.stock == scenario.stock - orders
        and item.sold == orders
        and negative == 0
        and not drift
        and debited == orders * PRICE
        and touchpoints == orders
        and result["refusals_other_than_sold_out"] == 0
    )
    if drift:
        result["drift_sample"] = drift[:3]
    return result


def _ratio(a: Any, b: Any) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def run(
    *,
    clients: int = 500,
    stocks: tuple[int, ...] = (100, 2000),
    baseline_connections: int = 32,
    update_readme: bool = True,
) -> dict[str, Any]:
    t_start = time.perf_counter()
    url = benchdb.url_for("flash")
    print(f"[flashsale] (re)creating {url.rsplit('/', 1)[-1]} with the migrations ...", flush=True)
    t_schema = benchdb.recreate(url, "flashsale")
    ids, headers, t_members = setup_members(url, clients)
    print(
        f"[flashsale] schema {t_schema:.1f} s; {len(ids)} members with {POINTS_EACH:,} points each "
        f"(service.earn) and owner tokens: {t_members:.1f} s",
        flush=True,
    )
    scenarios = [Scenario(f"stock_{s}", s, repeat=(s > clients)) for s in stocks]

    log_dir = Path(tempfile.mkdtemp(prefix="dealerloop-bench-logs-"))
    # 500 simultaneous connects: a backlog above the client count, so that no SYN is dropped
    # and retried a second later (the only setting that differs from the timeline's).
    settings = servers.with_setting("--backlog", "1024")
    srv = servers.start("app", "wsgi:app", app_env(url), log_dir, settings=settings)
    results: dict[str, Any] = {}
    try:
        servers.wait_ready(srv, "/healthz", {})
        # warm every worker's redemption path (imports, first queries) on a throw-away item
        warm_item = create_item(url, 50, "预热商品")
        warm_body = json.dumps({"item_id": warm_item, "address": ADDRESS}, ensure_ascii=False).encode()
        for i in range(16):
            status, raw = servers.request(srv, "POST", PATH, headers[i], warm_body)
            if status != 201:
                raise SystemExit(f"warm-up redemption: HTTP {status}: {raw[:500]!r}\n{srv.log_tail()}")
        print(f"[flashsale] gunicorn up on :{srv.port} ({' '.join(settings)}); warmed up", flush=True)
        sql = redemption_sql(url, warm_item, headers[-1])
        print(f"[flashsale] one redemption sends {len(sql)} statements (in-process capture)", flush=True)

        for sc in scenarios:
            item_id = create_item(url, sc.stock, f"限量洗车券 {sc.name}")
            mode = "until sold out" if sc.repeat else "once each"
            print(f"[flashsale] {sc.name}: baseline, {clients} threads over {baseline_connections} connections ...")
            base = run_baseline(url, item_id, sc, clients, baseline_connections)
            print(
                f"[flashsale]   baseline: {base['ok']} won in {base['ok_window_s']:.2f} s = {base['ok_per_s']}/s, "
                f"p95 {base['p95_ms']} ms; stock after {base['correct']['stock_after']}",
                flush=True,
            )
            set_stock(url, item_id, sc.stock)
            print(f"[flashsale] {sc.name}: app, {clients} clients redeeming {mode} ...", flush=True)
            app = run_app(srv, url, item_id, sc, headers)
            if (app.get("other_processes_cpu_pct") or 0) > 10:
                print(
                    f"[flashsale]   warning: other processes used {app['other_processes_cpu_pct']:.0f} % of the "
                    "machine's CPU while the app was measured; the figures are noisy"
                )
            print(
                f"[flashsale]   app: {app['ok']} redeemed in {app['ok_window_s']:.2f} s = {app['ok_per_s']}/s, "
                f"p95 {app['p95_ms']} ms (201s {app['ok_p95_ms']} ms); statuses {app['statuses']}; "
                f"correct: {app['correct']['ok']}",
                flush=True,
            )
            if not app["correct"]["ok"]:
                print(f"[flashsale]   CORRECTNESS FAILED: {app['correct']}\n{srv.log_tail()}")
            elif not app["correct"]["sold_out"]:
                print(
                    f"[flashsale]   not sold out within the bench's time cap: {app['correct']['orders']} of "
                    f"{sc.stock} redeemed (the books balance)"
                )
            results[sc.name] = {
                "stock": sc.stock,
                "clients": clients,
                "mode": mode,
                "baseline": base,
                "app": app,
                "ratio_app_over_baseline": {
                    "ok_per_s": _ratio(app["ok_per_s"], base["ok_per_s"]),
                    "p95": _ratio(app["p95_ms"], base["p95_ms"]),
                },
            }
    finally:
        srv.stop()

    total = time.perf_counter() - t_start
    doc = {
        "benchmark": "flashsale",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": benchdb.environment(url),
        "settings": {
            "gunicorn": settings,
            "clients": clients,
            "client": "python http.client, one thread and connection per client, all released by one barrier",
            "baseline_connections": baseline_connections,
            "baseline_sql": BASELINE_SQL,
            "item": f"physical, {PRICE} points, per-order limit 1, Idempotency-Key on every request",
            "points_each": POINTS_EACH,
        },
        "sql_per_redemption": sql,
        "scenarios": results,
        "timings_s": {"schema": round(t_schema, 1), "members": round(t_members, 1), "total": round(total, 1)},
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / "flashsale.json"
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    table = report.flashsale_table(doc)
    print()
    print(table)
    print(f"\n[flashsale] results: {out.relative_to(servers.REPO_ROOT)}; took {total:.0f} s")
    if update_readme:
        report.update_readme("flashsale", report.flashsale_readme_section(doc, table))
    failed = [n for n, r in results.items() if not r["app"]["correct"]["ok"]]
    if failed:
        raise SystemExit(f"[flashsale] correctness failed in {', '.join(failed)}: see {out}")
    return doc
