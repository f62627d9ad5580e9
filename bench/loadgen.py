"""A bounded, self-stopping HTTP load generator: a fixed number of threads, each with one
`http.client` connection (kept alive when the server allows it, re-opened when the server
closes it, as gunicorn's sync worker does), issuing GETs back to back (closed loop) until the
deadline.

Closed loop at fixed concurrency: throughput and latency are measured together, and the client
never queues more than `concurrency` requests. Only 127.0.0.1 is allowed.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field
from typing import Any

LOCAL_HOSTS = ("127.0.0.1", "localhost")


@dataclass
class LoadResult:
    requests: int
    errors: int
    duration_s: float
    latencies_ms: list[float] = field(repr=False)
    error_samples: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def percentile(self, p: float) -> float:
        return percentile(sorted(self.latencies_ms), p)

    def summary(self) -> dict[str, Any]:
        data = sorted(self.latencies_ms)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(percentile(data, 50), 2),
            "p95_ms": round(percentile(data, 95), 2),
            "p99_ms": round(percentile(data, 99), 2),
            "mean_ms": round(sum(data) / len(data), 2) if data else None,
            "max_ms": round(data[-1], 2) if data else None,
        }


def percentile(sorted_values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def run(
    host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    *,
    concurrency: int,
    duration: float,
    timeout: float = 10.0,
) -> LoadResult:
    if host not in LOCAL_HOSTS:
        raise ValueError("the load generator only targets 127.0.0.1")
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    finished_at: list[float] = []
    barrier = threading.Barrier(concurrency + 1)
    deadline_box: list[float] = []

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        local: list[float] = []
        local_errors: list[str] = []
        perf = time.perf_counter
        barrier.wait()
        deadline = deadline_box[0]
        try:
            while True:
                t0 = perf()
                if t0 >= deadline:
                    break
                try:
                    conn.request("GET", path, headers=headers)
                    resp = conn.getresponse()
                    resp.read()
                    status = resp.status
                except (OSError, http.client.HTTPException) as exc:
                    local_errors.append(f"{type(exc).__name__}: {exc}")
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=timeout)
                    continue
                t1 = perf()
                if status == 200:
                    local.append((t1 - t0) * 1000.0)
                else:
                    local_errors.append(f"HTTP {status}")
        finally:
            conn.close()
            with lock:
                latencies.extend(local)
                errors.extend(local_errors)
                finished_at.append(perf())

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    deadline_box.append(started + duration)
    barrier.wait()
    for t in threads:
        t.join(duration + timeout + 5)
    elapsed = (max(finished_at) if finished_at else time.perf_counter()) - started
    return LoadResult(
        requests=len(latencies),
        errors=len(errors),
        duration_s=elapsed,
        latencies_ms=latencies,
        error_samples=sorted(set(errors))[:5],
    )


# ---------------------------------------------------------------------------------------------
# Scripted clients: each client thread sends the requests its script gives it (method, path,
# headers and body may differ per client and per request) until the script says stop. Used for
# bursts (500 clients each redeeming once), closed loops that end on an answer (redeem until
# sold out) and pre-built request lists (signed notifications / callbacks). Same rules as
# `run`: one connection per client, 127.0.0.1 only, a barrier so that all clients start together.


@dataclass(frozen=True)
class Exchange:
    client: int
    seq: int
    started: float  # time.perf_counter() when the request was sent
    finished: float
    status: int  # 0 = transport error (see `error`)
    body: bytes = b""
    error: str | None = None
    tag: Any = None  # the request's tag

    @property
    def latency_ms(self) -> float:
        return (self.finished - self.started) * 1000.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None
    tag: Any = None  # anything the caller wants back on the Exchange


# (client index, request number of this client, the previous exchange or None) -> a request, or
# None when this client is done.
Script = Any


@dataclass
class ScriptResult:
    exchanges: list[Exchange]
    started: float  # perf_counter at the barrier
    duration_s: float  # barrier -> last answer

    def statuses(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for e in self.exchanges:
            out[e.status] = out.get(e.status, 0) + 1
        return dict(sorted(out.items()))

    def summary(self, ok: tuple[int, ...] = (200,)) -> dict[str, Any]:
        """Latency over every answer and over the `ok` ones; rate of `ok` answers per second
        from the barrier to the last `ok` answer (a burst's throughput)."""
        all_ms = sorted(e.latency_ms for e in self.exchanges if e.status)
        good = [e for e in self.exchanges if e.status in ok]
        good_ms = sorted(e.latency_ms for e in good)
        last_ok = max((e.finished for e in good), default=self.started)
        ok_window = last_ok - self.started
        return {
            "requests": len(self.exchanges),
            "statuses": {str(k): v for k, v in self.statuses().items()},
            "transport_errors": sum(1 for e in self.exchanges if not e.status),
            "duration_s": round(self.duration_s, 3),
            "answers_per_s": round(len(all_ms) / self.duration_s, 1) if self.duration_s else None,
            "ok": len(good),
            "ok_window_s": round(ok_window, 3),
            "ok_per_s": round(len(good) / ok_window, 1) if ok_window > 0 else None,
            "p50_ms": round(percentile(all_ms, 50), 2),
            "p95_ms": round(percentile(all_ms, 95), 2),
            "p99_ms": round(percentile(all_ms, 99), 2),
            "max_ms": round(all_ms[-1], 2) if all_ms else None,
            "ok_p50_ms": round(percentile(good_ms, 50), 2),
            "ok_p95_ms": round(percentile(good_ms, 95), 2),
            "ok_p99_ms": round(percentile(good_ms, 99), 2),
        }


def run_script(
    host: str,
    port: int,
    script: Script,
    *,
    clients: int,
    max_duration: float,
    timeout: float = 60.0,
    keep_bodies: bool = True,
) -> ScriptResult:
    """Run `clients` threads; each asks `script(client, seq, previous)` for its next request and
    stops on None or at `max_duration` after the start (a safety cap, not a measurement window)."""
    if host not in LOCAL_HOSTS:
        raise ValueError("the load generator only targets 127.0.0.1")
    lock = threading.Lock()
    exchanges: list[Exchange] = []
    barrier = threading.Barrier(clients + 1)
    box: list[float] = []

    def worker(client: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        local: list[Exchange] = []
        perf = time.perf_counter
        previous: Exchange | None = None
        barrier.wait()
        deadline = box[0] + max_duration
        try:
            seq = 0
            while perf() < deadline:
                req = script(client, seq, previous)
                if req is None:
                    break
                t0 = perf()
                try:
                    conn.request(req.method, req.path, body=req.body, headers=req.headers)
                    resp = conn.getresponse()
                    body = resp.read()
                    previous = Exchange(client, seq, t0, perf(), resp.status, body if keep_bodies else b"", tag=req.tag)
                except (OSError, http.client.HTTPException) as exc:
                    previous = Exchange(client, seq, t0, perf(), 0, b"", f"{type(exc).__name__}: {exc}", tag=req.tag)
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=timeout)
                local.append(previous)
                seq += 1
        finally:
            conn.close()
            with lock:
                exchanges.extend(local)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    box.append(started)
    barrier.wait()
    for t in threads:
        t.join(max_duration + timeout + 5)
    last = max((e.finished for e in exchanges), default=time.perf_counter())
    return ScriptResult(exchanges=exchanges, started=started, duration_s=last - started)
