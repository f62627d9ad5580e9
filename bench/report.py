"""Tables for the terminal and for bench/README.md (the section between a benchmark's markers is
replaced by the latest figures)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent / "README.md"
SCENARIO_TITLES = {"first_page": "first page", "deep_page": "deep page"}


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def timeline_table(doc: dict[str, Any]) -> str:
    head = (
        "scenario",
        "",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "requests",
        "gunicorn CPU ms/req",
        "MariaDB CPU ms/req",
        "other procs CPU %",
    )
    rows = [head, tuple("---" for _ in head)]
    for name, per in doc["scenarios"].items():
        title = SCENARIO_TITLES.get(name, name)
        for impl in ("baseline", "app"):
            m = per[impl]
            rows.append(
                (
                    title,
                    impl,
                    _fmt(m["rps"], 1),
                    _fmt(m["p50_ms"]),
                    _fmt(m["p95_ms"]),
                    _fmt(m["p99_ms"]),
                    _fmt(m["requests"]),
                    _fmt(m["gunicorn_cpu_ms_per_req"]),
                    _fmt(m["mariadb_cpu_ms_per_req"]),
                    _fmt(m.get("other_processes_cpu_pct"), 0),
                )
            )
        r = per["ratio_app_over_baseline"]
        rows.append(
            (
                title,
                "**app / baseline**",
                f"**{_fmt(r['rps'])}**",
                f"**{_fmt(r['p50'])}**",
                f"**{_fmt(r['p95'])}**",
                f"**{_fmt(r['p99'])}**",
                "",
                f"**{_fmt(r['gunicorn_cpu_per_req'])}**",
                "",
                "",
            )
        )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def timeline_readme_section(doc: dict[str, Any], table: str) -> str:
    env, ds, st = doc["environment"], doc["dataset"], doc["settings"]
    v = env["versions"]
    first = doc["app_sql_per_request"]["first_page"]
    trips = doc["mariadb_statements_per_request"]
    lines = [
        f"Latest run: {doc['finished_at']} (commit {env.get('git_commit') or '?'}), {env['cpu_count']} CPUs, "
        f"Python {env['python']}, MariaDB {env['server_version']} (buffer pool {env['innodb_buffer_pool_mb']} MB), "
        f"Flask {v['flask']}, flask-smorest {v['flask-smorest']}, SQLAlchemy {v['sqlalchemy']}, "
        f"marshmallow {v['marshmallow']}, PyMySQL {v['pymysql']}, gunicorn {v['gunicorn']}.",
        "",
        f"Data: {ds['touchpoints']:,} touchpoints, {ds['target_customer_touchpoints']:,} of them for the customer read, "
        f"{ds['customers']:,} customers; page size {ds['page_limit']}; deep page = cursor after row "
        f"{ds['deep_page_depth_rows']:,}. Load: {st['client']}, {st['warmup_s']:.0f} s warm-up, then "
        f"{st['duration_s']:.0f} s per row in {st.get('rounds', 1)} rounds interleaved with the other implementation.",
        "",
        table,
        "",
        "Ratios are app / baseline: below 1 for req/s and above 1 for latencies and CPU means the app is slower.",
        "",
        f"App SQL per request (first page): {len(first)} statements — "
        + "; ".join(_short_sql(s) for s in first)
        + f". Round trips to MariaDB per request (global status deltas over 100 sequential first-page "
        f"requests): app {_trips(trips['app'])}; baseline {_trips(trips['baseline'])}.",
        "",
        f"Run time: {doc['timings_s']['total']:.0f} s (dataset: {doc['timings_s']['dataset']:.0f} s"
        + (f", generated this run in {ds['generation_seconds']:.0f} s" if ds["generated_this_run"] else ", cached")
        + ").",
    ]
    return "\n".join(lines)


def _trips(t: dict[str, float]) -> str:
    names = (
        ("Com_select", "SELECT"),
        ("Com_commit", "COMMIT"),
        ("Com_rollback", "ROLLBACK"),
        ("Com_admin_commands", "ping"),
    )
    parts = [f"{t[k]:g} {label}" for k, label in names if t.get(k)]
    return ", ".join(parts) or "none"


def _short_sql(sql: str) -> str:
    if sql in ("COMMIT", "ROLLBACK"):
        return sql
    m = re.match(r"SELECT .*? FROM (\w+)(?: LEFT OUTER JOIN (\w+))?", sql)
    if not m:
        return sql[:40]
    table = m.group(1) + (f" ⟕ {m.group(2)}" if m.group(2) else "")
    where = re.search(r" WHERE (.*?)(?: ORDER BY| LIMIT|$)", sql)
    cond = where.group(1) if where else ""
    cond = re.sub(r"%\(\w+\)s", "?", cond)
    cond = re.sub(r"\b\w+\.", "", cond)
    return f"`{table} WHERE {cond}`" if cond else f"`{table}`"


def update_readme(name: str, body: str) -> None:
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    text = README.read_text() if README.exists() else ""
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _m: block, text, flags=re.S)
    else:
        text = text.rstrip() + f"\n\n## Latest figures: {name}\n\n{block}\n"
    README.write_text(text)
    print(f"[{name}] bench/README.md updated")


# ---------------------------------------------------------------------------------------------
# Write benchmarks (flashsale, paynotify, wecomcallback): one generic table writer.


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = [head, tuple("---" for _ in head), *rows]
    return "\n".join("| " + " | ".join(row) + " |" for row in lines)


def _bold(value: Any, digits: int = 2) -> str:
    return f"**{_fmt(value, digits)}**" if value is not None else "–"


def _env_line(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    v = env["versions"]
    return (
        f"Latest run: {doc['finished_at']} (commit {env.get('git_commit') or '?'}), {env['cpu_count']} CPUs, "
        f"Python {env['python']}, MariaDB {env['server_version']} (buffer pool {env['innodb_buffer_pool_mb']} MB, "
        f"innodb_flush_log_at_trx_commit={env.get('innodb_flush_log_at_trx_commit', '?')}), Flask {v['flask']}, "
        f"SQLAlchemy {v['sqlalchemy']}, PyMySQL {v['pymysql']}, gunicorn {v['gunicorn']}."
    )


def flashsale_table(doc: dict[str, Any]) -> str:
    head = (
        "scenario",
        "",
        "won",
        "requests",
        "won / s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "p95 ms (won)",
        "gunicorn CPU ms/req",
        "other procs CPU %",
        "correct",
    )
    rows: list[tuple[str, ...]] = []
    for per in doc["scenarios"].values():
        title = f"stock {per['stock']:,}, {per['clients']} clients, {per['mode']}"
        for impl in ("baseline", "app"):
            m = per[impl]
            c = m["correct"]
            if impl == "app":
                correct = (
                    f"{'yes' if c['ok'] else '**NO**'}: {c['orders']} orders, stock {c['stock_after']}"
                    f"{'' if c.get('sold_out', True) else ' (not sold out within the time cap)'}, "
                    f"{c['negative_balances']} negative, {c['ledger_drift_members']} drifting of "
                    f"{c['accounts_checked']} ledgers"
                )
            else:
                correct = f"{'yes' if c['ok'] else '**NO**'}: {c['updates_won']} won, stock {c['stock_after']}"
            rows.append(
                (
                    title,
                    f"{impl} ({m['connections']} connections)" if impl == "baseline" else impl,
                    _fmt(m["ok"]),
                    _fmt(m["requests"]),
                    _fmt(m["ok_per_s"], 1),
                    _fmt(m["p50_ms"]),
                    _fmt(m["p95_ms"]),
                    _fmt(m["p99_ms"]),
                    _fmt(m["ok_p95_ms"]),
                    _fmt(m.get("gunicorn_cpu_ms_per_req")),
                    _fmt(m.get("other_processes_cpu_pct"), 0),
                    correct,
                )
            )
        r = per["ratio_app_over_baseline"]
        rows.append(
            (title, "**app / baseline**", "", "", _bold(r["ok_per_s"], 3), "", _bold(r["p95"]), "", "", "", "", "")
        )
    return _table(head, rows)


def flashsale_readme_section(doc: dict[str, Any], table: str) -> str:
    st = doc["settings"]
    lines = [
        _env_line(doc),
        "",
        f"Load: {st['client']}; gunicorn `{' '.join(st['gunicorn'])}`; item: {st['item']}; baseline: "
        f"`{st['baseline_sql']}` autocommitted, {st['clients']} threads over {st['baseline_connections']} "
        "PyMySQL connections.",
        "",
        table,
        "",
        "`won / s` = successful redemptions (201, or a baseline UPDATE that changed the row) from the start "
        "barrier to the last success; latencies are over every answer (sold-out ones included).",
        "",
        f"One redemption sends {len(doc['sql_per_redemption'])} statements to MariaDB "
        f"({_sql_kinds(doc['sql_per_redemption'])}; the list is in `results/flashsale.json`).",
        "",
        f"Run time: {doc['timings_s']['total']:.0f} s (schema {doc['timings_s']['schema']:.0f} s, members "
        f"{doc['timings_s']['members']:.0f} s).",
    ]
    return "\n".join(lines)


def _sql_kinds(statements: list[str]) -> str:
    counts: dict[str, int] = {}
    for st in statements:
        word = st.split(" ", 1)[0].upper()
        if word == "SELECT" and "FOR UPDATE" in st:
            word = "SELECT … FOR UPDATE"
        elif word == "SELECT" and "LOCK IN SHARE MODE" in st:
            word = "SELECT … LOCK IN SHARE MODE"
        counts[word] = counts.get(word, 0) + 1
    return ", ".join(f"{n} {w}" for w, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _latency_rows(title: str, results: dict[str, Any], ok_label: str) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for impl in ("baseline", "app"):
        m = results[impl]
        rows.append(
            (
                title,
                impl,
                _fmt(m["rps"], 1),
                _fmt(m["p50_ms"]),
                _fmt(m["p95_ms"]),
                _fmt(m["p99_ms"]),
                _fmt(m["requests"]),
                f"{_fmt(m['ok'])} {ok_label}",
                _fmt(m.get("gunicorn_cpu_ms_per_req")),
                _fmt(m.get("mariadb_cpu_ms_per_req")),
                _fmt(m.get("other_processes_cpu_pct"), 0),
            )
        )
    r = results["ratio_app_over_baseline"]
    rows.append(
        (
            title,
            "**app / baseline**",
            _bold(r["rps"], 3),
            _bold(r["p50"]),
            _bold(r["p95"]),
            _bold(r["p99"]),
            "",
            "",
            _bold(r.get("gunicorn_cpu_per_req")),
            "",
            "",
        )
    )
    return rows


LATENCY_HEAD = (
    "",
    "",
    "req/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "requests",
    "answered",
    "gunicorn CPU ms/req",
    "MariaDB CPU ms/req",
    "other procs CPU %",
)


def paynotify_table(doc: dict[str, Any]) -> str:
    st = doc["settings"]
    title = f"{st['deliveries']:,} notifications ({st['duplicates']} duplicates)"
    return _table(LATENCY_HEAD, _latency_rows(title, doc["results"], "× 204"))


def paynotify_readme_section(doc: dict[str, Any], table: str) -> str:
    st, c, eff = doc["settings"], doc["correct"], doc["effects"]
    lines = [
        _env_line(doc),
        "",
        f"Load: {st['client']}, {st['rounds']} rounds interleaving app and baseline; gunicorn "
        f"`{' '.join(st['gunicorn'])}`; Redis {st['redis']}.",
        "",
        table,
        "",
        "Ratios are app / baseline: below 1 for req/s and above 1 for latencies and CPU means the app is slower.",
        "",
        f"Correctness ({'**yes**' if c['ok'] else '**NO**'}): {c['orders']:,} orders (measured, warm-up and the one notified in-process), "
        f"{c['paid_once_with_the_notified_transaction']:,} paid once with the notified transaction id; "
        f"{c['effect_jobs']:,} `payments.run_effects` outbox rows ({c['effect_jobs_by_status']}, at most "
        f"{c['effect_job_max_attempts']} attempt each); pending points earned once for "
        f"{c['orders_with_points_earned_once']:,} orders, twice or more for "
        f"{c['orders_with_points_earned_twice_or_more']}; {c['payment_touchpoints']:,} payment touchpoints; "
        f"{c['payment_issues']} payment issues; {c['ledger_drift_members']} points ledgers drifting; "
        f"{c.get('profile_projection_drift_customers', '?')} customer profiles whose touchpoint count differs from "
        "their touchpoints.",
        "",
        f"One notification sends {len(doc['sql_per_notification'])} statements to MariaDB "
        f"({_sql_kinds(doc['sql_per_notification'])}; in-process capture, the list is in `results/paynotify.json`).",
        "",
        f"Effects afterwards: {eff['workers']} RQ workers (`{eff['command']}`) ran "
        f"{eff['done_by_workers']:,} effect jobs in {_fmt(eff['window_s'], 1)} s = **{_fmt(eff['jobs_per_s'], 1)} "
        "jobs/s** (workers registered → last job finished)"
        + (
            f"; they left {eff['left_unfinished_by_rq_workers']} unfinished ({_errors(eff['unfinished_errors'])}), "
            f"which the bench then ran in-process with `jobs.execute` ({eff.get('finished_in_process', 0)} done)."
            if eff.get("left_unfinished_by_rq_workers")
            else "; none left unfinished."
        ),
        "",
        f"Run time: {doc['timings_s']['total']:.0f} s (schema {doc['timings_s']['schema']:.0f} s, orders "
        f"{doc['timings_s']['orders']:.0f} s, signing the notifications {doc['timings_s']['build_notifications']:.0f} s).",
    ]
    return "\n".join(lines)


def _errors(errors: dict[str, int]) -> str:
    return "; ".join(f"{n} × `{e[:110]}`" for e, n in sorted(errors.items(), key=lambda kv: -kv[1])[:3])


def wecomcallback_table(doc: dict[str, Any]) -> str:
    st = doc["settings"]
    title = f"{st['ack_events']:,} add events, acknowledgement only"
    return _table(LATENCY_HEAD, _latency_rows(title, doc["acks"], "× `success`"))


def wecomcallback_e2e_table(doc: dict[str, Any]) -> str:
    e = doc["end_to_end"]
    b, p, wdb, wsb = e["burst"], e["processing"], e["welcome_latency_ms_db"], e["welcome_latency_ms_sandbox"]
    head = (
        "burst",
        "acks/s",
        "ack p50 ms",
        "ack p99 ms",
        "events applied / s",
        "all applied after s",
        "welcome p50 ms",
        "welcome p99 ms",
        "welcome max ms",
        "welcome p50 / p99 ms (sandbox clock)",
    )
    rows = [
        (
            f"{b['events']} events, {doc['settings']['burst_concurrency']} connections, "
            f"{doc['settings']['rq_workers']} RQ workers",
            _fmt(b["acks_per_s"], 1),
            _fmt(b["ack_p50_ms"]),
            _fmt(b["ack_p99_ms"]),
            _bold(p["events_applied_per_s"], 1),
            _fmt(p["settled_after_s"], 1),
            _fmt(wdb["p50"], 0),
            _bold(wdb["p99"], 0),
            _fmt(wdb["max"], 0),
            f"{_fmt(wsb['p50'], 0)} / {_fmt(wsb['p99'], 0)}",
        )
    ]
    return _table(head, rows)


def wecomcallback_readme_section(doc: dict[str, Any], table: str) -> str:
    st, a, e = doc["settings"], doc["acks"], doc["end_to_end"]
    c, ac = e["correct"], a["correct"]
    r = a["ratio_app_over_baseline"]
    lines = [
        _env_line(doc),
        "",
        f"Acknowledgements: {st['client']}, {st['rounds']} rounds interleaving app and baseline, no RQ worker "
        f"running; gunicorn `{' '.join(st['gunicorn'])}`; Redis {st['redis']}.",
        "",
        table,
        "",
        f"Target (issue 3): acknowledgement throughput ≥ 0.70 of the baseline — measured **{_fmt(r['rps'], 3)}** "
        f"(round by round: {', '.join(_fmt(x, 2) for x in a.get('round_ratios') or [])}); "
        f"p99 well under 5 s — measured {_fmt(a['app']['p99_ms'])} ms. One acknowledged callback sends "
        f"{len(doc['sql_per_callback'])} statements to MariaDB ({_sql_kinds(doc['sql_per_callback'])}; "
        "in-process capture, the list is in `results/wecomcallback.json`). Checks "
        f"({'yes' if ac['ok'] else '**NO**'}): {ac['raw_events_stored']:,} raw events stored for "
        f"{ac['events_sent']:,} callbacks, by status {ac['raw_events_by_status']}, {ac['outbox_rows']} outbox rows "
        "(the jobs are created when a worker's pump admits the event, and no worker runs in this phase).",
        "",
        f"End to end: {st['rq_workers']} RQ workers (`{st['rq_worker_command']}`) running, a burst of "
        f"{st['burst_events']} add events (each WelcomeCode issued by the sandbox as its callback is sent) at "
        f"{st['burst_concurrency']} connections; events applied / s = events processed over the time from the "
        "first callback received to the last event processed (database timestamps); welcome latency = "
        "callback → `send_welcome_msg`, as the welcome row records it (`latency_ms`: from when a gunicorn worker "
        "started on the callback, so without the time the callback waited for a free worker) and as the sandbox "
        "saw it (its request time minus the time the bench sent the callback: that wait included).",
        "",
        wecomcallback_e2e_table(doc),
        "",
        f"Welcome latencies are over the {e['welcome_latency_ms_db']['n']} welcomes sent (a welcome later than its "
        "code's 20 s is refused with 41051 and has no latency: see \"in time\" below). The machine's 1-minute load "
        f"average when the burst started: {e['burst'].get('loadavg_1min_at_burst', '?')} (2 cores; anything above 2 "
        "means other work competed with the workers).",
        "",
        f"Target (issue 3): welcome within 2 s of the callback at p99 during a burst — measured "
        f"{_fmt(e['welcome_latency_ms_db']['p99'], 0)} ms. Checks ({'yes' if c['ok'] else '**NO**'}): "
        f"{c['acknowledged']} acknowledged, raw events {c['raw_events_by_status']}, {c['events_retried']} "
        f"retried (max {c['max_attempts']} attempts), {c['active_friends']} active friends, "
        f"{c['friend_added_touchpoints']} `friend_added` touchpoints, welcome rows {c['welcome_rows']}, "
        f"{c['welcome_accepted_by_sandbox']} welcome messages accepted by the sandbox "
        f"(**{c.get('welcomes_in_time', '?')} of {c['events_sent']} in time**); jobs {c['jobs_by_status']}"
        + (f"; job errors: {_errors(c['job_errors'])}" if c["job_errors"] else "")
        + ".",
        "",
        f"Run time: {doc['timings_s']['total']:.0f} s (schema {doc['timings_s']['schema']:.0f} s).",
    ]
    return "\n".join(lines)
