"""CPU time of processes from /proc (Linux), to report server CPU per request. Everything here
degrades to None when /proc is not readable: it is supporting data, not a measured figure."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
        return found
    except OSError:
        pass
    for entry in Path("/proc").iterdir():  # no children file: scan the parents
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def tree_cpu_seconds(pid: int) -> float | None:
    """The process and its direct children (a gunicorn master and its workers)."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        s = _cpu_seconds(p)
        if s is None:
            return None
        total += s
    return total


def find_pid(*names: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in names:
                    return int(entry.name)
            except OSError:
                continue
    return None


def system_cpu_seconds() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    busy = user + nice + system + irq + softirq + steal
    return busy / _TICKS, (busy + idle + iowait) / _TICKS
