"""``python -m bench [--size 1M|10M] [--reps N] [--json PATH]``: run every benchmark.

Generates five countries' synthetic exports (``federation.generate``), then measures node import,
harvest of all five nodes over loopback HTTP, the harvest floor, search latency on SQLite
and PostgreSQL, and a full audit. Each measurement runs in a fresh process (peak RSS is
that process's); rates are medians over ``--reps``.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import federation, freshness, pg, report, searchload
from bench.floor import floor, save_pages
from bench.isolate import isolated, peak_rss_of
from bench.page import measure_page
from bench.proofload import proof_load
from bench.workload import generate_all, import_node
from federation.servers import ServerProcess

RESULTS = Path(__file__).resolve().parent / "results"


def parse_size(text: str) -> int:
    """'1M' -> 1_000_000, '10M', '2k', '2500' -> 2500."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"size {text!r}: use a number with optional k or M")
    factor = {"": 1, "k": 1_000, "m": 1_000_000}[m.group(2).lower()]
    value = int(float(m.group(1)) * factor)
    if value < 5:
        raise argparse.ArgumentTypeError("size must be at least 5 samples (one per node)")
    return value


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument(
        "--size",
        type=parse_size,
        default=parse_size("1M"),
        help="total samples over the five nodes: 1M, 10M, 20k ... (default 1M)",
    )
    p.add_argument("--reps", type=int, default=3, help="repetitions per measurement (median)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where exports and databases go (default: a temporary directory; "
        "exports are reused when the folder is kept)",
    )
    p.add_argument("--search-rounds", type=int, default=20, help="timed requests per query")
    p.add_argument(
        "--page-rounds",
        type=int,
        default=3,
        help="first-page renders of each landing URL in Chromium (0: skip)",
    )
    p.add_argument(
        "--fresh-trials",
        type=int,
        default=20,
        help="freshness trials per change set (bench/freshness.py; 0: skip)",
    )
    p.add_argument(
        "--reuse-nodes",
        action="store_true",
        help="skip the node import when the workdir holds every node's home from an earlier "
        "run (a 10M import takes most of an hour; its figures are that run's)",
    )
    p.add_argument("--pg-url", default=pg.server_url(), help="PostgreSQL server for search")
    p.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL measurements")
    p.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the two floors (and saving every page to disk for them)",
    )
    return p.parse_args(argv)


def _imports(
    exports: list[tuple[str, Path]], work: Path, reps: int, say: Any
) -> tuple[list[dict[str, Any]], list[Path]]:
    runs = []
    homes: list[Path] = []
    for rep in range(reps):
        say(f"node import, rep {rep + 1}/{reps}")
        homes = [work / "nodes" / f"{country}-{rep}" for country, _ in exports]
        seconds = cpu = peak = tree_peak = rows = 0
        for (country, folder), home in zip(exports, homes, strict=True):
            result, _, rss, tree, _ = isolated(import_node, str(folder), country, str(home))
            seconds += result["seconds"]
            cpu += result["cpu_seconds"]
            rows += result["rows"]
            peak, tree_peak = max(peak, rss), max(tree_peak, tree)
        runs.append(
            {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "records": rows,
                "peak_rss": peak,
                "tree_peak_rss": tree_peak,
            }
        )
        for old in (work / "nodes").glob(f"*-{rep - 1}"):
            shutil.rmtree(old)
    return runs, homes


def _earlier_homes(exports: list[tuple[str, Path]], work: Path) -> list[Path]:
    """Every node's home of the newest earlier import in `work` (empty if one is missing)."""
    homes = []
    for country, _ in exports:
        found = sorted(
            (work / "nodes").glob(f"{country}-*"), key=lambda h: int(h.name.rsplit("-", 1)[1])
        )
        if not found or not (found[-1] / "node.db").exists():
            return []
        homes.append(found[-1])
    return homes


def _represented(homes: list[Path]) -> int:
    """The samples the nodes' published sample groups stand for (from each holding)."""
    import sqlite3

    total = 0
    for home in homes:
        with contextlib.closing(sqlite3.connect(f"file:{home / 'node.db'}?mode=ro", uri=True)) as c:
            total += c.execute(
                "SELECT count(*) FROM holding WHERE published_group IS NOT NULL"
            ).fetchone()[0]
    return total


def _harvests(
    settings_for: Any,
    keys: list[tuple[str, str]],
    reps: int,
    say: Any,
    label: str,
    one_shot: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    runs = []
    settings: dict[str, Any] = {}
    for rep in range(reps):
        say(f"harvest ({label}), rep {rep + 1}/{reps}")
        settings = settings_for(rep)
        probe = report.cpu_probe()
        result, _, rss, tree, pss = isolated(federation.harvest, settings, keys, one_shot)
        runs.append(
            {
                "seconds": result["seconds"],
                "records": result["added"],
                "peak_rss": rss,
                "tree_peak_rss": tree,
                "tree_peak_pss": pss,
                "probe": probe,
                "timeline": result["timeline"],  # where its time went (`bench.timeline`)
            }
        )
    return runs, settings


def _search(settings: dict[str, Any], rounds: int, page_rounds: int = 0) -> dict[str, Any]:
    with ServerProcess.catalogue(settings) as server:
        result = federation.search_latencies(server.urls()[0], rounds)
        if page_rounds:
            # the researcher page's first result page in headless Chromium (no cache)
            result["page"] = measure_page(server.urls()[0], page_rounds)
        result["server_peak_rss_mb"] = peak_rss_of(server.process.pid or 0) / 2**20
    return result


def run(argv: list[str] | None = None) -> dict[str, Any]:
    args = _args(argv)
    console = Console(stderr=True)

    def say(msg: str) -> None:
        console.log(msg)

    results: dict[str, Any] = {
        "size": args.size,
        "reps": args.reps,
        "seed": args.seed,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": report.machine(),
    }
    results["machine"]["cpu_probe_start"] = report.cpu_probe()
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="biobank-bench-")
    work = args.workdir or Path(tmp.name)  # type: ignore[union-attr]
    try:
        say(f"generating {args.size:,} samples in {work}")
        start = time.perf_counter()
        exports = generate_all(args.size, args.seed, work / "exports")
        results["generate_seconds"] = time.perf_counter() - start
        homes = _earlier_homes(exports, work) if args.reuse_nodes else []
        if homes:
            say(f"reusing the node homes {', '.join(h.name for h in homes)}")
            results["import_skipped"] = "--reuse-nodes"
        else:
            runs, homes = _imports(exports, work, args.reps, say)
            results["import"] = report.summarise(runs, "records")
        represented = results["samples_represented"] = _represented(homes)
        from node.home import Home

        with ServerProcess.nodes(homes) as nodes_server:
            urls = nodes_server.urls()
            keys = [(u, Home.open(h).verifier_key) for u, h in zip(urls, homes, strict=True)]

            def sqlite_settings(rep: int) -> dict[str, Any]:
                home = work / "catalogue" / f"sqlite-{rep}"
                shutil.rmtree(home, ignore_errors=True)
                home.mkdir(parents=True)
                return federation.catalogue_settings(
                    f"sqlite:///{home / 'catalogue.db'}", str(home)
                )

            if args.no_floor:
                runs, settings = _harvests(sqlite_settings, keys, args.reps, say, "SQLite")
                results["harvest"] = report.summarise(runs, "records", represented)
                results["floor_skipped"] = "--no-floor"
            else:
                # harvest and floor alternate, so a drift of the machine's speed during
                # the run (a third between hours here) moves both sides of each ratio
                say("floor: saving the entries pages")
                pages = work / "pages.jsonl"
                save_pages(urls, pages)
                runs = []
                floors: dict[str, list[dict[str, Any]]] = {"floor": [], "floor_indexed": []}
                ratios: dict[str, list[float]] = {"floor": [], "floor_indexed": []}
                for rep in range(args.reps):
                    harvested, settings = _harvests(
                        lambda _, r=rep: sqlite_settings(r), keys, 1, say, f"SQLite, rep {rep + 1}"
                    )
                    runs += harvested
                    # the floor as issue 19 defines it (verify and store), then the floor
                    # doing the same work as the harvest (verify, store and index)
                    for name, index in (("floor", False), ("floor_indexed", True)):
                        say(f"{name.replace('_', ' ')}, rep {rep + 1}/{args.reps}")
                        floors[name].append(_floor_once(pages, work, index=index))
                        ratios[name].append(
                            (harvested[0]["records"] / harvested[0]["seconds"])
                            / (floors[name][-1]["records"] / floors[name][-1]["seconds"])
                        )
                results["harvest"] = report.summarise(runs, "records", represented)
                for name in floors:
                    results[name] = report.summarise(floors[name], "records", represented)
                    results[f"harvest_vs_{name}"] = {
                        "median": statistics.median(ratios[name]),
                        "runs": ratios[name],
                    }
            # `biobank-catalogue harvest`: its second lane's worker starts within the time
            one_shot, _ = _harvests(
                lambda _: sqlite_settings(args.reps), keys, 1, say, "SQLite, one-shot", True
            )
            results["harvest_one_shot"] = report.summarise(one_shot, "records", represented)
            say("search latency (SQLite)")
            results["search_sqlite"] = _search(settings, args.search_rounds, args.page_rounds)
            say("search latency under 20 proof clients (SQLite)")
            with ServerProcess.catalogue(settings) as server:
                results["proof_load"] = proof_load(server.urls()[0], args.search_rounds)
                results["proof_load"]["server_peak_rss_mb"] = (
                    peak_rss_of(server.process.pid or 0) / 2**20
                )
            with ServerProcess.catalogue(settings) as server:
                say("search latency under 20 log-page clients (SQLite)")
                results["page_load"] = searchload.log_page_load(
                    server.urls()[0], args.search_rounds
                )
                say("search latency during a harvest (SQLite)")
                during = work / "catalogue" / "sqlite-harvest-during-search"
                shutil.rmtree(during, ignore_errors=True)
                during.mkdir(parents=True)
                results["harvest_load"] = searchload.harvest_load(
                    server.urls()[0],
                    args.search_rounds,
                    federation.catalogue_settings(
                        f"sqlite:///{during / 'catalogue.db'}", str(during)
                    ),
                    keys,
                )
                shutil.rmtree(during, ignore_errors=True)
            _pg(args, work, keys, results, say, represented)
            say("audit")
            with ServerProcess.catalogue(settings) as cat:
                audit_runs = []
                for _ in range(args.reps):
                    probe = report.cpu_probe()
                    out, _, rss, tree, _ = isolated(federation.audit, cat.urls()[0])
                    if not out["ok"]:
                        raise RuntimeError(
                            "the audit failed on the benchmark catalogue: "
                            + " | ".join(out["failed"])
                        )
                    audit_runs.append(
                        {
                            "seconds": out["seconds"],
                            "records": out["entries"],
                            "peak_rss": rss,
                            "tree_peak_rss": tree,
                            "probe": probe,
                        }
                    )
                say("audit: saving a bundle")
                bundle = work / "audit-bundle"
                shutil.rmtree(bundle, ignore_errors=True)
                federation.fetch_bundle(cat.urls()[0], str(bundle))
            results["audit"] = report.summarise(audit_runs, "records", represented)
            say("audit from the bundle")
            bundle_runs = []
            for _ in range(args.reps):
                probe = report.cpu_probe()
                out, _, rss, tree, _ = isolated(
                    federation.audit_bundle, str(bundle), audit_runs[0]["records"]
                )
                if not out["ok"]:
                    raise RuntimeError(
                        "the audit of the bundle failed: " + " | ".join(out["failed"])
                    )
                bundle_runs.append(
                    {
                        "seconds": out["seconds"],
                        "records": out["entries"],
                        "peak_rss": rss,
                        "tree_peak_rss": tree,
                        "probe": probe,
                    }
                )
            results["audit_bundle"] = report.summarise(bundle_runs, "records", represented)
            shutil.rmtree(bundle, ignore_errors=True)
            if args.fresh_trials:  # last: its imports add to the nodes' logs
                say("freshness: import to searchable, pushed")
                with ServerProcess.catalogue(settings) as cat:
                    results["freshness"] = freshness.freshness(
                        cat.urls()[0],
                        [(h, folder, c) for h, (c, folder) in zip(homes, exports, strict=True)],
                        work / "freshness",
                        trials=args.fresh_trials,
                        say=say,
                    )
    finally:
        if tmp is not None:
            tmp.cleanup()
    results["machine"]["cpu_probe_end"] = report.cpu_probe()
    results["vs_floor"] = report.vs_floor(results)
    report.show(results, Console())
    freshness.show(results.get("freshness"), Console())
    path = report.write(results, args.json, RESULTS)
    say(f"results written to {path}")
    return results


def _floor_once(pages: Path, work: Path, *, index: bool = False) -> dict[str, Any]:
    """One floor run over the saved entries pages, in a process of its own (`index`: the
    floor that also builds the search index, `bench.floor.IndexedFloor`)."""
    db = work / "floor.db"
    db.unlink(missing_ok=True)
    probe = report.cpu_probe()
    out, _, rss, *_ = isolated(partial(floor, index=index), str(pages), str(db))
    db.unlink(missing_ok=True)
    return {**out, "peak_rss": rss, "probe": probe}


def _pg(
    args: argparse.Namespace,
    work: Path,
    keys: list[tuple[str, str]],
    results: dict[str, Any],
    say: Any,
    represented: int,
) -> None:
    if args.no_pg:
        results["search_pg_skipped"] = results["harvest_pg_skipped"] = "--no-pg"
        return
    if not pg.reachable(args.pg_url):
        say(f"PostgreSQL not reachable at {args.pg_url}: skipping the PostgreSQL measurements")
        results["search_pg_skipped"] = results["harvest_pg_skipped"] = "PostgreSQL unreachable"
        return
    with pg.fresh_database(args.pg_url, f"biobank_bench_{int(time.time())}") as url:
        home = work / "catalogue" / "pg"
        home.mkdir(parents=True, exist_ok=True)
        settings = federation.catalogue_settings(url, str(home))
        say("harvest (PostgreSQL), 1 rep")
        probe = report.cpu_probe()
        result, _, rss, tree, pss = isolated(federation.harvest, settings, keys)
        results["harvest_pg"] = report.summarise(
            [
                {
                    "seconds": result["seconds"],
                    "records": result["added"],
                    "peak_rss": rss,
                    "tree_peak_rss": tree,
                    "tree_peak_pss": pss,
                    "probe": probe,
                    "timeline": result["timeline"],
                }
            ],
            "records",
            represented,
        )
        say("search latency (PostgreSQL)")
        results["search_pg"] = _search(settings, args.search_rounds)


def main(argv: list[str] | None = None) -> int:
    try:
        run(argv)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
