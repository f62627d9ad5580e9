"""Benchmark: the WeChat Pay payment notification handler, app vs a bare endpoint.

`POST /callbacks/wechatpay/payment` (integrations/wechatpay/notify.py) on gunicorn with MariaDB
and Redis: verify the RSA signature over the raw body with the WeChat Pay public key, check the
timestamp and serial, decrypt the AES-256-GCM resource, lock the order, mark it paid once, write
the touchpoint and the outbox row of its business effect, commit, hand the job to RQ, answer 204.

The app runs with the sandbox's credentials passed as ordinary settings (SANDBOX_ENABLED=0: the
in-app sandbox would give every gunicorn worker its own keys); the notifications are built in
the bench process by the sandbox itself (`SandboxState.build_pay_notification`: signed with the
platform key, encrypted with the APIv3 key) for payment orders created beforehand with
`backend.payments.service.create_order`. A share of the deliveries are duplicates (signed
afresh, as WeChat Pay's redeliveries are), half of them right after their original so that both
are in flight together.

Baseline: `bench.baseline_app`'s bare Flask view that reads the body and answers 204, on the
same gunicorn settings, sent the very same requests. Both are measured in interleaved rounds.

After the measurement two RQ workers (`flask --app wsgi worker --burst`) drain the effect jobs
(points earned pending, the payments listener) and the books are checked: every order paid once
with the notified transaction id, one `payments.run_effects` outbox row per order, done, one
pending-points ledger row per order, one payment touchpoint per order, no payment issue.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import benchdb, loadgen, procstat, report, rqworkers, servers

SECRET_KEY = "dealerloop-bench-secret-key-0123456789abcdef"  # fixed, bench database only
RESULTS_DIR = Path(__file__).resolve().parent / "results"
APP_PATH = "/callbacks/wechatpay/payment"
BASE_PATH = "/baseline/wechatpay/payment"
BUSINESS_TYPE = "bench_item"  # no effect of its own: the points listener is the business effect
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
CHINA = timedelta(hours=8)
DEAD_UPSTREAM = "http://127.0.0.1:9"  # discard port: refused at once


def redis_url() -> str:
    return os.environ.get("BENCH_REDIS_URL") or DEFAULT_REDIS_URL


def sandbox_credentials() -> dict[str, str]:
    from integrations.sandbox import dev_credentials

    return dev_credentials()


def app_env(url: str, credentials: dict[str, str], redis: str) -> dict[str, str]:
    return {
        "DEALERLOOP_ENV": "development",
        "DATABASE_URL": url,
        "SANDBOX_ENABLED": "0",
        "REDIS_URL": redis,
        "LOG_LEVEL": "WARNING",
        "SECRET_KEY": SECRET_KEY,
        **credentials,
        # No upstream is needed here; the workers' periodic jobs must not reach real hosts.
        "WECHAT_API_BASE": DEAD_UPSTREAM,
        "WECOM_API_BASE": DEAD_UPSTREAM,
        "WECHATPAY_GATEWAY": DEAD_UPSTREAM,
    }


def _app(url: str, credentials: dict[str, str]) -> Any:
    from backend import create_app

    return create_app({**app_env(url, credentials, ""), "SANDBOX_ENABLED": False})


def flush_redis(redis: str) -> None:
    import redis as redis_lib

    redis_lib.Redis.from_url(redis, socket_connect_timeout=2).flushdb()


def create_orders(url: str, credentials: dict[str, str], n: int, customers: int) -> tuple[list[dict[str, Any]], float]:
    """n open payment orders over `customers` members with an openid, through create_order."""
    from backend.customers.models import Customer, CustomerIdentity, IdentityKind
    from backend.payments import service
    from backend.platform.db import db

    started = time.perf_counter()
    app = _app(url, credentials)
    rng = random.Random(20261201)
    with app.app_context():
        s = db.session()
        members = [Customer(name=f"付款会员{i}") for i in range(customers)]
        s.add_all(members)
        s.flush()
        s.add_all(
            CustomerIdentity(customer_id=c.id, kind=IdentityKind.OPENID, value=f"o-bench-{c.id:08d}") for c in members
        )
        s.commit()
        ids = [c.id for c in members]
        db.session.remove()

    orders: list[dict[str, Any]] = []
    lock = threading.Lock()
    amounts = [rng.randint(100, 200_000) for _ in range(n)]

    def worker(part: list[int]) -> None:
        with app.app_context():
            s = db.session()
            mine = []
            for i in part:
                o = service.create_order(
                    s,
                    customer_id=ids[i % len(ids)],
                    business_type=BUSINESS_TYPE,
                    business_id=f"bench-{i}",
                    amount_fen=amounts[i],
                    description=f"保养套餐 {i}",
                    expires_in=timedelta(hours=2),
                )
                mine.append({"id": o.id, "out_trade_no": o.out_trade_no, "amount": o.amount_fen, "openid": o.openid})
                if len(mine) % 100 == 0:
                    s.commit()
            s.commit()
            db.session.remove()
            with lock:
                orders.extend(mine)

    parts = [list(range(k, n, 4)) for k in range(4)]
    threads = [threading.Thread(target=worker, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with app.app_context():
        db.engine.dispose()
    orders.sort(key=lambda o: o["id"])
    return orders, time.perf_counter() - started


def transaction(credentials: dict[str, str], order: dict[str, Any], transaction_id: str) -> dict[str, Any]:
    """The notification plaintext, shaped like the sandbox's `transaction_view` of a paid order."""
    now = datetime.now(UTC) + CHINA
    return {
        "appid": credentials["WECHATPAY_APPID"],
        "mchid": credentials["WECHATPAY_MCHID"],
        "out_trade_no": order["out_trade_no"],
        "transaction_id": transaction_id,
        "trade_type": "JSAPI",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "OTHERS",
        "attach": BUSINESS_TYPE,
        "success_time": now.strftime("%Y-%m-%dT%H:%M:%S+08:00"),
        "payer": {"openid": order["openid"]},
        "amount": {
            "total": order["amount"],
            "payer_total": order["amount"],
            "currency": "CNY",
            "payer_currency": "CNY",
        },
    }


def build_deliveries(
    state: Any, credentials: dict[str, str], orders: list[dict[str, Any]], duplicate_share: float, seed: int = 7
) -> tuple[list[tuple[dict[str, str], bytes]], dict[str, str], int]:
    """Signed, encrypted notifications: one per order plus `duplicate_share` x n redeliveries,
    half of them right behind their original (in flight together), half later in the run."""
    rng = random.Random(seed)
    tx_ids = {o["out_trade_no"]: "4200" + datetime.now(UTC).strftime("%Y%m%d") + secrets.token_hex(7) for o in orders}
    sequence = list(range(len(orders)))
    dups = rng.sample(range(len(orders)), int(len(orders) * duplicate_share))
    for k, i in enumerate(dups):
        first = sequence.index(i)
        at = first + 1 if k % 2 else rng.randrange(first + 1, len(sequence) + 1)
        sequence.insert(at, i)
    out = []
    for i in sequence:  # each delivery signed afresh (its own nonce and envelope id)
        order = orders[i]
        headers, body = state.build_pay_notification(transaction(credentials, order, tx_ids[order["out_trade_no"]]))
        out.append((headers, body.encode("utf-8")))
    return out, tx_ids, len(dups)


def notify_sql(
    url: str, credentials: dict[str, str], redis: str, state: Any, order: dict[str, Any]
) -> tuple[list[str], dict[str, str]]:
    """In-process (Redis configured, as on gunicorn): the statements one first notification sends."""
    from backend import create_app
    from backend.platform.db import db

    app = create_app({**app_env(url, credentials, redis), "SANDBOX_ENABLED": False})
    deliveries, tx_ids, _ = build_deliveries(state, credentials, [order], 0.0)
    headers, body = deliveries[0]
    client = app.test_client()

    def post() -> None:
        resp = client.post(APP_PATH, data=body, headers=headers)
        if resp.status_code != 204:
            raise SystemExit(f"in-process notification: HTTP {resp.status_code}: {resp.data[:300]!r}")

    try:
        return benchdb.capture_sql(app, post), tx_ids
    finally:
        db.engine.dispose()


def _script(requests: list[loadgen.Request]) -> Any:
    lock = threading.Lock()
    cursor = [0]

    def script(_client: int, _seq: int, _prev: loadgen.Exchange | None) -> loadgen.Request | None:
        with lock:
            i = cursor[0]
            cursor[0] += 1
        return requests[i] if i < len(requests) else None

    return script


def measure(server: servers.Server, requests: list[loadgen.Request], concurrency: int) -> dict[str, Any]:
    mysqld = procstat.find_pid("mariadbd", "mysqld")
    cpu0 = procstat.tree_cpu_seconds(server.process.pid)
    db0 = procstat.tree_cpu_seconds(mysqld) if mysqld else None
    sys0 = procstat.system_cpu_seconds()
    client0 = time.process_time()
    result = loadgen.run_script(
        "127.0.0.1", server.port, _script(requests), clients=concurrency, max_duration=300, timeout=30
    )
    client1 = time.process_time()
    sys1 = procstat.system_cpu_seconds()
    cpu1 = procstat.tree_cpu_seconds(server.process.pid)
    db1 = procstat.tree_cpu_seconds(mysqld) if mysqld else None
    return {
        "result": result,
        "gunicorn_cpu": (cpu1 - cpu0) if None not in (cpu0, cpu1) else None,
        "mariadb_cpu": (db1 - db0) if None not in (db0, db1) else None,
        "machine": (sys1[0] - sys0[0], sys1[1] - sys0[1]) if sys0 and sys1 else None,
        "client_cpu": client1 - client0,
    }


def combine(parts: list[dict[str, Any]], ok: tuple[int, ...]) -> dict[str, Any]:
    """One implementation's rounds together: latencies pooled, rate = answers / time measured."""
    exchanges = [e for p in parts for e in p["result"].exchanges]
    duration = sum(p["result"].duration_s for p in parts)
    ms = sorted(e.latency_ms for e in exchanges if e.status)
    good = sum(1 for e in exchanges if e.status in ok)
    statuses: dict[str, int] = {}
    for e in exchanges:
        statuses[str(e.status)] = statuses.get(str(e.status), 0) + 1
    n = max(len(exchanges), 1)
    g = [p["gunicorn_cpu"] for p in parts]
    d = [p["mariadb_cpu"] for p in parts]
    out = {
        "requests": len(exchanges),
        "ok": good,
        "statuses": statuses,
        "duration_s": round(duration, 3),
        "rps": round(good / duration, 1) if duration else None,
        "p50_ms": round(loadgen.percentile(ms, 50), 2),
        "p95_ms": round(loadgen.percentile(ms, 95), 2),
        "p99_ms": round(loadgen.percentile(ms, 99), 2),
        "max_ms": round(ms[-1], 2) if ms else None,
        "gunicorn_cpu_ms_per_req": round(sum(g) * 1000 / n, 2) if None not in g else None,
        "mariadb_cpu_ms_per_req": round(sum(d) * 1000 / n, 2) if None not in d else None,
    }
    machines = [p["machine"] for p in parts]
    if None not in machines and None not in g and None not in d:
        busy = sum(m[0] for m in machines)
        total = sum(m[1] for m in machines)
        out["machine_cpu_busy_pct"] = round(100 * busy / total, 1) if total else None
        client = sum(p["client_cpu"] for p in parts)
        out["client_cpu_ms_per_req"] = round(client * 1000 / n, 2)
        # CPU used by anything else on the machine while measuring (other tests, builds): noise.
        out["other_processes_cpu_pct"] = (
            round(100 * max(busy - sum(g) - sum(d) - client, 0) / total, 1) if total else None
        )
    errors = sorted({f"{e.status} {e.body[:120]!r}" for e in exchanges if e.status not in ok})
    if errors:
        out["error_samples"] = errors[:5]
    return out


def drain_effects(
    url: str, env: dict[str, str], workers: int, log_dir: Path, redis: str, expected: int
) -> dict[str, Any]:
    """Start the RQ workers, wait until every `payments.run_effects` row is done (at most 120 s),
    stop them. The rate is taken from the rows' own `finished_at` (workers' start-up excluded)."""
    procs = rqworkers.start(env, workers, log_dir, "effects")
    try:
        rqworkers.wait_up(redis, workers)
        started = datetime.now(UTC).replace(tzinfo=None)
        t0 = time.perf_counter()
        deadline = time.monotonic() + 120
        done = 0
        while time.monotonic() < deadline:
            done = int(
                benchdb.scalar(
                    url, "SELECT COUNT(*) FROM outbox_job WHERE name = 'payments.run_effects' AND status = 'done'"
                )
            )
            if done >= expected:
                break
            time.sleep(0.5)
        waited = time.perf_counter() - t0
    finally:
        rqworkers.stop(procs)
    conn = benchdb.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COUNT(*), MAX(finished_at) FROM outbox_job WHERE name = 'payments.run_effects' "
                "AND status = 'done' AND finished_at >= %s",
                (started,),
            )
            n, last = cur.fetchone()
    finally:
        conn.close()
    window = (last - started).total_seconds() if last else None
    return {
        "workers": workers,
        "command": rqworkers.display(),
        "done_by_workers": int(n),
        "window_s": round(window, 1) if window else None,
        "jobs_per_s": round(n / window, 1) if window else None,
        "waited_s": round(waited, 1),
    }


def worker_failures(url: str, credentials: dict[str, str], names: tuple[str, ...]) -> dict[str, Any]:
    """Outbox rows of `names` the RQ workers left unfinished, and the errors they recorded."""
    from sqlalchemy import func, select

    from backend.platform.db import db
    from backend.platform.jobs import OutboxJob

    app = _app(url, credentials)
    with app.app_context():
        s = db.session()
        rows = s.execute(
            select(OutboxJob.id, OutboxJob.status, OutboxJob.attempts, OutboxJob.last_error).where(
                OutboxJob.name.in_(names), OutboxJob.status != "done"
            )
        ).all()
        retried = s.scalar(
            select(func.count()).select_from(OutboxJob).where(OutboxJob.name.in_(names), OutboxJob.attempts > 1)
        )
        db.session.remove()
        db.engine.dispose()
    errors: dict[str, int] = {}
    for _id, _st, _att, err in rows:
        key = (err or "no error recorded (never ran, or a retry is scheduled)").split("\n")[0][:160]
        errors[key] = errors.get(key, 0) + 1
    return {"unfinished": len(rows), "unfinished_ids": [r[0] for r in rows], "errors": errors, "retried": retried}


def finish_in_process(url: str, credentials: dict[str, str], ids: list[int]) -> int:
    """Run the given outbox rows here (jobs.execute: a row already done is skipped)."""
    from backend.platform.db import db
    from backend.platform.jobs import execute

    app = _app(url, credentials)
    done = 0
    for row_id in ids:
        try:
            if execute(row_id, app=app) == "done":
                done += 1
        except Exception as exc:  # noqa: BLE001 - counted, reported by the books check
            print(f"[bench]   in-process run of outbox {row_id} failed: {type(exc).__name__}: {exc}")
    with app.app_context():
        db.engine.dispose()
    return done


def check_books(url: str, credentials: dict[str, str], orders: list[dict[str, Any]], tx_ids: dict[str, str]) -> dict:
    from sqlalchemy import func, select, text

    from backend.payments.models import OrderState, PaymentIssue, PaymentOrder
    from backend.platform.db import db
    from backend.platform.jobs import OutboxJob
    from backend.points.models import LedgerKind, PointsLedger
    from backend.touchpoints.models import Touchpoint

    ids = [o["id"] for o in orders]
    app = _app(url, credentials)
    with app.app_context():
        s = db.session()
        rows = s.execute(
            select(
                PaymentOrder.out_trade_no, PaymentOrder.state, PaymentOrder.transaction_id, PaymentOrder.paid_via
            ).where(PaymentOrder.id.in_(ids))
        ).all()
        paid_right = sum(
            1 for no, st, tx, via in rows if st == OrderState.PAID and tx == tx_ids.get(no) and via == "notify"
        )
        jobs = s.execute(
            select(OutboxJob.status, func.count())
            .where(OutboxJob.name == "payments.run_effects")
            .group_by(OutboxJob.status)
        ).all()
        job_rows = s.scalar(select(func.count()).select_from(OutboxJob).where(OutboxJob.name == "payments.run_effects"))
        job_attempts = s.scalar(
            select(func.coalesce(func.max(OutboxJob.attempts), 0)).where(OutboxJob.name == "payments.run_effects")
        )
        earned = s.execute(
            select(PointsLedger.ref_id, func.count())
            .where(PointsLedger.kind == LedgerKind.EARN_PENDING, PointsLedger.ref_type == "payment_order")
            .group_by(PointsLedger.ref_id)
        ).all()
        touch = s.scalar(select(func.count()).select_from(Touchpoint).where(Touchpoint.kind == "payment_succeeded"))
        issues = s.scalar(select(func.count()).select_from(PaymentIssue))
        from backend.points import service as points

        drift = points.check_drift(s)
        profile_drift = s.execute(
            text(
                "SELECT COUNT(*) FROM customer_profile p WHERE p.touchpoint_count <> "
                "(SELECT COUNT(*) FROM touchpoint t WHERE t.customer_id = p.customer_id)"
            )
        ).scalar()
        db.session.remove()
        db.engine.dispose()
    status_counts = {str(k): v for k, v in jobs}
    out = {
        "orders": len(ids),
        "paid_once_with_the_notified_transaction": paid_right,
        "effect_jobs": job_rows,
        "effect_jobs_by_status": status_counts,
        "effect_job_max_attempts": job_attempts,
        "orders_with_points_earned_once": sum(1 for _ref, c in earned if c == 1),
        "orders_with_points_earned_twice_or_more": sum(1 for _ref, c in earned if c > 1),
        "payment_touchpoints": touch,
        "payment_issues": issues,
        "ledger_drift_members": len(drift),
        "profile_projection_drift_customers": profile_drift,
    }
    out["ok"] = (
        paid_right == len(ids)
        and job_rows == len(ids)
        and status_counts == {"done": len(ids)}
        and out["orders_with_points_earned_once"] == len(ids)
        and out["orders_with_points_earned_twice_or_more"] == 0
        and touch == len(ids)
        and issues == 0
        and not drift
    )
    return out


def _ratio(a: Any, b: Any) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def run(
    *,
    orders: int = 1200,
    duplicate_share: float = 0.2,
    concurrency: int = 8,
    rounds: int = 3,
    workers: int = 2,
    update_readme: bool = True,
) -> dict[str, Any]:
    from integrations.sandbox import create_sandbox

    t_start = time.perf_counter()
    url = benchdb.url_for("pay")
    redis = redis_url()
    print(f"[paynotify] (re)creating {url.rsplit('/', 1)[-1]} with the migrations; Redis {redis} ...", flush=True)
    t_schema = benchdb.recreate(url, "paynotify")
    flush_redis(redis)
    credentials = sandbox_credentials()
    state = create_sandbox(credentials, seed=False).state
    warm_n = 4 * servers.WORKERS
    all_orders, t_orders = create_orders(url, credentials, orders + warm_n, customers=200)
    warm_orders, measured_orders = all_orders[: warm_n - 1], all_orders[warm_n:]
    sql_order = all_orders[warm_n - 1]  # notified in-process to list the statements
    print(f"[paynotify] schema {t_schema:.1f} s; {len(all_orders)} payment orders (create_order): {t_orders:.1f} s")

    env = app_env(url, credentials, redis)
    log_dir = Path(tempfile.mkdtemp(prefix="dealerloop-bench-logs-"))
    app_srv = base_srv = None
    per: dict[str, list[dict[str, Any]]] = {"baseline": [], "app": []}
    try:
        app_srv = servers.start("app", "wsgi:app", env, log_dir)
        base_srv = servers.start("baseline", "bench.baseline_app:app", {"BENCH_DATABASE_URL": url}, log_dir)
        servers.wait_ready(app_srv, "/healthz", {})
        servers.wait_ready(base_srv, "/baseline/healthz", {})
        warm, _warm_tx, _ = build_deliveries(state, credentials, warm_orders, 0.0)
        for headers, body in warm:
            for srv, path in ((app_srv, APP_PATH), (base_srv, BASE_PATH)):
                status, raw = servers.request(srv, "POST", path, headers, body)
                if status != 204:
                    raise SystemExit(f"{srv.name} warm-up notification: HTTP {status}: {raw[:300]!r}\n{srv.log_tail()}")
        print(f"[paynotify] gunicorn up: app :{app_srv.port}, baseline :{base_srv.port}; warmed up", flush=True)
        sql, sql_tx = notify_sql(url, credentials, redis, state, sql_order)
        print(f"[paynotify] one notification sends {len(sql)} statements (in-process capture)", flush=True)

        t = time.perf_counter()
        deliveries, tx_ids, n_dups = build_deliveries(state, credentials, measured_orders, duplicate_share)
        t_build = time.perf_counter() - t
        print(
            f"[paynotify] {len(deliveries)} notifications built by the sandbox ({len(measured_orders)} orders, "
            f"{n_dups} duplicates): {t_build:.1f} s; {rounds} interleaved rounds at concurrency {concurrency} ...",
            flush=True,
        )
        chunk = -(-len(deliveries) // rounds)
        for r in range(rounds):
            part = deliveries[r * chunk : (r + 1) * chunk]
            order = ("baseline", "app") if r % 2 == 0 else ("app", "baseline")
            for impl in order:
                srv, path = (app_srv, APP_PATH) if impl == "app" else (base_srv, BASE_PATH)
                reqs = [loadgen.Request("POST", path, h, b) for h, b in part]
                per[impl].append(measure(srv, reqs, concurrency))
        app_log = app_srv.log_tail()
    finally:
        for srv in (app_srv, base_srv):
            if srv is not None:
                srv.stop()

    results = {impl: combine(parts, ok=(204,)) for impl, parts in per.items()}
    for impl, m in results.items():
        if (m.get("other_processes_cpu_pct") or 0) > 10:
            print(
                f"[paynotify]   warning: other processes used {m['other_processes_cpu_pct']:.0f} % of the machine's "
                f"CPU while {impl} was measured; the figures are noisy"
            )
        print(
            f"[paynotify]   {impl}: {m['rps']}/s, p50 {m['p50_ms']} p95 {m['p95_ms']} p99 {m['p99_ms']} ms; "
            f"statuses {m['statuses']}",
            flush=True,
        )
    if results["app"]["ok"] != results["app"]["requests"]:
        print(f"[paynotify]   app refused some notifications:\n{app_log}")
    print(f"[paynotify] running the effect jobs with {workers} RQ workers ...", flush=True)
    drained = drain_effects(url, env, workers, log_dir, redis, len(all_orders))
    left = worker_failures(url, credentials, ("payments.run_effects",))
    drained["left_unfinished_by_rq_workers"] = left["unfinished"]
    drained["unfinished_errors"] = left["errors"]
    if left["unfinished"]:
        print(
            f"[paynotify]   the RQ workers left {left['unfinished']} effect jobs unfinished: {left['errors']}; "
            "running them in-process (jobs.execute) so that the books can be checked",
            flush=True,
        )
        drained["finished_in_process"] = finish_in_process(url, credentials, left["unfinished_ids"])
    correct = check_books(url, credentials, all_orders, {**tx_ids, **_warm_tx, **sql_tx})
    print(f"[paynotify] effects: {drained}; correct: {correct['ok']} {correct}", flush=True)

    total = time.perf_counter() - t_start
    doc = {
        "benchmark": "paynotify",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": benchdb.environment(url),
        "settings": {
            "gunicorn": servers.GUNICORN_SETTINGS,
            "client": f"python http.client, {concurrency} connections, closed loop over the prepared deliveries",
            "concurrency": concurrency,
            "rounds": rounds,
            "orders": len(measured_orders),
            "duplicates": n_dups,
            "deliveries": len(deliveries),
            "redis": redis,
            "rq_workers_for_effects": workers,
            "rq_worker_command": rqworkers.display(),
        },
        "sql_per_notification": sql,
        "results": {
            **results,
            "ratio_app_over_baseline": {
                "rps": _ratio(results["app"]["rps"], results["baseline"]["rps"]),
                "p50": _ratio(results["app"]["p50_ms"], results["baseline"]["p50_ms"]),
                "p95": _ratio(results["app"]["p95_ms"], results["baseline"]["p95_ms"]),
                "p99": _ratio(results["app"]["p99_ms"], results["baseline"]["p99_ms"]),
                "gunicorn_cpu_per_req": _ratio(
                    results["app"]["gunicorn_cpu_ms_per_req"], results["baseline"]["gunicorn_cpu_ms_per_req"]
                ),
            },
        },
        "effects": drained,
        "correct": correct,
        "timings_s": {
            "schema": round(t_schema, 1),
            "orders": round(t_orders, 1),
            "build_notifications": round(t_build, 1),
            "total": round(total, 1),
        },
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / "paynotify.json"
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    table = report.paynotify_table(doc)
    print()
    print(table)
    print(f"\n[paynotify] results: {out.relative_to(servers.REPO_ROOT)}; took {total:.0f} s")
    if update_readme:
        report.update_readme("paynotify", report.paynotify_readme_section(doc, table))
    if not correct["ok"]:
        raise SystemExit(f"[paynotify] correctness failed: {correct}")
    return doc
