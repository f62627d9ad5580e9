"""RQ workers for the benchmarks: start, wait until registered, stop — the shipped
`flask --app wsgi worker` (RQ's non-forking SimpleWorker with the relayer and intake pumps)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import servers

COMMAND = [sys.executable, "-m", "flask", "--app", "wsgi", "worker"]


def start(env: dict[str, str], n: int, log_dir: Path, label: str) -> list[tuple[subprocess.Popen, Any]]:
    procs = []
    for i in range(n):
        log = open(log_dir / f"rq-worker-{label}-{i}.log", "wb")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(
            COMMAND,
            cwd=servers.REPO_ROOT,
            env={**os.environ, **env, "PYTHONPATH": str(servers.REPO_ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append((proc, log))
    return procs


def wait_up(redis: str, n: int, timeout: float = 60) -> None:
    import redis as redis_lib
    from rq import Worker

    conn = redis_lib.Redis.from_url(redis)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(Worker.all(connection=conn)) >= n:
            return
        time.sleep(0.2)
    raise SystemExit(f"RQ workers not up after {timeout:.0f} s")


def stop(procs: list[tuple[subprocess.Popen, Any]]) -> None:
    for proc, _log in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # RQ: warm shutdown (finishes the current job)
    for proc, log in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def display() -> str:
    """The command as a person would type it."""
    return " ".join(["python", *COMMAND[1:]])
