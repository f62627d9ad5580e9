"""Start and stop gunicorn with identical settings for the app and the baseline.

Settings (the same for both): `--workers 4 --worker-class sync`, two processes per core. A sync
worker serves one request at a time and only accepts a connection when it is free, so the load
spreads evenly; while one worker waits on MariaDB another runs. The sync worker closes the
connection after each response (it is meant to sit behind a buffering proxy), so every request
pays a loopback TCP connect, in both implementations alike. `gthread` with keep-alive was tried
and rejected for the measurement: kept-alive connections stick to whichever worker accepted
them (6/2 and 5/3 splits of 8 connections were seen), and four 4-s runs of the baseline gave
767-1138 req/s with gthread (2 workers x 4 threads) against 1051-1162 req/s with 4 sync
workers. No access log.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKERS = 4
GUNICORN_SETTINGS = [
    "--workers",
    str(WORKERS),
    "--worker-class",
    "sync",
    "--timeout",
    "30",
    "--backlog",
    "256",
    "--log-level",
    "warning",
    "--graceful-timeout",
    "5",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # gunicorn: graceful stop of the master and its workers
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start(
    name: str,
    wsgi_target: str,
    env: Mapping[str, str],
    log_dir: Path,
    settings: list[str] | None = None,
    port: int | None = None,
) -> Server:
    """`settings` replaces GUNICORN_SETTINGS (use `with_setting` to change one of them, so that
    the app and its baseline still share everything else); `port` is chosen when not given."""
    port = port or free_port()
    log_path = log_dir / f"{name}.gunicorn.log"
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        *(GUNICORN_SETTINGS if settings is None else settings),
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(REPO_ROOT),
        wsgi_target,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    return Server(name, port, process, log_path)


def wait_ready(server: Server, path: str, headers: Mapping[str, str], timeout: float = 60.0) -> None:
    """Until `path` answers 200, then once more per worker so that every worker has imported the app."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"{server.name}: gunicorn exited ({server.process.returncode})\n{server.log_tail()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("GET", path, headers=dict(headers))
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            if resp.status == 200:
                for _ in range(WORKERS * 2):
                    get_json(server, path, headers)
                return
            last = f"HTTP {resp.status}: {body[:300]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise SystemExit(f"{server.name}: not ready after {timeout:.0f} s ({last})\n{server.log_tail()}")


def get_json(server: Server, path: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path, headers=dict(headers))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def with_setting(flag: str, value: str, settings: list[str] | None = None) -> list[str]:
    """A copy of the gunicorn settings with `flag` set to `value` (added when absent)."""
    out = list(GUNICORN_SETTINGS if settings is None else settings)
    if flag in out:
        out[out.index(flag) + 1] = value
    else:
        out += [flag, value]
    return out


def request(
    server: Server, method: str, path: str, headers: Mapping[str, str], body: bytes | None = None, timeout: float = 30
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
