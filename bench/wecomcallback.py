"""Benchmark: the WeCom callback receiver, and the event pipeline behind it.

1. **Acknowledgements** — signed, encrypted `change_external_contact / add_external_contact`
   events POSTed to `/callbacks/wecom` (integrations/wecom/callbacks.py: verify msg_signature,
   AES-256-CBC decrypt with wechatpy's WeChatCrypto, check the receive id and the timestamp, store
   the raw event with its dedup key by one autocommitted INSERT, answer `success`; the event's
   jobs are created later by a worker's intake pump) on gunicorn with MariaDB and Redis, no
   worker running, against `bench.baseline_app`'s bare view that reads the body and answers
   `success`, on the same gunicorn settings, sent the very same requests, in interleaved rounds.
2. **End to end** — with two RQ workers running, a burst of add events (each for a contact the
   sandbox knows, with a WelcomeCode the sandbox issued just before): events fully applied per
   second (from the first callback received to the last event processed, database timestamps)
   and the welcome message latency, callback received -> `send_welcome_msg` done, as the welcome
   row records it (`latency_ms`) and as the sandbox saw it (its request log time minus the time
   the bench sent the callback).

The events are built with the sandbox's emit helper (`integrations.sandbox.wecom_emit`:
`build_event`, `sign_event`) and the sandbox's credentials, passed to the app as ordinary
settings (SANDBOX_ENABLED=0: the in-app sandbox would give every gunicorn worker its own keys
and its own in-memory state). The sandbox runs in the bench process (`SandboxServer`, one state
for everybody) and the app's WECOM_API_BASE points at it, so `externalcontact/get` and
`send_welcome_msg` from the workers reach the same sandbox that issued the welcome codes.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench import appenv, benchdb, loadgen, paynotify, report, rqworkers, servers

RESULTS_DIR = Path(__file__).resolve().parent / "results"
APP_PATH = "/callbacks/wecom"
BASE_PATH = "/baseline/wecom"
STATE = "bench-store-01"
ADVISORS = 20
FINAL = ("processed", "ignored", "dead")


def app_env(url: str, credentials: dict[str, str], redis: str, sandbox_base: str) -> dict[str, str]:
    return appenv.app_env(
        url,
        REDIS_URL=redis,
        **credentials,
        WECOM_API_BASE=f"{sandbox_base}/wecom",
        WECHAT_API_BASE=f"{sandbox_base}/wechat",
        WECHATPAY_GATEWAY=f"{sandbox_base}/wechatpay",
    )


def _app(url: str, credentials: dict[str, str], sandbox_base: str) -> Any:
    from backend import create_app

    return create_app({**app_env(url, credentials, "", sandbox_base), "SANDBOX_ENABLED": False})


def setup_org(url: str, credentials: dict[str, str], sandbox_base: str, state: Any) -> dict[str, Any]:
    """A store with a manager and ADVISORS advisors (also WeCom members in the sandbox), a
    welcome template and the store's contact way (channel) whose `state` the events carry."""
    from backend.org.models import OrgKind, OrgUnit, Role, Staff, StaffRole
    from backend.org.service import org_path
    from backend.platform.db import db
    from backend.wecom.models import WeComChannel, WelcomeTemplate

    app = _app(url, credentials, sandbox_base)
    corp = credentials["WECOM_CORP_ID"]
    with app.app_context():
        s = db.session()
        group = OrgUnit(kind=OrgKind.GROUP, code="bench-group", name="基准集团", path="/")
        s.add(group)
        s.flush()
        group.path = org_path(None, group.id)
        store = OrgUnit(kind=OrgKind.STORE, code="bench-store", name="浦东旗舰店", parent_id=group.id, path="/")
        s.add(store)
        s.flush()
        store.path = org_path(group, store.id)
        userids = [f"bench-adv-{i:02d}" for i in range(ADVISORS)]
        for i, uid in enumerate([*userids, "bench-manager"]):
            st = Staff(corp_id=corp, wecom_userid=uid, name=f"顾问{i}", org_unit_id=store.id)
            st.role_rows = [StaffRole(role=Role.STORE_MANAGER if uid == "bench-manager" else Role.SALES_ADVISOR)]
            s.add(st)
            state.add_member(uid, f"顾问{i}")
        template = WelcomeTemplate(
            name="门店欢迎语",
            store_id=store.id,
            text="您好{customer_name}，我是{store_name}的{advisor_name}，很高兴为您服务！",
            attachments=[
                {"msgtype": "link", "link": {"title": "门店地址", "url": "https://example.invalid/store"}},
            ],
        )
        s.add(template)
        s.flush()
        s.add(
            WeComChannel(
                corp_id=corp,
                name="门店二维码",
                kind="store",
                state=STATE,
                store_id=store.id,
                userids=userids,
                welcome_template_id=template.id,
            )
        )
        s.commit()
        db.session.remove()
        db.engine.dispose()
    return {"userids": userids}


def add_contact(state: Any, userids: list[str], prefix: str, i: int) -> tuple[str, str]:
    """A new external contact in the sandbox, following one of the advisors: (external_userid, userid)."""
    ext = f"wm{prefix}{i:06d}"
    uid = userids[i % len(userids)]
    state.add_external_contact(ext, f"车主{prefix}{i}", follow_userid=uid, state=STATE, add_way=1)
    return ext, uid


def signed_add_event(
    credentials: dict[str, str], state: Any, uid: str, ext: str, welcome: bool
) -> tuple[str, str, str | None]:
    """(query string, body, WelcomeCode) of an add event as WeCom sends it now: the code is issued
    by the sandbox at this moment (it lives 20 s from here, as WeCom's does)."""
    from integrations.sandbox.wecom_emit import build_event, sign_event

    fields: dict[str, Any] = {
        "ChangeType": "add_external_contact",
        "UserID": uid,
        "ExternalUserID": ext,
        "State": STATE,
    }
    code = state.issue_welcome_code(uid, ext) if welcome else None
    if code:
        fields["WelcomeCode"] = code
    xml = build_event(corp_id=credentials["WECOM_CORP_ID"], create_time=int(time.time()), **fields)
    params, body = sign_event(xml, credentials)
    return urlencode(params), body, code


def build_events(
    credentials: dict[str, str], state: Any, userids: list[str], n: int, prefix: str, welcome: bool
) -> list[tuple[str, str, str, str | None]]:
    """(external_userid, query string, body, WelcomeCode) of n add events built ahead of sending
    (the acknowledgement phase: no worker runs, the codes are never used)."""
    out = []
    for i in range(n):
        ext, uid = add_contact(state, userids, prefix, i)
        q, body, code = signed_add_event(credentials, state, uid, ext, welcome)
        out.append((ext, q, body, code))
    return out


def callback_sql(
    url: str, credentials: dict[str, str], redis: str, sandbox_base: str, state: Any, userids: list[str]
) -> list[str]:
    """In-process (Redis configured, as on gunicorn): the statements one acknowledged callback sends."""
    from backend import create_app
    from backend.platform.db import db

    app = create_app({**app_env(url, credentials, redis, sandbox_base), "SANDBOX_ENABLED": False})
    # The second of two: the first opens the connection that the acknowledgements keep.
    (first, second) = build_events(credentials, state, userids, 2, "S", welcome=True)
    client = app.test_client()

    def post(event: tuple[str, str, str, str | None]) -> None:
        ext, q, body, _code = event
        resp = client.post(f"{APP_PATH}?{q}", data=body, headers={"Content-Type": "text/xml"})
        if resp.status_code != 200 or resp.data != b"success":
            raise SystemExit(f"in-process callback {ext}: HTTP {resp.status_code}: {resp.data[:300]!r}")

    try:
        post(first)
        return benchdb.capture_sql(app, lambda: post(second))
    finally:
        db.engine.dispose()


def _requests(events: list[tuple[str, str, str, str | None]], path: str) -> list[loadgen.Request]:
    headers = {"Content-Type": "text/xml"}
    return [
        loadgen.Request("POST", f"{path}?{q}", headers, body.encode("utf-8"), tag=ext) for ext, q, body, _c in events
    ]


def pipeline_state(url: str, first_id: int) -> dict[str, Any]:
    conn = benchdb.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT status, COUNT(*), MIN(received_at), MAX(processed_at) FROM wecom_raw_event WHERE id >= %s "
                "GROUP BY status",
                (first_id,),
            )
            rows = cur.fetchall()
            cur.execute(
                "SELECT w.status, COUNT(*) FROM wecom_welcome_message w WHERE w.raw_event_id >= %s GROUP BY w.status",
                (first_id,),
            )
            welcome = dict(cur.fetchall())
    finally:
        conn.close()
    return {
        "by_status": {r[0]: r[1] for r in rows},
        "received_from": min((r[2] for r in rows), default=None),
        "processed_until": max((r[3] for r in rows if r[3] is not None), default=None),
        "welcome": welcome,
    }


def end_to_end(
    url: str,
    credentials: dict[str, str],
    state: Any,
    env: dict[str, str],
    app_srv: servers.Server,
    userids: list[str],
    *,
    events: int,
    concurrency: int,
    workers: int,
    redis: str,
    log_dir: Path,
) -> dict[str, Any]:
    procs = rqworkers.start(env, workers, log_dir, "e2e")
    try:
        rqworkers.wait_up(redis, workers)
        time.sleep(3)  # let the workers' first periodic ticks pass (every periodic job fires at start)
        first_id = int(benchdb.scalar(url, "SELECT COALESCE(MAX(id), 0) + 1 FROM wecom_raw_event"))
        sandbox_log_from = len(state.received())
        loadavg = os.getloadavg()[0]
        # Each event is built, its WelcomeCode issued and the callback signed by the client thread
        # right before it is sent, as WeCom does when a customer adds the advisor.
        contacts = [add_contact(state, userids, "E", i) for i in range(events)]
        codes: dict[str, str] = {}
        lock = threading.Lock()
        cursor = [0]

        def script(_client: int, _seq: int, _prev: loadgen.Exchange | None) -> loadgen.Request | None:
            with lock:
                i = cursor[0]
                cursor[0] += 1
            if i >= len(contacts):
                return None
            ext, uid = contacts[i]
            q, body, code = signed_add_event(credentials, state, uid, ext, welcome=True)
            with lock:
                codes[str(code)] = ext
            return loadgen.Request("POST", f"{APP_PATH}?{q}", {"Content-Type": "text/xml"}, body.encode(), tag=ext)

        t0 = time.perf_counter()
        result = loadgen.run_script(
            "127.0.0.1", app_srv.port, script, clients=concurrency, max_duration=120, timeout=30
        )
        offset = time.time() - time.perf_counter()
        sent_at = {e.tag: e.started + offset for e in result.exchanges}  # external_userid -> wall clock
        acked = time.perf_counter() - t0
        deadline = time.monotonic() + 90  # keeps the run bounded when the machine is overloaded
        snap = pipeline_state(url, first_id)
        while time.monotonic() < deadline:
            snap = pipeline_state(url, first_id)
            done = sum(v for k, v in snap["by_status"].items() if k in FINAL)
            if done >= events and sum(snap["welcome"].values()) >= events:
                break
            time.sleep(0.5)
        settled = time.perf_counter() - t0
    finally:
        rqworkers.stop(procs)
    return {
        "result": result,
        "acked_s": acked,
        "settled_s": settled,
        "snapshot": snap,
        "first_id": first_id,
        "sent_at": sent_at,
        "sandbox_log_from": sandbox_log_from,
        "loadavg_1min_at_burst": round(loadavg, 2),
        "codes": codes,
    }


def _pcts(values: list[float]) -> dict[str, float | None]:
    v = sorted(values)
    if not v:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    return {
        "n": len(v),
        "p50": round(loadgen.percentile(v, 50), 1),
        "p95": round(loadgen.percentile(v, 95), 1),
        "p99": round(loadgen.percentile(v, 99), 1),
        "max": round(v[-1], 1),
    }


def e2e_figures(url: str, state: Any, run: dict[str, Any], events: int) -> dict[str, Any]:
    """Rates, welcome latencies and the checks of the end-to-end burst."""
    first_id = run["first_id"]
    snap = run["snapshot"]
    conn = benchdb.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT w.latency_ms FROM wecom_welcome_message w WHERE w.raw_event_id >= %s AND w.status = 'sent'",
                (first_id,),
            )
            latencies = [float(r[0]) for r in cur.fetchall() if r[0] is not None]
            cur.execute(
                "SELECT COUNT(*), SUM(e.attempts > 1), MAX(e.attempts) FROM wecom_raw_event e WHERE e.id >= %s",
                (first_id,),
            )
            stored, retried_events, max_attempts = cur.fetchone()
            cur.execute(
                "SELECT COUNT(*) FROM wecom_friend f JOIN wecom_raw_event e ON e.id >= %s "
                "AND e.xml LIKE CONCAT('%%<ExternalUserID><![CDATA[', f.external_userid, ']]>%%') "
                "WHERE f.status = 'active'",
                (first_id,),
            )
            friends = cur.fetchone()[0]
            cur.execute(
                "SELECT COUNT(*) FROM touchpoint WHERE kind = 'friend_added' AND source_ref IN "
                "(SELECT CONCAT('wecom:ev', id, ':friend_added') FROM wecom_raw_event WHERE id >= %s)",
                (first_id,),
            )
            added_touchpoints = cur.fetchone()[0]
            cur.execute(
                "SELECT status, COUNT(*), SUM(attempts > 1) FROM outbox_job WHERE name IN "
                "('wecom.process_event', 'wecom.send_welcome') AND id IN (SELECT id FROM outbox_job "
                "WHERE CAST(JSON_VALUE(args, '$.raw_event_id') AS UNSIGNED) >= %s) GROUP BY status",
                (first_id,),
            )
            jobs = {r[0]: {"rows": r[1], "retried": int(r[2] or 0)} for r in cur.fetchall()}
            cur.execute(
                "SELECT LEFT(last_error, 160), COUNT(*) FROM outbox_job WHERE last_error IS NOT NULL AND name IN "
                "('wecom.process_event', 'wecom.send_welcome') GROUP BY LEFT(last_error, 160) ORDER BY 2 DESC LIMIT 5"
            )
            job_errors = {r[0]: r[1] for r in cur.fetchall()}
    finally:
        conn.close()
    # the sandbox's view: first send_welcome_msg carrying the code, minus when the bench sent the callback
    first_seen: dict[str, float] = {}
    for entry in state.received("/cgi-bin/externalcontact/send_welcome_msg")[0:]:
        code = (entry.get("json") or {}).get("welcome_code")
        if code in run["codes"] and code not in first_seen:
            first_seen[code] = entry["at"]
    accepted = {m.get("welcome_code") for m in state.welcome_messages}
    sandbox_ms = [
        (at - run["sent_at"][run["codes"][code]]) * 1000
        for code, at in first_seen.items()
        if code in accepted and run["codes"][code] in run["sent_at"]
    ]
    processed = snap["by_status"].get("processed", 0)
    window = (
        (snap["processed_until"] - snap["received_from"]).total_seconds()
        if snap["processed_until"] and snap["received_from"]
        else None
    )
    acks = run["result"].summary(ok=(200,))
    checks = {
        "events_sent": events,
        "acknowledged": acks["ok"],
        "raw_events_stored": int(stored or 0),
        "raw_events_by_status": snap["by_status"],
        "events_retried": int(retried_events or 0),
        "max_attempts": int(max_attempts or 0),
        "active_friends": friends,
        "friend_added_touchpoints": added_touchpoints,
        "welcome_rows": snap["welcome"],
        "welcome_accepted_by_sandbox": len(accepted & set(run["codes"])),
        "jobs_by_status": jobs,
        "job_errors": job_errors,
    }
    # Correctness: everything applied once, one welcome outcome per event, the sandbox accepted
    # exactly the welcomes recorded as sent. A welcome that came after its code's 20 s
    # (`expired`, or `failed` / `already_sent` when WeCom answered late) is a latency miss,
    # reported with the welcome figures, not a broken book.
    checks["ok"] = (
        acks["ok"] == events
        and processed == events
        and friends == events
        and added_touchpoints == events
        and sum(snap["welcome"].values()) == events
        and checks["welcome_accepted_by_sandbox"] == snap["welcome"].get("sent", 0)
    )
    checks["welcomes_in_time"] = snap["welcome"].get("sent", 0)
    return {
        "burst": {
            "events": events,
            "acks_per_s": acks["answers_per_s"],
            "ack_p50_ms": acks["p50_ms"],
            "ack_p95_ms": acks["p95_ms"],
            "ack_p99_ms": acks["p99_ms"],
            "ack_max_ms": acks["max_ms"],
            "burst_sent_in_s": round(run["acked_s"], 2),
            "loadavg_1min_at_burst": run["loadavg_1min_at_burst"],
        },
        "processing": {
            "events_processed": processed,
            "window_s": round(window, 2) if window else None,
            "events_applied_per_s": round(processed / window, 1) if window else None,
            "settled_after_s": round(run["settled_s"], 1),
        },
        "welcome_latency_ms_db": _pcts(latencies),
        "welcome_latency_ms_sandbox": _pcts(sandbox_ms),
        "correct": checks,
    }


def ack_phase(
    app_srv: servers.Server,
    base_srv: servers.Server,
    credentials: dict[str, str],
    state: Any,
    userids: list[str],
    *,
    events: int,
    concurrency: int,
    rounds: int,
) -> tuple[dict[str, Any], float]:
    t = time.perf_counter()
    built = build_events(credentials, state, userids, events, "A", welcome=True)
    t_build = time.perf_counter() - t
    print(
        f"[wecomcallback] acknowledgements: {events} events built and signed ({t_build:.1f} s); {rounds} "
        f"interleaved rounds at concurrency {concurrency}, no worker running ...",
        flush=True,
    )
    chunk = -(-len(built) // rounds)
    per: dict[str, list[dict[str, Any]]] = {"baseline": [], "app": []}
    for r in range(rounds):
        part = built[r * chunk : (r + 1) * chunk]
        for impl in ("baseline", "app") if r % 2 == 0 else ("app", "baseline"):
            srv, path = (app_srv, APP_PATH) if impl == "app" else (base_srv, BASE_PATH)
            per[impl].append(paynotify.measure(srv, _requests(part, path), concurrency))
    results = {impl: paynotify.combine(parts, ok=(200,)) for impl, parts in per.items()}
    # Each round's own ratio: the machine (a shared VM) changes state within seconds, and the app,
    # which waits on a commit per callback, suffers more from a slow phase than the baseline.
    results["round_ratios"] = [
        _ratio(_round_rps(app), _round_rps(base)) for app, base in zip(per["app"], per["baseline"], strict=True)
    ]
    bodies = {e.body for parts in per.values() for p in parts for e in p["result"].exchanges if e.status == 200}
    results["answer_bodies"] = sorted(b.decode(errors="replace") for b in bodies)
    return results, t_build


def ack_checks(url: str, events_sent_to_app: int, first_id: int) -> dict[str, Any]:
    conn = benchdb.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT status, COUNT(*) FROM wecom_raw_event WHERE id >= %s GROUP BY status", (first_id,))
            by_status = dict(cur.fetchall())
            cur.execute(
                "SELECT COUNT(*) FROM outbox_job WHERE name IN ('wecom.process_event', 'wecom.send_welcome') "
                "AND CAST(JSON_VALUE(args, '$.raw_event_id') AS UNSIGNED) >= %s",
                (first_id,),
            )
            jobs = cur.fetchone()[0]
    finally:
        conn.close()
    stored = sum(by_status.values())
    return {
        "events_sent": events_sent_to_app,
        "raw_events_stored": stored,
        "raw_events_by_status": by_status,
        # No worker runs in this phase: every event waits, acknowledged and stored, for a
        # worker's pump to admit it (its jobs are created then).
        "outbox_rows": jobs,
        "ok": stored == events_sent_to_app and by_status.get("accepted", 0) == stored and jobs == 0,
    }


def set_aside(url: str, redis: str) -> int:
    """The warm-up and capture events must not run ahead of the burst: the rows are marked
    `ignored`, which no pump admits (and Redis is flushed)."""
    paynotify.flush_redis(redis)
    conn = benchdb.connect(url)
    try:
        with conn.cursor() as cur:
            n = cur.execute("UPDATE wecom_raw_event SET status = 'ignored' WHERE status = 'accepted'")
        conn.commit()
    finally:
        conn.close()
    return n


def _round_rps(part: dict[str, Any]) -> float:
    result = part["result"]
    return len(result.exchanges) / result.duration_s if result.duration_s else 0.0


def _ratio(a: Any, b: Any) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def run(
    *,
    ack_events: int = 9000,
    burst_events: int = 200,
    concurrency: int = 8,
    burst_concurrency: int = 16,
    rounds: int = 3,
    workers: int = 2,
    update_readme: bool = True,
) -> dict[str, Any]:
    from integrations.sandbox import SandboxServer, create_sandbox, dev_credentials

    t_start = time.perf_counter()
    url = benchdb.url_for("wecom")
    redis = paynotify.redis_url()
    print(f"[wecomcallback] (re)creating {url.rsplit('/', 1)[-1]} with the migrations; Redis {redis} ...", flush=True)
    t_schema = benchdb.recreate(url, "wecomcallback")
    paynotify.flush_redis(redis)
    credentials = dev_credentials()
    sandbox_server = SandboxServer(create_sandbox(credentials, seed=False))
    sandbox_base = sandbox_server.start()
    state = sandbox_server.state
    org = setup_org(url, credentials, sandbox_base, state)
    env = app_env(url, credentials, redis, sandbox_base)
    log_dir = Path(tempfile.mkdtemp(prefix="dealerloop-bench-logs-"))
    app_srv = base_srv = None
    try:
        app_srv = servers.start("app", "wsgi:app", env, log_dir)
        base_srv = servers.start("baseline", "bench.baseline_app:app", {"BENCH_DATABASE_URL": url}, log_dir)
        servers.wait_ready(app_srv, "/healthz", {})
        servers.wait_ready(base_srv, "/baseline/healthz", {})
        for ext, q, body, _code in build_events(credentials, state, org["userids"], 4 * servers.WORKERS, "W", True):
            for srv, path in ((app_srv, APP_PATH), (base_srv, BASE_PATH)):
                status, raw = servers.request(srv, "POST", f"{path}?{q}", {"Content-Type": "text/xml"}, body.encode())
                if status != 200 or raw != b"success":
                    raise SystemExit(
                        f"{srv.name} warm-up callback {ext}: HTTP {status}: {raw[:300]!r}\n{srv.log_tail()}"
                    )
        sql = callback_sql(url, credentials, redis, sandbox_base, state, org["userids"])
        print(f"[wecomcallback] one acknowledged callback sends {len(sql)} statements (in-process capture)")
        set_aside(url, redis)
        print(
            f"[wecomcallback] sandbox at {sandbox_base}; gunicorn up: app :{app_srv.port}, baseline "
            f":{base_srv.port}; warmed up",
            flush=True,
        )

        print(
            f"[wecomcallback] end to end: {workers} RQ workers ({rqworkers.display()}),"
            f" a burst of {burst_events} add events at concurrency {burst_concurrency} ...",
            flush=True,
        )
        e2e_run = end_to_end(
            url,
            credentials,
            state,
            env,
            app_srv,
            org["userids"],
            events=burst_events,
            concurrency=burst_concurrency,
            workers=workers,
            redis=redis,
            log_dir=log_dir,
        )
        e2e = e2e_figures(url, state, e2e_run, burst_events)
        print(f"[wecomcallback]   {json.dumps({k: v for k, v in e2e.items() if k != 'correct'}, default=str)}")
        print(f"[wecomcallback]   correct: {e2e['correct']['ok']} {json.dumps(e2e['correct'], default=str)}")

        first_ack_id = int(benchdb.scalar(url, "SELECT COALESCE(MAX(id), 0) + 1 FROM wecom_raw_event"))
        acks, t_build = ack_phase(
            app_srv,
            base_srv,
            credentials,
            state,
            org["userids"],
            events=ack_events,
            concurrency=concurrency,
            rounds=rounds,
        )
        app_log = app_srv.log_tail()
    finally:
        for srv in (app_srv, base_srv):
            if srv is not None:
                srv.stop()
        sandbox_server.stop()

    acks["ratio_app_over_baseline"] = {
        "rps": _ratio(acks["app"]["rps"], acks["baseline"]["rps"]),
        "p50": _ratio(acks["app"]["p50_ms"], acks["baseline"]["p50_ms"]),
        "p95": _ratio(acks["app"]["p95_ms"], acks["baseline"]["p95_ms"]),
        "p99": _ratio(acks["app"]["p99_ms"], acks["baseline"]["p99_ms"]),
        "gunicorn_cpu_per_req": _ratio(
            acks["app"]["gunicorn_cpu_ms_per_req"], acks["baseline"]["gunicorn_cpu_ms_per_req"]
        ),
    }
    for impl in ("baseline", "app"):
        m = acks[impl]
        if (m.get("other_processes_cpu_pct") or 0) > 10:
            print(
                f"[wecomcallback]   warning: other processes used {m['other_processes_cpu_pct']:.0f} % of the "
                f"machine's CPU while {impl} was measured; the figures are noisy"
            )
        print(
            f"[wecomcallback]   {impl}: {m['rps']}/s, p50 {m['p50_ms']} p95 {m['p95_ms']} p99 {m['p99_ms']} ms; "
            f"statuses {m['statuses']}",
            flush=True,
        )
    print(f"[wecomcallback]   app / baseline round by round: {acks['round_ratios']}", flush=True)
    if acks["app"]["ok"] != acks["app"]["requests"]:
        print(f"[wecomcallback]   the app refused some callbacks:\n{app_log}")
    ack_ok = ack_checks(url, acks["app"]["requests"], first_ack_id)

    total = time.perf_counter() - t_start
    doc = {
        "benchmark": "wecomcallback",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": benchdb.environment(url),
        "settings": {
            "gunicorn": servers.GUNICORN_SETTINGS,
            "client": f"python http.client, {concurrency} connections, closed loop over the prepared callbacks",
            "concurrency": concurrency,
            "rounds": rounds,
            "ack_events": ack_events,
            "burst_events": burst_events,
            "burst_concurrency": burst_concurrency,
            "rq_workers": workers,
            "rq_worker_command": rqworkers.display(),
            "redis": redis,
            "sandbox": "integrations.sandbox.SandboxServer in the bench process",
        },
        "sql_per_callback": sql,
        "acks": {**acks, "correct": ack_ok},
        "end_to_end": e2e,
        "timings_s": {"schema": round(t_schema, 1), "build_ack_events": round(t_build, 1), "total": round(total, 1)},
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / "wecomcallback.json"
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")
    table = report.wecomcallback_table(doc)
    print()
    print(table)
    print(f"\n[wecomcallback] results: {out.relative_to(servers.REPO_ROOT)}; took {total:.0f} s")
    if update_readme:
        report.update_readme("wecomcallback", report.wecomcallback_readme_section(doc, table))
    if not (ack_ok["ok"] and e2e["correct"]["ok"]):
        raise SystemExit(f"[wecomcallback] checks failed: acks {ack_ok}; end to end {e2e['correct']}")
    return doc
