"""Run one measurement in a fresh (spawned) process and report its peak resident memory."""

from __future__ import annotations

import multiprocessing
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any


def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, float, int]:
    start = time.perf_counter()
    result = fn(*args)
    elapsed = time.perf_counter() - start
    return result, elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def isolated(fn: Callable[..., Any], *args: Any) -> tuple[Any, float, int]:
    """``fn(*args)`` in a new interpreter: (result, wall seconds, peak RSS in bytes).

    A fresh process keeps one measurement's memory and caches out of the next one's.
    """
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(_call, fn, args).result()


def peak_rss_of(pid: int) -> int:
    """Peak resident memory (VmHWM) of a running process, in bytes; 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0
