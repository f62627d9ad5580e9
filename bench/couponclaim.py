"""Benchmark: a coupon grab, app vs the bare conditional UPDATE.

One coupon template (a wash voucher, stock 1,000, one per member) and 2,000 members (JWT owner
tokens minted like the tests' `_owner_headers`), each POSTing `POST /api/app/v1/offers/<id>/claim`
once, all at once, through gunicorn on MariaDB: exactly 1,000 must get 201 and 1,000
`409 coupon.sold_out`.

The baseline is the claim's step 1 alone, the hot-row statement `UPDATE coupon_template SET
issued = issued + 1 WHERE id = %s AND issued < stock` (autocommitted), from the same 2,000 client
threads with PyMySQL, each once, on the same row (`issued` reset to 0 before the app's run).
MariaDB here accepts 151 connections and is shared, so the threads share a pool of
`baseline_connections` connections (the app reaches MariaDB through its 4 gunicorn workers).

Correctness is checked after the app's run: 201s == coupons of the template == its stock,
`issued` == stock, no member with two coupons (nor a claim counter above 1), every non-201 answer
`409 coupon.sold_out`, one `coupon_claimed` touchpoint per coupon.
"""

from __future__ import annotations

import json
import queue
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import benchdb, loadgen, procstat, report, servers
from bench.appenv import SECRET_KEY, app_env, in_process_app

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SOLD_OUT = "409 coupon.sold_out"
BASELINE_SQL = (
    "UPDATE coupon_template SET issued = coupon_template.issued + %s WHERE coupon_template.id = %s "
    "AND coupon_template.issued < coupon_template.stock"
)
# 2,000 simultaneous connects: gunicorn's listen backlog above the client count (the kernel caps
# it at net.core.somaxconn, 4096 here), so that no SYN is dropped and retried a second later.
BACKLOG = "4096"
# A safety cap, not a measurement window: a request still unanswered then counts as a failure.
CAP_S = 240.0


def claim_path(template_id: int) -> str:
    return f"/api/app/v1/offers/{template_id}/claim"


def setup_members(url: str, members: int) -> tuple[list[int], list[dict[str, str]], float]:
    """`members` customers and their owner tokens (no points, no cars: the template asks nothing)."""
    from backend.customers.models import Customer
    from backend.platform.db import db
    from backend.platform.tokens import issue_access_token

    started = time.perf_counter()
    app = in_process_app(url)
    with app.app_context():
        s = db.session()
        customers = [Customer(name=f"领券会员{i}") for i in range(members)]
        s.add_all(customers)
        s.commit()
        ids = [c.id for c in customers]
        db.session.remove()
        db.engine.dispose()
    headers = [{"Authorization": f"Bearer {issue_access_token(SECRET_KEY, 'owner', cid, 3600)}"} for cid in ids]
    return ids, headers, time.perf_counter() - started


def create_template(url: str, stock: int, name: str) -> int:
    from backend.offers.models import CouponKind, CouponTemplate
    from backend.platform.db import db, utcnow

    app = in_process_app(url)
    with app.app_context():
        s = db.session()
        now = utcnow()
        template = CouponTemplate(
            name=name,
            kind=CouponKind.VOUCHER,
            service_type="wash",
            stock=stock,
            per_member_limit=1,
            claim_starts_at=now - timedelta(hours=1),
            claim_ends_at=now + timedelta(days=1),
            use_days=30,
        )
        s.add(template)
        s.commit()
        template_id = template.id
        db.session.remove()
        db.engine.dispose()
    return template_id


def reset_issued(url: str, template_id: int) -> None:
    conn = benchdb.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE coupon_template SET issued = 0 WHERE id = %s", (template_id,))
    finally:
        conn.close()


def claim_sql(url: str, template_id: int, headers: dict[str, str]) -> list[str]:
    """In-process, the statements one claim sends (SQLAlchemy events), for the report; and a check
    that the claim's first write is still the baseline's statement."""
    from backend.platform.db import db

    app = in_process_app(url)
    out: list[tuple[int, bytes]] = []

    def one() -> None:
        resp = app.test_client().post(claim_path(template_id), headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
        out.append((resp.status_code, resp.data))

    with app.app_context():
        try:
            statements = benchdb.capture_sql(app, one)
        finally:
            db.engine.dispose()
    status, raw = out[0]
    if status != 201:
        raise SystemExit(f"in-process claim: HTTP {status}: {raw[:300]!r}")
    writes = [s for s in statements if s.split(" ", 1)[0] in ("UPDATE", "INSERT")]
    step1 = [s for s in writes if s.startswith("UPDATE coupon_template")]
    if not step1 or "coupon_template.issued < coupon_template.stock" not in step1[0]:
        raise SystemExit(f"the claim no longer takes stock with `issued < stock`; the baseline is stale: {step1}")
    return statements


# ---------------------------------------------------------------------------------------------
# Baseline: the conditional UPDATE from the same number of client threads, once each


def run_baseline(url: str, template_id: int, stock: int, clients: int, connections: int) -> dict[str, Any]:
    reset_issued(url, template_id)
    pool: queue.Queue = queue.Queue()
    conns = [benchdb.connect(url) for _ in range(connections)]
    for c in conns:
        pool.put(c)
    lock = threading.Lock()
    records: list[tuple[float, float, bool]] = []
    barrier = threading.Barrier(clients + 1)
    errors: list[str] = []

    def client() -> None:
        barrier.wait()
        perf = time.perf_counter
        try:
            t0 = perf()
            conn = pool.get()
            try:
                with conn.cursor() as cur:
                    won = cur.execute(BASELINE_SQL, (1, template_id)) == 1
            finally:
                pool.put(conn)
            with lock:
                records.append((t0, perf(), won))
        except Exception as exc:  # noqa: BLE001 - reported, stops the run below
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join(300)
    for c in conns:
        c.close()
    if errors:
        raise SystemExit(f"baseline: {len(errors)} errors, e.g. {errors[0]}")
    issued_after = benchdb.scalar(url, "SELECT issued FROM coupon_template WHERE id = %s", (template_id,))
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
        "ok_p50_ms": round(loadgen.percentile(win_ms, 50), 2),
        "ok_p99_ms": round(loadgen.percentile(win_ms, 99), 2),
        "connections": connections,
        "correct": {
            "updates_won": len(wins),
            "issued_after": issued_after,
            "ok": len(wins) == stock == issued_after and len(records) == clients,
        },
    }


# ---------------------------------------------------------------------------------------------
# App


def run_app(
    server: servers.Server, url: str, template_id: int, stock: int, headers: list[dict[str, str]]
) -> dict[str, Any]:
    path = claim_path(template_id)
    run_id = uuid.uuid4().hex[:8]

    def script(client: int, seq: int, previous: loadgen.Exchange | None) -> loadgen.Request | None:
        if previous is not None:
            return None  # once each
        h = {**headers[client], "Idempotency-Key": f"coupon-{run_id}-{client}"}
        return loadgen.Request("POST", path, h, None)

    mysqld = procstat.find_pid("mariadbd", "mysqld")
    cpu0 = procstat.tree_cpu_seconds(server.process.pid)
    db0 = procstat.tree_cpu_seconds(mysqld) if mysqld else None
    sys0 = procstat.system_cpu_seconds()
    client0 = time.process_time()
    result = loadgen.run_script(
        "127.0.0.1", server.port, script, clients=len(headers), max_duration=CAP_S, timeout=CAP_S
    )
    client1 = time.process_time()
    sys1 = procstat.system_cpu_seconds()
    cpu1 = procstat.tree_cpu_seconds(server.process.pid)
    db1 = procstat.tree_cpu_seconds(mysqld) if mysqld else None
    out = result.summary(ok=(201,))
    codes: dict[str, int] = {}
    for e in result.exchanges:
        if e.status == 201:
            continue
        if not e.status:
            key = f"transport error: {(e.error or '?')[:80]}"
        else:
            try:
                key = f"{e.status} {json.loads(e.body).get('code', '?')}"
            except ValueError:
                key = f"{e.status} ?"
        codes[key] = codes.get(key, 0) + 1
    out["refusals"] = codes
    # wx.request gives up after 60 s (its default and its maximum): these members saw a failure.
    out["answers_over_60s"] = sum(1 for e in result.exchanges if e.status and e.latency_ms > 60_000)
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
    out["correct"] = check_books(url, template_id, stock, len(headers), out["ok"], codes)
    return out


def check_books(
    url: str, template_id: int, stock: int, clients: int, created: int, refusals: dict[str, int]
) -> dict[str, Any]:
    from sqlalchemy import func, select

    from backend.offers.models import Coupon, CouponClaimCounter, CouponTemplate
    from backend.platform.db import db
    from backend.touchpoints.models import Kind, Touchpoint

    app = in_process_app(url)
    with app.app_context():
        s = db.session()
        issued = s.get(CouponTemplate, template_id).issued
        of_template = Coupon.template_id == template_id
        coupons = s.scalar(select(func.count()).select_from(Coupon).where(of_template))
        holders = s.scalar(select(func.count(func.distinct(Coupon.customer_id))).where(of_template))
        per_member = select(func.count().label("n")).where(of_template).group_by(Coupon.customer_id).subquery()
        most = s.scalar(select(func.coalesce(func.max(per_member.c.n), 0)))
        counted = s.scalar(
            select(func.coalesce(func.sum(CouponClaimCounter.claimed), 0)).where(
                CouponClaimCounter.template_id == template_id
            )
        )
        counter_max = s.scalar(
            select(func.coalesce(func.max(CouponClaimCounter.claimed), 0)).where(
                CouponClaimCounter.template_id == template_id
            )
        )
        refs = select(func.concat("coupon:", Coupon.id, ":issued")).where(of_template)
        touchpoints = s.scalar(
            select(func.count())
            .select_from(Touchpoint)
            .where(Touchpoint.kind == Kind.COUPON_CLAIMED, Touchpoint.source_ref.in_(refs))
        )
        db.session.remove()
        db.engine.dispose()
    result = {
        "http_201": created,
        "coupons": coupons,
        "issued_after": issued,
        "members_holding": holders,
        "most_coupons_of_one_member": most,
        "members_with_two_or_more": coupons - holders,
        "counter_claimed_sum": int(counted),
        "counter_claimed_max": counter_max,
        "sold_out_answers": refusals.get(SOLD_OUT, 0),
        "answers_other_than_201_or_sold_out": sum(v for k, v in refusals.items() if k != SOLD_OUT),
        "coupons_with_a_claimed_touchpoint": touchpoints,
    }
    result["ok"] = (
        created == coupons == issued == stock
        and most <= 1
        and coupons == holders
        and counted == coupons
        and counter_max <= 1
        and result["sold_out_answers"] == clients - stock
        and result["answers_other_than_201_or_sold_out"] == 0
        and touchpoints == coupons
    )
    return result


def _ratio(a: Any, b: Any) -> float | None:
    return round(a / b, 3) if a is not None and b else None


# ---------------------------------------------------------------------------------------------
# Report (the generic helpers of bench/report.py)


def table(doc: dict[str, Any]) -> str:
    head = (
        "",
        "",
        "claimed",
        "requests",
        "claims / s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "p50 / p99 ms (201s)",
        "gunicorn CPU ms/req",
        "MariaDB CPU ms/req",
        "other procs CPU %",
        "correct",
    )
    st = doc["settings"]
    title = f"stock {st['stock']:,}, {st['clients']:,} clients, once each"
    rows: list[tuple[str, ...]] = []
    for impl in ("baseline", "app"):
        m = doc["results"][impl]
        c = m["correct"]
        if impl == "app":
            correct = (
                f"{'yes' if c['ok'] else '**NO**'}: {c['coupons']:,} coupons, issued {c['issued_after']:,}, "
                f"{c['members_with_two_or_more']} members with 2+, {c['sold_out_answers']:,} sold out, "
                f"{c['answers_other_than_201_or_sold_out']} other answers"
            )
        else:
            correct = f"{'yes' if c['ok'] else '**NO**'}: {c['updates_won']:,} won, issued {c['issued_after']:,}"
        rows.append(
            (
                title,
                f"baseline ({m['connections']} connections)" if impl == "baseline" else "app",
                report._fmt(m["ok"]),
                report._fmt(m["requests"]),
                report._fmt(m["ok_per_s"], 1),
                report._fmt(m["p50_ms"]),
                report._fmt(m["p95_ms"]),
                report._fmt(m["p99_ms"]),
                f"{report._fmt(m['ok_p50_ms'])} / {report._fmt(m['ok_p99_ms'])}",
                report._fmt(m.get("gunicorn_cpu_ms_per_req")),
                report._fmt(m.get("mariadb_cpu_ms_per_req")),
                report._fmt(m.get("other_processes_cpu_pct"), 0),
                correct,
            )
        )
    r = doc["results"]["ratio_app_over_baseline"]
    rows.append(
        (
            title,
            "**app / baseline**",
            "",
            "",
            report._bold(r["ok_per_s"], 3),
            report._bold(r["p50"]),
            "",
            report._bold(r["p99"]),
            "",
            "",
            "",
            "",
            "",
        )
    )
    return report._table(head, rows)


def readme_section(doc: dict[str, Any], tbl: str) -> str:
    st = doc["settings"]
    lines = [
        report._env_line(doc),
        "",
        f"Load: {st['client']}; gunicorn `{' '.join(st['gunicorn'])}`; template: {st['template']}; baseline: "
        f"`{st['baseline_sql']}` autocommitted, {st['clients']:,} threads over {st['baseline_connections']} "
        "PyMySQL connections.",
        "",
        tbl,
        "",
        "`claims / s` = successful claims (201, or a baseline UPDATE that changed the row) from the start "
        "barrier to the last success; latencies are over every answer (sold-out ones included). Ratios are "
        "app / baseline: below 1 for claims/s and above 1 for latencies means the app is slower.",
        "",
        f"{doc['results']['app']['answers_over_60s']:,} of the app's {doc['results']['app']['requests']:,} answers "
        "took longer than 60 s, the mini-program's `wx.request` timeout (its default and its maximum): in the app "
        "those members would have seen a failure.",
        "",
        f"One claim sends {len(doc['sql_per_claim'])} statements to MariaDB "
        f"({report._sql_kinds(doc['sql_per_claim'])}; in-process capture, the list is in "
        "`results/couponclaim.json`).",
        "",
        f"Run time: {doc['timings_s']['total']:.0f} s (schema {doc['timings_s']['schema']:.0f} s, members "
        f"{doc['timings_s']['members']:.0f} s).",
    ]
    return "\n".join(lines)


def run(
    *, clients: int = 2000, stock: int = 1000, baseline_connections: int = 32, update_readme: bool = True
) -> dict[str, Any]:
    t_start = time.perf_counter()
    url = benchdb.url_for("coupon")
    print(f"[couponclaim] (re)creating {url.rsplit('/', 1)[-1]} with the migrations ...", flush=True)
    t_schema = benchdb.recreate(url, "couponclaim")
    ids, headers, t_members = setup_members(url, clients)
    print(f"[couponclaim] schema {t_schema:.1f} s; {len(ids):,} members and owner tokens: {t_members:.1f} s")

    log_dir = Path(tempfile.mkdtemp(prefix="dealerloop-bench-logs-"))
    settings = servers.with_setting("--backlog", BACKLOG)
    srv = servers.start("app", "wsgi:app", app_env(url), log_dir, settings=settings)
    try:
        servers.wait_ready(srv, "/healthz", {})
        # warm every worker's claim path (imports, first queries) on a throw-away template
        warm = create_template(url, 50, "预热券")
        for i in range(16):
            h = {**headers[i], "Idempotency-Key": f"warm-{i}"}
            status, raw = servers.request(srv, "POST", claim_path(warm), h, None)
            if status != 201:
                raise SystemExit(f"warm-up claim: HTTP {status}: {raw[:500]!r}\n{srv.log_tail()}")
        print(f"[couponclaim] gunicorn up on :{srv.port} ({' '.join(settings)}); warmed up", flush=True)
        sql = claim_sql(url, warm, headers[-1])
        print(f"[couponclaim] one claim sends {len(sql)} statements (in-process capture)", flush=True)

        template_id = create_template(url, stock, "限量洗车券")
        print(f"[couponclaim] baseline: {clients:,} threads over {baseline_connections} connections ...", flush=True)
        base = run_baseline(url, template_id, stock, clients, baseline_connections)
        print(
            f"[couponclaim]   baseline: {base['ok']:,} won in {base['ok_window_s']:.2f} s = {base['ok_per_s']}/s, "
            f"p50 {base['p50_ms']} ms, p99 {base['p99_ms']} ms; issued after {base['correct']['issued_after']}",
            flush=True,
        )
        reset_issued(url, template_id)
        print(f"[couponclaim] app: {clients:,} clients claiming once each ...", flush=True)
        app = run_app(srv, url, template_id, stock, headers)
        if (app.get("other_processes_cpu_pct") or 0) > 10:
            print(
                f"[couponclaim]   warning: other processes used {app['other_processes_cpu_pct']:.0f} % of the "
                "machine's CPU while the app was measured; the figures are noisy"
            )
        print(
            f"[couponclaim]   app: {app['ok']:,} claimed in {app['ok_window_s']:.2f} s = {app['ok_per_s']}/s, "
            f"p50 {app['p50_ms']} ms, p99 {app['p99_ms']} ms; statuses {app['statuses']}; "
            f"correct: {app['correct']['ok']}",
            flush=True,
        )
        if not app["correct"]["ok"]:
            print(f"[couponclaim]   CORRECTNESS FAILED: {app['correct']}\n{srv.log_tail()}")
    finally:
        srv.stop()

    total = time.perf_counter() - t_start
    doc = {
        "benchmark": "couponclaim",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": benchdb.environment(url),
        "settings": {
            "gunicorn": settings,
            "clients": clients,
            "stock": stock,
            "client": "python http.client, one thread and connection per client, all released by one barrier",
            "baseline_connections": baseline_connections,
            "baseline_sql": BASELINE_SQL,
            "template": "voucher (wash), per-member limit 1, claim window open, use 30 days; "
            "Idempotency-Key on every request",
        },
        "sql_per_claim": sql,
        "results": {
            "baseline": base,
            "app": app,
            "ratio_app_over_baseline": {
                "ok_per_s": _ratio(app["ok_per_s"], base["ok_per_s"]),
                "p50": _ratio(app["p50_ms"], base["p50_ms"]),
                "p95": _ratio(app["p95_ms"], base["p95_ms"]),
                "p99": _ratio(app["p99_ms"], base["p99_ms"]),
            },
        },
        "timings_s": {"schema": round(t_schema, 1), "members": round(t_members, 1), "total": round(total, 1)},
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / "couponclaim.json"
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    tbl = table(doc)
    print()
    print(tbl)
    print(f"\n[couponclaim] results: {out.relative_to(servers.REPO_ROOT)}; took {total:.0f} s")
    if update_readme:
        report.update_readme("couponclaim", readme_section(doc, tbl))
    if not app["correct"]["ok"] or not base["correct"]["ok"]:
        raise SystemExit(f"[couponclaim] correctness failed: see {out}")
    return doc
