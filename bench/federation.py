"""Harvest, search and audit measurements against real servers on loopback."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx

CATALOGUE_ORIGIN = "catalogue.bench.example/biobank-catalogue"

# A fixed mix of searches a researcher would run (query parameters of /v1/search).
QUERIES: list[dict[str, Any]] = [
    {},
    {"sample_type": "Plasma"},
    {"country": "DE"},
    {"icd10": "C50"},
    {"icd10": "C00-C97"},
    {"icd10": "IX"},
    {"sex": "female", "age_min": 40, "age_max": 60},
    {"sample_type": "TissueFreshFrozen", "storage_temperature": "LN"},
    {"duo": "DUO:0000042"},
    {"dataset_type": "Genomic", "country": "IT"},
    {"orpha": "ORPHA:586"},
    {"sample_type": "Serum", "period_from": 2010, "period_to": 2015},
    {"country": ["DK", "IE"], "sex": "male", "icd10": "E11"},
    {"page": 2, "page_size": 20},
]


def catalogue_settings(database_url: str, home: str) -> dict[str, Any]:
    """Settings for a benchmark catalogue: generous limits so no step is cut short."""
    return {
        "database_url": database_url,
        "home": home,
        "origin": CATALOGUE_ORIGIN,
        "request_timeout": 300.0,
        "node_deadline": 86400.0,
        "max_step": 10**9,
    }


def harvest(
    settings: dict[str, Any], nodes: list[tuple[str, str]], one_shot: bool = False
) -> dict[str, Any]:
    """Enrol ``nodes`` ((url, verifier key)) in a fresh catalogue and harvest them all.

    Runs in its own process; times the harvest alone (not enrolment). By default the harvest
    the catalogue server makes after its first one: its kept workers are up and warm
    (`KeptWorkers`: imports and schemas loaded, as the floor's are before its clock starts)
    and this process only leads the lanes. ``one_shot``: `biobank-catalogue harvest`'s,
    where this process is one lane and the other lane's worker is spawned within the time.
    Its ``timeline`` says where the time went (`bench.timeline`)."""
    import os
    import resource

    from bench.isolate import descendants
    from bench.timeline import (
        MachineIdle,
        cpu_seconds,
        database_server,
        summarise,
        tree_cpu_seconds,
    )
    from catalogue.context import build_context
    from catalogue.enrol import enrol, fetch_descriptor
    from catalogue.harvest import Harvester, KeptWorkers, LaneEvent
    from catalogue.settings import Settings

    def workers_cpu() -> dict[int, float]:
        return {p: c for p in descendants(os.getpid()) if (c := cpu_seconds(p)) is not None}

    cfg = Settings(**settings)
    ctx = build_context(cfg)
    for url, key in nodes:
        enrol(ctx.engine, ctx.key, url, key, asyncio.run(fetch_descriptor(url)))
    kept = None if one_shot else KeptWorkers(cfg.harvest_workers, cfg.log_format).start()
    try:
        if kept is not None:
            kept.ready()
        events: list[LaneEvent] = []
        harvester = Harvester(
            engine=ctx.engine,
            settings=cfg,
            key=ctx.key,
            inline=one_shot,
            kept=kept,
            timeline=events,
        )
        database = database_server(ctx.engine)
        database_before = None if database is None else tree_cpu_seconds(database)
        idle = MachineIdle()
        idle.start()
        workers_before = workers_cpu()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        leader = resource.getrusage(resource.RUSAGE_SELF)
        began = time.monotonic()
        start = time.perf_counter()
        outcomes = harvester.run()
        elapsed = time.perf_counter() - start
        ended = time.monotonic()
        leader_after = resource.getrusage(resource.RUSAGE_SELF)
        idle.stop()
        workers_after = workers_cpu()
        # workers ended within the harvest (a lane's fresh worker replaced one) are reaped
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
        database_after = None if database is None else tree_cpu_seconds(database)
    finally:
        if kept is not None:
            kept.close()
        ctx.engine.dispose()
    errors = [f"{o.origin}: {o.error}" for o in outcomes if not o.ok]
    if errors:
        raise RuntimeError("harvest failed: " + "; ".join(errors))
    timeline = summarise(events, began, ended, idle)
    timeline["leader_cpu_s"] = round(
        leader_after.ru_utime + leader_after.ru_stime - leader.ru_utime - leader.ru_stime, 2
    )
    timeline["workers_cpu_s"] = round(
        sum(workers_after.values())
        - sum(workers_before.values())
        + reaped.ru_utime
        + reaped.ru_stime
        - children.ru_utime
        - children.ru_stime,
        2,
    )
    # a PostgreSQL server on this machine: its backends' (and helpers') CPU, on the same cores
    timeline["database_cpu_s"] = (
        round(database_after - database_before, 2)
        if database_after is not None and database_before is not None
        else None
    )
    return {"seconds": elapsed, "added": sum(o.added for o in outcomes), "timeline": timeline}


def search_latencies(url: str, rounds: int) -> dict[str, Any]:
    """Run every query of :data:`QUERIES` ``rounds`` times (after one warm-up each)."""
    per_query: list[dict[str, Any]] = []
    all_ms: list[float] = []
    with httpx.Client(base_url=url, timeout=300) as client:
        for params in QUERIES:
            client.get("/v1/search", params=params).raise_for_status()
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                resp = client.get("/v1/search", params=params)
                times.append((time.perf_counter() - start) * 1000)
                resp.raise_for_status()
            all_ms += times
            per_query.append(
                {
                    "query": params,
                    "p50_ms": _pct(times, 50),
                    "p95_ms": _pct(times, 95),
                    "total": resp.json().get("total"),
                }
            )
    return {
        "p50_ms": _pct(all_ms, 50),
        "p95_ms": _pct(all_ms, 95),
        "requests": len(all_ms),
        "queries": per_query,
    }


def _pct(values: list[float], pct: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def fetch_bundle(url: str, path: str) -> dict[str, Any]:
    """Save the catalogue at ``url`` as an audit bundle (`biobank-audit fetch`), untimed use."""
    from pathlib import Path

    from audit.checks import AuditOptions, run_audit
    from audit.fetcher import HttpSource, RecordingSource

    source = RecordingSource(HttpSource(catalogue=url), Path(path))
    try:
        report, _state = run_audit(source, state=None, options=AuditOptions())
    finally:
        source.close()
    return {"ok": report.ok}


def audit_bundle(path: str, entries: int) -> dict[str, Any]:
    """A full audit from a saved bundle, as `biobank-audit verify --bundle` runs it (worker
    processes check the mirror lines); runs in its own process. ``entries``: the bundle's
    entry count, taken from the HTTP audit of the same catalogue."""
    from pathlib import Path

    from audit.checks import AuditOptions, run_audit
    from audit.fetcher import BundleSource
    from audit.parallel import auto_workers

    start = time.perf_counter()
    report, _state = run_audit(
        BundleSource(Path(path)), state=None, options=AuditOptions(workers=auto_workers())
    )
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "entries": entries, "ok": report.ok, "failed": failed(report)}


def audit(url: str) -> dict[str, Any]:
    """A full audit of the catalogue at ``url``, as `biobank-audit verify` runs it (worker
    processes fetch and check the mirror pages); runs in its own process."""
    from audit.checks import AuditOptions, run_audit
    from audit.fetcher import HttpSource
    from audit.parallel import auto_workers

    with httpx.Client(base_url=url, timeout=60) as client:
        nodes = client.get("/v1/nodes").json()
    items = nodes["nodes"] if isinstance(nodes, dict) else nodes
    start = time.perf_counter()
    report, _state = run_audit(
        HttpSource(catalogue=url), state=None, options=AuditOptions(workers=auto_workers())
    )
    elapsed = time.perf_counter() - start
    facts = report.facts
    entries = int(facts.get("catalogue log size", 0))
    entries += sum(int(n.get("tree_size") or n.get("size") or 0) for n in items)
    return {"seconds": elapsed, "entries": entries, "ok": report.ok, "failed": failed(report)}


def failed(report: Any) -> list[str]:
    """Each check that did not hold (or did not run), with its first findings: what a
    failed benchmark audit prints."""
    out = []
    for c in report.to_json()["checks"]:
        core = c["name"] in ("catalogue-checkpoint", "catalogue-log", "node-tree")
        if not c["ok"] or (core and c["status"] == "skipped"):
            first = "; ".join(f"{f['location']}: {f['reason']}" for f in c["findings"][:3])
            out.append(
                f"{c['name']} ({c['status']}, {c['failures']} failures): {first or c['note']}"
            )
    return out


def mirrors(url: str) -> list[tuple[str, int]]:
    """(origin, mirrored size) of every node mirror with at least one leaf."""
    out = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for node in client.get("/v1/nodes").json()["nodes"]:
            note = client.get(f"/v1/nodes/{node['origin']}/log/checkpoint")
            if note.status_code == 200:
                size = int(note.text.splitlines()[1])
                if size > 0:
                    out.append((str(node["origin"]), size))
    return out


def load_cli(
    prog: str,
    doc: str | None,
    measure: Callable[[str, int, int], dict[str, Any]],
    what: str,
    argv: list[str] | None,
) -> None:
    """``python -m PROG URL [--clients 20] [--rounds 20]``: search latency idle and under
    the load `measure` puts on the catalogue at URL, printed."""
    p = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc)
    p.add_argument("url")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args(argv)
    out = measure(args.url, args.rounds, args.clients)
    for key in ("idle", "loaded"):
        s = out.get(key)
        if s:
            print(f"search {key}: p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms")
    print(f"{what}: {out.get(what)}")


def figures(result: dict[str, Any]) -> dict[str, Any]:
    """The p50, p95 and request count of a `search_latencies` result."""
    return {k: result[k] for k in ("p50_ms", "p95_ms", "requests")}


def search_under_load(
    url: str, rounds: int, clients: Callable[..., None], args: tuple[Any, ...]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, int], float]:
    """The search mix idle, then while ``clients(*args, stop, results)`` runs in a spawned
    process (its own GIL) until told to stop and puts its counts on ``results``: (idle
    figures, loaded figures, the counts, the seconds the clients ran)."""
    idle = search_latencies(url, rounds)
    ctx = multiprocessing.get_context("spawn")
    stop, results = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=clients, args=(*args, stop, results), daemon=True)
    proc.start()
    time.sleep(2.0)  # the clients connect and start
    start = time.perf_counter()
    loaded = search_latencies(url, rounds)
    seconds = time.perf_counter() - start + 2.0
    stop.set()
    counts: dict[str, int] = results.get(timeout=300)
    proc.join(timeout=60)
    return figures(idle), figures(loaded), counts, seconds
