"""Run one measurement in a fresh (spawned) process and report its peak resident memory.

Both the measured process's own peak (`ru_maxrss`) and the peak of the sum over it and every
process it starts (harvest and audit workers), sampled from outside every 0.2 s: as a sum of
resident memory (RSS), which counts the pages the processes share (the interpreter, the
libraries' code) once per process, and as a sum of proportional set sizes (PSS,
/proc/PID/smaps_rollup), which splits each shared page among the processes mapping it.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

SAMPLE_SECONDS = 0.2


class Measured(NamedTuple):
    result: Any
    seconds: float
    peak_rss: int  # bytes, the measured process alone (its VmHWM)
    tree_peak_rss: int  # bytes, the largest sum of RSS seen over it and its descendants
    tree_peak_pss: int  # bytes, the largest sum of PSS seen over them (shared pages split)


def _run(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        start = time.perf_counter()
        result = fn(*args)
        elapsed = time.perf_counter() - start
        # VmHWM, not ru_maxrss: Linux carries into ru_maxrss the peak of the image this
        # process was forked from before its exec (the spawning parent's whole memory)
        rss = peak_rss_of(os.getpid()) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        conn.send(("ok", result, elapsed, rss))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", traceback.format_exc(), 0.0, 0))
    finally:
        conn.close()


def isolated(fn: Callable[..., Any], *args: Any) -> Measured:
    """``fn(*args)`` in a new interpreter, with its wall time and peak memory.

    A fresh process keeps one measurement's memory and caches out of the next one's.
    """
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_run, args=(send, fn, args))
    process.start()
    send.close()
    tree_peak = tree_pss = 0
    try:
        while not receive.poll(SAMPLE_SECONDS):
            if not process.is_alive():
                raise RuntimeError(f"measurement process died (exit code {process.exitcode})")
            rss, pss = tree_memory(process.pid or 0)
            tree_peak, tree_pss = max(tree_peak, rss), max(tree_pss, pss)
        status, payload, elapsed, rss = receive.recv()
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()
    if status != "ok":
        raise RuntimeError(f"measurement failed in its process:\n{payload}")
    return Measured(payload, elapsed, rss, max(tree_peak, rss), tree_pss)


def _stat(pid: str) -> tuple[int, int] | None:
    """(parent pid, resident bytes) of a process, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[21]) * os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> int:
    """Resident bytes of process `root` and all its descendants, now (0 if it is gone)."""
    return tree_memory(root)[0]


def tree_memory(root: int) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in bytes of process `root` and all its descendants, now."""
    procs = _processes()
    total = proportional = 0
    for pid in _tree(root, procs):
        total += procs[pid][1]
        proportional += pss_of(pid)
    return total, proportional


def descendants(root: int) -> list[int]:
    """The pids of the processes below process `root`, now."""
    return [pid for pid in _tree(root, _processes()) if pid != root]


def _processes() -> dict[int, tuple[int, int]]:
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _stat(entry)
            if found is not None:
                procs[int(entry)] = found
    return procs


def _tree(root: int, procs: dict[int, tuple[int, int]]) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            out.append(pid)
            todo.extend(p for p, (parent, _) in procs.items() if parent == pid)
    return out


def pss_of(pid: int) -> int:
    """Proportional set size of a running process, in bytes (0 if it is gone): its private
    pages plus each shared page divided by the number of processes mapping it."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def peak_rss_of(pid: int) -> int:
    """Peak resident memory (VmHWM) of a running process, in bytes; 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0
