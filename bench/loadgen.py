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
