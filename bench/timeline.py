"""Benchmark: the staff timeline read, app vs baseline.

A customer with 10,000 touchpoints in a table of 1,000,000. The app answers
`GET /api/workbench/v1/customers/<id>/timeline` through its full stack on gunicorn (JWT, staff
actor and data scope, marshmallow query and response schemas, the ORM, JSON); the baseline
(`bench.baseline_app`) runs the same keyset SELECT with PyMySQL in a bare Flask view on the
same gunicorn settings and returns the same JSON. Scenarios: the first page (no cursor) and a
deep page (a cursor 9,000 rows down). Figures: requests/s and p50/p95/p99 latency for both,
and app / baseline ratios.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from bench import datagen, loadgen, procstat, report, servers
from bench.appenv import SECRET_KEY, app_env
from bench.baseline_app import SQL_FIRST_PAGE, SQL_NEXT_PAGE

PAGE_LIMIT = 20
DEEP_FRACTION = 0.9  # 9,000 of 10,000
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _normalise_sql(sql: str) -> str:
    return " ".join(sql.split())


def inspect_app(url: str, ds: datagen.Dataset, deep_cursor: str) -> dict[str, Any]:
    """In-process: issue the staff token, and record the SQL the app sends for one request of
    each scenario (the hot path, and the proof that the baseline's SELECT is the app's)."""
    from sqlalchemy import event

    from backend import create_app
    from backend.org.service import load_staff_actor, staff_claims
    from backend.platform.db import db
    from backend.platform.tokens import issue_access_token

    app = create_app({**app_env(url), "SANDBOX_ENABLED": False})  # overrides are not coerced: a real bool
    with app.app_context():
        actor = load_staff_actor(db.session(), ds.manager_staff_id)
        token = issue_access_token(SECRET_KEY, "staff", ds.manager_staff_id, 3600, staff_claims(actor))
        db.session.remove()
    headers = {"Authorization": f"Bearer {token}"}

    statements: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(_normalise_sql(statement))

    def on_commit(_conn: Any) -> None:
        statements.append("COMMIT")

    def on_rollback(_conn: Any) -> None:
        statements.append("ROLLBACK")

    event.listen(db.engine, "before_cursor_execute", capture)
    event.listen(db.engine, "commit", on_commit)
    event.listen(db.engine, "rollback", on_rollback)
    client = app.test_client()
    per_scenario: dict[str, list[str]] = {}
    try:
        for name, query in (("first_page", ""), ("deep_page", f"&cursor={deep_cursor}")):
            statements.clear()
            resp = client.get(f"{app_path(ds)}?limit={PAGE_LIMIT}{query}", headers=headers)
            if resp.status_code != 200:
                raise SystemExit(f"app answered {resp.status_code} in-process: {resp.data[:500]!r}")
            per_scenario[name] = list(statements)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
        event.remove(db.engine, "commit", on_commit)
        event.remove(db.engine, "rollback", on_rollback)
        db.engine.dispose()

    for name, expected in (("first_page", SQL_FIRST_PAGE), ("deep_page", SQL_NEXT_PAGE)):
        timeline_sql = [s for s in per_scenario[name] if s.startswith("SELECT") and "FROM touchpoint" in s]
        if timeline_sql != [_normalise_sql(expected)]:
            raise SystemExit(
                f"the baseline's SQL is not the app's any more ({name}); update bench/baseline_app.py\n"
                f"app:      {timeline_sql}\nbaseline: {_normalise_sql(expected)}"
            )
    return {"headers": headers, "statements": per_scenario}


def app_path(ds: datagen.Dataset) -> str:
    return f"/api/workbench/v1/customers/{ds.target_customer_id}/timeline"


def baseline_path(ds: datagen.Dataset) -> str:
    return f"/baseline/customers/{ds.target_customer_id}/timeline"


def verify_same_answers(
    app_srv: servers.Server,
    base_srv: servers.Server,
    ds: datagen.Dataset,
    headers: dict[str, str],
    scenarios: dict[str, str],
    follow_pages: int = 3,
) -> None:
    """Both endpoints must return identical items (and cursors) for every measured page and for
    a few pages followed by cursor; otherwise the baseline does not do the same work."""
    for name, query in scenarios.items():
        cursor_query = query
        for page in range(follow_pages):
            s1, b1 = servers.get_json(app_srv, f"{app_path(ds)}?{cursor_query}", headers)
            s2, b2 = servers.get_json(base_srv, f"{baseline_path(ds)}?{cursor_query}", {})
            if s1 != 200 or s2 != 200:
                raise SystemExit(
                    f"verify {name} page {page}: app HTTP {s1}, baseline HTTP {s2}\n{b1[:300]!r}\n{b2[:300]!r}"
                )
            a, b = json.loads(b1), json.loads(b2)
            if a["items"] != b["items"] or a["next_cursor"] != b["next_cursor"]:
                for i, (x, y) in enumerate(zip(a["items"], b["items"], strict=False)):
                    if x != y:
                        raise SystemExit(f"verify {name} page {page}: item {i} differs\napp:      {x}\nbaseline: {y}")
                raise SystemExit(f"verify {name} page {page}: answers differ\napp: {a}\nbaseline: {b}")
            if len(a["items"]) != PAGE_LIMIT or not a["next_cursor"]:
                raise SystemExit(f"verify {name} page {page}: expected a full page with a next cursor")
            cursor_query = f"limit={PAGE_LIMIT}&cursor={a['next_cursor']}"
        print(
            f"[timeline] verified: {name}: app and baseline return identical items and cursors "
            f"({follow_pages} pages followed, {len(b1):,} / {len(b2):,} bytes)"
        )


def db_round_trips(
    server: servers.Server, path: str, headers: dict[str, str], url: str, n: int = 100
) -> dict[str, float]:
    """Server-side statements per request (SHOW GLOBAL STATUS deltas over n sequential requests).
    Other clients of the same MariaDB add noise; the in-process SQL capture is the exact list."""
    conn = datagen._connect(url)
    names = ("Questions", "Com_select", "Com_commit", "Com_rollback", "Com_admin_commands")

    def status() -> dict[str, int]:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN (%s, %s, %s, %s, %s)", names)
            return {k: int(v) for k, v in cur.fetchall()}

    try:
        before = status()
        for _ in range(n):
            code, _ = servers.get_json(server, path, headers)
            if code != 200:
                raise SystemExit(f"{server.name}: HTTP {code} during the round-trip probe")
        after = status()
    finally:
        conn.close()
    # our own two SHOW STATUS count as Questions/Com_show_status, not Com_select
    return {k: round((after[k] - before[k] - (1 if k == "Questions" else 0)) / n, 2) for k in names}


@dataclass
class Target:
    impl: str
    server: servers.Server
    path: str
    headers: dict[str, str]


@dataclass
class Accumulated:
    """One implementation's measurement, summed over the interleaved rounds."""

    latencies_ms: list[float] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    gunicorn_cpu: float | None = 0.0
    mariadb_cpu: float | None = 0.0
    client_cpu: float = 0.0
    machine_busy: float | None = 0.0
    machine_total: float | None = 0.0

    def add(self, target: Target, concurrency: int, duration: float, mysqld_pid: int | None) -> None:
        cpu0 = procstat.tree_cpu_seconds(target.server.process.pid)
        db0 = procstat.tree_cpu_seconds(mysqld_pid) if mysqld_pid else None
        sys0 = procstat.system_cpu_seconds()
        client0 = time.process_time()
        result = loadgen.run(
            "127.0.0.1", target.server.port, target.path, target.headers, concurrency=concurrency, duration=duration
        )
        client1 = time.process_time()
        sys1 = procstat.system_cpu_seconds()
        cpu1 = procstat.tree_cpu_seconds(target.server.process.pid)
        db1 = procstat.tree_cpu_seconds(mysqld_pid) if mysqld_pid else None
        self.latencies_ms += result.latencies_ms
        self.requests += result.requests
        self.errors += result.errors
        self.error_samples += result.error_samples
        self.duration_s += result.duration_s
        self.client_cpu += client1 - client0
        self.gunicorn_cpu = None if None in (self.gunicorn_cpu, cpu0, cpu1) else self.gunicorn_cpu + cpu1 - cpu0
        self.mariadb_cpu = None if None in (self.mariadb_cpu, db0, db1) else self.mariadb_cpu + db1 - db0
        if self.machine_busy is None or not sys0 or not sys1:
            self.machine_busy = self.machine_total = None
        else:
            self.machine_busy += sys1[0] - sys0[0]
            self.machine_total += sys1[1] - sys0[1]  # type: ignore[operator]

    def summary(self) -> dict[str, Any]:
        out = loadgen.LoadResult(self.requests, self.errors, self.duration_s, self.latencies_ms).summary()
        if self.errors:
            out["error_samples"] = sorted(set(self.error_samples))[:5]
        n = max(self.requests, 1)
        out["gunicorn_cpu_ms_per_req"] = (
            round(self.gunicorn_cpu * 1000 / n, 3) if self.gunicorn_cpu is not None else None
        )
        out["mariadb_cpu_ms_per_req"] = round(self.mariadb_cpu * 1000 / n, 3) if self.mariadb_cpu is not None else None
        out["client_cpu_ms_per_req"] = round(self.client_cpu * 1000 / n, 3)
        if (
            self.machine_busy is not None
            and self.machine_total
            and self.gunicorn_cpu is not None
            and self.mariadb_cpu is not None
        ):
            ours = self.gunicorn_cpu + self.mariadb_cpu + self.client_cpu
            # CPU used by anything else on the machine while measuring (other tests, builds): noise.
            out["machine_cpu_busy_pct"] = round(100 * self.machine_busy / self.machine_total, 1)
            out["other_processes_cpu_pct"] = round(100 * max(self.machine_busy - ours, 0.0) / self.machine_total, 1)
        return out


def measure_scenario(
    targets: list[Target], *, concurrency: int, warmup: float, duration: float, rounds: int, mysqld_pid: int | None
) -> dict[str, dict[str, Any]]:
    """Warm each target up, then `rounds` interleaved slices of duration / rounds each (the order
    alternates every round), so that background load drifting over time hits both alike."""
    for t in targets:
        loadgen.run("127.0.0.1", t.server.port, t.path, t.headers, concurrency=concurrency, duration=warmup)
    acc = {t.impl: Accumulated() for t in targets}
    for r in range(rounds):
        for t in targets if r % 2 == 0 else list(reversed(targets)):
            acc[t.impl].add(t, concurrency, duration / rounds, mysqld_pid)
    return {impl: a.summary() for impl, a in acc.items()}


def ratios(app: dict[str, Any], base: dict[str, Any]) -> dict[str, float | None]:
    def r(key: str) -> float | None:
        a, b = app.get(key), base.get(key)
        return round(a / b, 2) if a is not None and b else None

    return {
        "rps": r("rps"),
        "p50": r("p50_ms"),
        "p95": r("p95_ms"),
        "p99": r("p99_ms"),
        "gunicorn_cpu_per_req": r("gunicorn_cpu_ms_per_req"),
    }


def _versions() -> dict[str, str]:
    out = {}
    for dist in (
        "flask",
        "flask-smorest",
        "sqlalchemy",
        "marshmallow",
        "webargs",
        "pymysql",
        "gunicorn",
        "authlib",
        "alembic",
    ):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=servers.REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or None
    except OSError:
        return None


def run(
    *,
    spec: datagen.Spec,
    force_regenerate: bool,
    concurrency: int,
    warmup: float,
    duration: float,
    rounds: int = 3,
    update_readme: bool = True,
) -> dict[str, Any]:
    t_start = time.perf_counter()
    url = datagen.database_url()
    ds = datagen.ensure_dataset(spec, force=force_regenerate, url=url)
    t_data = time.perf_counter() - t_start
    depth = int(ds.target_rows * DEEP_FRACTION)
    deep_cursor, _ = datagen.deep_cursor(url, ds.target_customer_id, depth)
    scenarios = {
        "first_page": f"limit={PAGE_LIMIT}",
        "deep_page": f"limit={PAGE_LIMIT}&cursor={deep_cursor}",
    }

    inspected = inspect_app(url, ds, deep_cursor)
    headers = inspected["headers"]
    app_statements = inspected["statements"]
    print(f"[timeline] app SQL per request (first page): {len(app_statements['first_page'])} statements")
    for s in app_statements["first_page"]:
        print(f"             {s[:150]}{' …' if len(s) > 150 else ''}")

    log_dir = Path(tempfile.mkdtemp(prefix="dealerloop-bench-logs-"))
    app_srv = base_srv = None
    try:
        app_srv = servers.start("app", "wsgi:app", app_env(url), log_dir)
        base_srv = servers.start("baseline", "bench.baseline_app:app", {"BENCH_DATABASE_URL": url}, log_dir)
        servers.wait_ready(app_srv, f"{app_path(ds)}?{scenarios['first_page']}", headers)
        servers.wait_ready(base_srv, f"{baseline_path(ds)}?{scenarios['first_page']}", {})
        print(
            f"[timeline] gunicorn up: app :{app_srv.port}, baseline :{base_srv.port} "
            f"({' '.join(servers.GUNICORN_SETTINGS)})"
        )

        verify_same_answers(app_srv, base_srv, ds, headers, scenarios)

        trips = {
            "app": db_round_trips(app_srv, f"{app_path(ds)}?{scenarios['first_page']}", headers, url),
            "baseline": db_round_trips(base_srv, f"{baseline_path(ds)}?{scenarios['first_page']}", {}, url),
        }
        print(
            f"[timeline] MariaDB statements per request (global status deltas): app {trips['app']}, "
            f"baseline {trips['baseline']}"
        )

        mysqld = procstat.find_pid("mariadbd", "mysqld")
        results: dict[str, Any] = {}
        for name, query in scenarios.items():
            print(
                f"[timeline] {name}: {warmup:.0f} s warm-up each, then {rounds} interleaved rounds, "
                f"{duration:.0f} s per implementation in all, at concurrency {concurrency} ...",
                flush=True,
            )
            targets = [
                Target("baseline", base_srv, f"{baseline_path(ds)}?{query}", {}),
                Target("app", app_srv, f"{app_path(ds)}?{query}", headers),
            ]
            per: dict[str, Any] = measure_scenario(
                targets, concurrency=concurrency, warmup=warmup, duration=duration, rounds=rounds, mysqld_pid=mysqld
            )
            for t in targets:
                m = per[t.impl]
                other = m.get("other_processes_cpu_pct")
                if other is not None and other > 10:
                    print(
                        f"[timeline]   warning: other processes used {other:.0f} % of the machine's CPU while "
                        f"{t.impl} was measured; the figures are noisy"
                    )
                if m["errors"]:
                    raise SystemExit(
                        f"{name} / {t.impl}: {m['errors']} errors: {m.get('error_samples')}\n{t.server.log_tail()}"
                    )
            per["ratio_app_over_baseline"] = ratios(per["app"], per["baseline"])
            results[name] = per
    finally:
        for srv in (app_srv, base_srv):
            if srv is not None:
                srv.stop()

    total = time.perf_counter() - t_start
    env_info = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": _versions(),
        "git_commit": _git_commit(),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        **datagen.table_stats(url),
    }
    doc = {
        "benchmark": "timeline",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": env_info,
        "dataset": {
            "touchpoints": ds.touchpoint_rows,
            "target_customer_touchpoints": ds.target_rows,
            "customers": ds.customer_rows,
            "target_customer_id": ds.target_customer_id,
            "requesting_staff_id": ds.manager_staff_id,
            "generated_this_run": ds.generated,
            "generation_seconds": ds.generation_seconds,
            "deep_page_depth_rows": depth,
            "page_limit": PAGE_LIMIT,
        },
        "settings": {
            "gunicorn": servers.GUNICORN_SETTINGS,
            "client": f"python http.client, {concurrency} connections, closed loop",
            "concurrency": concurrency,
            "warmup_s": warmup,
            "duration_s": duration,
            "rounds": rounds,
        },
        "app_sql_per_request": app_statements,
        "mariadb_statements_per_request": trips,
        "scenarios": results,
        "timings_s": {"dataset": round(t_data, 1), "total": round(total, 1)},
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / "timeline.json"
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    table = report.timeline_table(doc)
    print()
    print(table)
    print(f"\n[timeline] results: {out.relative_to(servers.REPO_ROOT)}; took {total:.0f} s (dataset {t_data:.0f} s)")
    if update_readme:
        report.update_readme("timeline", report.timeline_readme_section(doc, table))
    return doc
