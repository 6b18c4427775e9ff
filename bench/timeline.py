"""Where a harvest's time goes: each lane's jobs and the machine's idle cores, per harvest.

Every harvest the benchmark times records this (`federation.harvest`: the ``timeline`` of each
harvest run in the JSON); ``python -m bench.timeline NODES_DIR`` harvests saved node homes
(the benchmark's ``WORKDIR/nodes``, or any directory of node homes) into a fresh catalogue
and prints it, so that a change to the harvest can be judged by where the time went, not by
its wall clock alone (this guest's speed moves by a third between hours):

- each lane's jobs (`catalogue.harvest.LaneEvent`): a node's step (fetch, verify, stage), its
  final commit (index and accept), the upper part of another lane's step;
- each lane's idle time, and the tail: the time after the last page was verified, when only
  final commits ran;
- the machine's idle core-seconds over the harvest, from ``/proc/stat`` (sampled every
  0.1 s), and the CPU seconds of this process, of the harvest's worker processes and of the
  node server (``/proc/PID/stat``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

SAMPLE_SECONDS = 0.1
KINDS = ("step", "upper", "final")


def _proc_stat() -> tuple[int, int] | None:
    """(idle, total) jiffies of the whole machine; None where /proc/stat is not there."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields)  # idle + iowait


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` so far (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of process `pid` and every process below it: the running ones', and the
    ended ones' that it has reaped (None if `pid` is gone). The difference of two readings
    is the tree's CPU between them, a child that ended in between included."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    from bench.isolate import descendants

    ticks = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    running = [cpu_seconds(child) for child in descendants(pid)]
    return ticks / os.sysconf("SC_CLK_TCK") + sum(c for c in running if c is not None)


LOOPBACK = ("", "localhost", "127.0.0.1", "::1")


def database_server(engine: Any) -> int | None:
    """The pid of the PostgreSQL server behind `engine` when it runs on this machine (the
    parent of the connection's backend), else None (SQLite: its work is the harvesting
    processes' own)."""
    if engine.dialect.name != "postgresql" or (engine.url.host or "") not in LOOPBACK:
        return None
    with engine.connect() as conn:
        backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    try:
        with open(f"/proc/{backend}/stat", encoding="ascii") as fh:
            parent = int(fh.read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{parent}/comm", encoding="ascii") as fh:
            name = fh.read().strip()
    except (OSError, IndexError, ValueError):
        return None
    return parent if name.startswith("postgres") else None


class MachineIdle(threading.Thread):
    """Samples the machine's idle and total jiffies until `stop`."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="machine-idle")
        self.samples: list[tuple[float, int, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while True:
            found = _proc_stat()
            if found is not None:
                self.samples.append((time.monotonic(), *found))
            if self._halt.wait(SAMPLE_SECONDS):
                return

    def stop(self) -> None:
        self._halt.set()
        self.join()
        found = _proc_stat()
        if found is not None:
            self.samples.append((time.monotonic(), *found))


def summarise(
    events: Iterable[Any], start: float, end: float, idle: MachineIdle | None = None
) -> dict[str, Any]:
    """The timeline of one harvest from its lanes' `LaneEvent`s (monotonic times), from
    `start` to `end`, with the machine's idle core-seconds if sampled."""
    jobs = sorted(events, key=lambda e: (e.start, e.lane))
    wall = end - start
    lanes = sorted({e.lane for e in jobs})
    busy = {lane: sum(e.end - e.start for e in jobs if e.lane == lane) for lane in lanes}
    verified = max((e.end for e in jobs if e.kind != "final"), default=start)
    out: dict[str, Any] = {
        "wall_s": round(wall, 3),
        "lanes": len(lanes),
        "jobs": [
            {
                "lane": e.lane,
                "kind": e.kind,
                "origin": e.origin,
                "start_s": round(e.start - start, 3),
                "end_s": round(e.end - start, 3),
                "error": e.error,
            }
            for e in jobs
        ],
        "by_kind": {
            kind: {
                "count": sum(1 for e in jobs if e.kind == kind),
                "seconds": round(sum(e.end - e.start for e in jobs if e.kind == kind), 3),
            }
            for kind in KINDS
        },
        "lane_idle_s": [round(wall - busy[lane], 3) for lane in lanes],
        # after the last page was verified only final commits run (on SQLite one at a time)
        "tail_s": round(end - verified, 3),
        "machine_cores": os.cpu_count(),
        "machine_idle_core_s": None,
        "machine_busy_core_s": None,
    }
    samples = [s for s in (idle.samples if idle else []) if start <= s[0] <= end + SAMPLE_SECONDS]
    if len(samples) >= 2:
        ticks = os.sysconf("SC_CLK_TCK")
        idle_j, total_j = samples[-1][1] - samples[0][1], samples[-1][2] - samples[0][2]
        out["machine_idle_core_s"] = round(idle_j / ticks, 2)
        out["machine_busy_core_s"] = round((total_j - idle_j) / ticks, 2)
        # the idle cores in the tail (when only final commits ran)
        tail = [s for s in samples if s[0] >= verified]
        if len(tail) >= 2:
            out["tail_idle_core_s"] = round((tail[-1][1] - tail[0][1]) / ticks, 2)
    return out


def _table(timeline: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    for col in ("lane", "job", "node", "start s", "end s", "seconds"):
        table.add_column(col, justify="right" if col.endswith("s") or col == "lane" else "left")
    for job in timeline["jobs"]:
        table.add_row(
            str(job["lane"]),
            job["kind"] + (" (failed)" if job["error"] else ""),
            job["origin"].split("/")[0],
            f"{job['start_s']:.2f}",
            f"{job['end_s']:.2f}",
            f"{job['end_s'] - job['start_s']:.2f}",
        )
    return table


def describe(timeline: dict[str, Any]) -> str:
    """One line: the wall time and where it went."""
    kinds = timeline["by_kind"]
    parts = [
        f"{timeline['wall_s']:.2f} s on {timeline['lanes']} lanes",
        "steps {:.2f} s, upper parts {:.2f} s, final commits {:.2f} s".format(
            kinds["step"]["seconds"], kinds["upper"]["seconds"], kinds["final"]["seconds"]
        ),
        "lanes idle " + ", ".join(f"{s:.2f}" for s in timeline["lane_idle_s"]) + " s",
        f"tail {timeline['tail_s']:.2f} s",
    ]
    if timeline["machine_idle_core_s"] is not None:
        parts.append(
            f"machine idle {timeline['machine_idle_core_s']:.2f} of "
            f"{timeline['machine_idle_core_s'] + timeline['machine_busy_core_s']:.2f} "
            f"core-s ({timeline.get('tail_idle_core_s', 0.0):.2f} in the tail)"
        )
    return "; ".join(parts)


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.timeline",
        description="Harvest saved node homes into a fresh catalogue and show where the time "
        "went: each lane's jobs, idle lanes and idle cores.",
    )
    parser.add_argument("nodes", type=Path, help="a directory of node homes (each with node.db)")
    parser.add_argument(
        "--workdir", type=Path, default=Path("timeline-work"), help="catalogue homes go here"
    )
    parser.add_argument("--reps", type=int, default=1, help="harvests, each into a fresh catalogue")
    parser.add_argument(
        "--pg-url",
        default=None,
        help="harvest into a fresh database on this PostgreSQL server instead of SQLite",
    )
    parser.add_argument(
        "--one-shot",
        action="store_true",
        help="time `biobank-catalogue harvest` (this process one lane) instead of the "
        "server's kept workers",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the timelines here")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> list[dict[str, Any]]:
    from bench import federation, pg
    from bench.isolate import isolated
    from federation.servers import ServerProcess
    from node.home import Home

    args = _args(argv)
    console = Console()
    homes = sorted(p for p in args.nodes.iterdir() if (p / "node.db").is_file())
    if not homes:
        raise SystemExit(f"{args.nodes}: no node homes (directories with node.db) here")
    out = []
    with ServerProcess.nodes(homes) as server:
        urls = server.urls()
        keys = [(url, Home.open(h).verifier_key) for url, h in zip(urls, homes, strict=True)]
        for rep in range(args.reps):
            home = args.workdir / f"catalogue-{rep}"
            shutil.rmtree(home, ignore_errors=True)
            home.mkdir(parents=True)
            served_before = cpu_seconds(server.process.pid or 0)
            if args.pg_url:
                with pg.fresh_database(args.pg_url, f"biobank_timeline_{int(time.time())}") as url:
                    settings = federation.catalogue_settings(url, str(home))
                    result = isolated(federation.harvest, settings, keys, args.one_shot).result
            else:
                settings = federation.catalogue_settings(
                    f"sqlite:///{home / 'catalogue.db'}", str(home)
                )
                result = isolated(federation.harvest, settings, keys, args.one_shot).result
            served = cpu_seconds(server.process.pid or 0)
            timeline = result["timeline"]
            timeline["entries"] = result["added"]
            timeline["node_server_cpu_s"] = (
                round(served - served_before, 2)
                if served is not None and served_before is not None
                else None
            )
            out.append(timeline)
            rate = result["added"] / result["seconds"] if result["seconds"] else 0
            console.print(
                _table(timeline, f"harvest {rep + 1}: {result['added']:,} entries, {rate:,.0f}/s")
            )
            console.print(describe(timeline))
            console.print(
                f"CPU s: leading process {timeline['leader_cpu_s']}, worker processes "
                f"{timeline['workers_cpu_s']}, node server {timeline['node_server_cpu_s']}"
                + (
                    f", PostgreSQL server {timeline['database_cpu_s']}"
                    if timeline.get("database_cpu_s") is not None
                    else ""
                )
            )
    if args.json:
        args.json.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    return out


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
