"""Search latency under load (issue 19 item 5): while 20 clients fetch log pages, and while a
harvest runs.

``log_page_load(url, rounds)`` measures the ``/v1/search`` mix of ``bench.federation`` on a
served catalogue while ``clients`` threads in ANOTHER process (their GIL is not the
measuring one's) fetch entries pages of its node mirrors (``/v1/nodes/{origin}/log/entries``,
1,000 entries from a random start) nonstop, as auditors and mirrors do.

``harvest_load(url, rounds, settings, nodes)`` measures the same mix while a harvest of all
``nodes`` into a fresh catalogue database (``settings``) runs in another process on the same
machine, with its worker processes: the search competes for the cores, the disk and the
page cache as it does when the server's own scheduled harvest runs (the served catalogue
is already full, so its answers stay the same during the measurement). The harvest starts
first; the figure says whether it was still running when the last search was answered.

``python -m bench.searchload URL [--clients 20] [--rounds 20]`` runs the log-page load
against any catalogue.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from typing import Any

import httpx

from bench.federation import figures, load_cli, mirrors, search_latencies, search_under_load

__all__ = ["harvest_load", "log_page_load"]

PAGE = 1000  # entries per page, the API's largest


def _fetch_pages(
    url: str, targets: list[tuple[str, int]], clients: int, stop: Any, results: Any
) -> None:
    """``clients`` threads fetching entries pages until ``stop`` is set; puts their counts."""
    counts = {"ok": 0, "busy": 0, "other": 0, "entries": 0}
    lock = threading.Lock()

    def one(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=120) as client:
            while not stop.is_set():
                origin, size = rng.choice(targets)
                start = rng.randrange(max(size - PAGE, 0) + 1)
                resp = client.get(
                    f"/v1/nodes/{origin}/log/entries", params={"start": start, "limit": PAGE}
                )
                key = {200: "ok", 503: "busy", 429: "busy"}.get(resp.status_code, "other")
                got = len(resp.json().get("entries", [])) if key == "ok" else 0
                with lock:
                    counts[key] += 1
                    counts["entries"] += got

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(counts)


def log_page_load(url: str, rounds: int, clients: int = 20) -> dict[str, Any]:
    """Search p50/p95 idle and while ``clients`` concurrent clients fetch log pages."""
    targets = mirrors(url)
    if not targets:
        return {"skipped": "no mirrored log to fetch pages of"}
    idle, loaded, counts, seconds = search_under_load(
        url, rounds, _fetch_pages, (url, targets, clients)
    )
    return {
        "clients": clients,
        "idle": idle,
        "loaded": loaded,
        "pages": {**counts, "per_s": counts["ok"] / seconds},
    }


def _harvest(settings: dict[str, Any], nodes: list[tuple[str, str]], results: Any) -> None:
    from bench.federation import harvest

    try:
        results.put(harvest(settings, nodes))
    except Exception as e:  # the measuring side reports it rather than waiting forever
        results.put({"error": f"{type(e).__name__}: {e}"})


def harvest_load(
    url: str, rounds: int, settings: dict[str, Any], nodes: list[tuple[str, str]]
) -> dict[str, Any]:
    """Search p50/p95 while a harvest of ``nodes`` into ``settings``' fresh database runs."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    # not a daemon: the harvest starts worker processes of its own
    proc = ctx.Process(target=_harvest, args=(settings, nodes, results))
    began = time.perf_counter()
    proc.start()
    time.sleep(2.0)  # the process starts, enrols and begins fetching
    loaded = search_latencies(url, rounds)
    running = proc.is_alive()
    searched = time.perf_counter() - began
    harvested: dict[str, Any] = results.get(timeout=86400)
    proc.join(timeout=60)
    if "error" in harvested:
        raise RuntimeError(f"the harvest during the search failed: {harvested['error']}")
    return {
        "loaded": figures(loaded),
        "harvest_running_throughout": running,
        "search_seconds": searched,
        "harvest": harvested,
    }


def main(argv: list[str] | None = None) -> None:
    load_cli("bench.searchload", __doc__, log_page_load, "pages", argv)


if __name__ == "__main__":
    main()
