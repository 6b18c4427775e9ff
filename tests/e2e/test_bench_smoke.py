"""The benchmark runs end to end at a tiny size (no timing is asserted, only that it works)."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow


def test_bench_runs_at_a_tiny_size_and_writes_consistent_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    pg_url = os.environ.get("CATALOGUE_TEST_PG_URL")
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "--size",
        "2k",
        "--reps",
        "1",
        "--search-rounds",
        "2",
        "--page-rounds",
        "1",
        "--fresh-trials",  # one trial of each change set (tests/e2e/test_bench_freshness.py)
        "1",
        "--json",
        str(out),
        "--workdir",
        str(tmp_path / "work"),
    ]
    cmd += ["--pg-url", pg_url] if pg_url else ["--no-pg"]
    done = _ran(cmd, columns=120)
    assert "harvest / floor" in done.stdout
    results = json.loads(out.read_text())
    assert results["size"] == 2000
    assert results["import"]["records"] == 2000
    published = results["harvest"]["records"]
    assert 0 < published <= 2000 + 100, "samples plus biobank and collection records"
    assert results["floor"]["records"] == published, "the floor processes the same entries"
    for key in ("import", "harvest", "floor", "audit"):
        assert results[key]["records_per_s"] > 0
        assert results[key]["peak_rss_mb"] > 0
    # the harvest's memory with its worker processes is at least its own
    assert results["harvest"]["tree_peak_rss_mb"] >= results["harvest"]["peak_rss_mb"]
    # the server's path (kept workers, warm) and the one-shot command's, same entries
    assert results["harvest_one_shot"]["records"] == published
    assert results["harvest_one_shot"]["records_per_s"] > 0
    assert "one-shot" in done.stdout
    assert results["machine"]["commit"], "the measured commit is recorded"
    assert results["machine"]["cpu_probe_start"] > 0 and results["machine"]["cpu_probe_end"] > 0
    # one harvest / floor ratio per rep and floor (the issue's, and the one doing the same
    # work: it indexes too), each from a harvest and the floor run right after it
    assert results["floor_indexed"]["records"] == published
    assert "floor doing the same work" in done.stdout
    for name in ("floor", "floor_indexed"):
        (pair,) = results[f"harvest_vs_{name}"]["runs"]
        harvest, floor = results["harvest"]["runs"][0], results[name]["runs"][0]
        expected = (harvest["records"] / harvest["seconds"]) / (floor["records"] / floor["seconds"])
        assert pair == pytest.approx(expected) == results[f"harvest_vs_{name}"]["median"]
    same_work = [t for t in results["vs_floor"]["targets"] if "same work" in t["target"]]
    assert [t["figure"] for t in same_work] == ["harvest"] and same_work[0]["measured"] > 0
    assert len(results["search_sqlite"]["queries"]) >= 10
    assert results["search_sqlite"]["p95_ms"] >= results["search_sqlite"]["p50_ms"]
    assert results["audit"]["records"] > published
    load = results["proof_load"]  # search while 20 clients ask for proofs (issue 16 item 6)
    assert load["clients"] == 20 and load["proofs"]["ok"] > 0 and load["proofs"]["other"] == 0
    assert load["loaded"]["requests"] == results["search_sqlite"]["requests"]
    assert "proofs/s" in done.stdout  # the table row (its label may wrap)
    page = results["search_sqlite"]["page"]
    if "error" not in page:  # Chromium present: three landing URLs rendered once each
        assert page["n"] == 3 and 0 < page["p50_ms"] <= page["max_ms"]
    else:
        assert os.environ.get("CI") != "true", page["error"]
    fresh = results["freshness"]  # 400 samples a node: no exactly counted group to add to
    assert "exact counts" in fresh["skipped"] or fresh["small"]["n"] == 1 == fresh["10000"]["n"]
    if pg_url:
        assert results["search_pg"]["requests"] == results["search_sqlite"]["requests"]
        assert results["harvest_pg"]["records"] == published
        _check_timeline(results["harvest_pg"]["runs"][0]["timeline"], nodes=5, database=True)
    # where each timed harvest's time went: its lanes' jobs and the machine's idle cores
    for row in ("harvest", "harvest_one_shot"):
        _check_timeline(results[row]["runs"][0]["timeline"], nodes=5)
    _timeline_of_the_saved_homes(tmp_path, published)
    _rerun_reusing_the_node_homes(cmd, tmp_path, results)


def _ran(cmd: list[str], columns: int = 80) -> subprocess.CompletedProcess[str]:
    """`cmd` run to its end in the repository (a rich table `columns` wide); it succeeded."""
    env = {**os.environ, "COLUMNS": str(columns)}
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _check_timeline(timeline: dict[str, Any], nodes: int, database: bool = False) -> None:
    """One harvest's lane timeline (`bench.timeline`) is consistent with itself; a harvest
    into PostgreSQL (on this machine, as the tests' server is) counts its server's CPU."""
    jobs, wall = timeline["jobs"], timeline["wall_s"]
    steps = {j["origin"]: j for j in jobs if j["kind"] == "step"}
    finals = {j["origin"]: j for j in jobs if j["kind"] == "final"}
    assert len(steps) == len(finals) == nodes == sum(1 for j in jobs if j["kind"] == "step")
    assert all(finals[o]["start_s"] >= steps[o]["end_s"] for o in steps)  # accepted once staged
    assert all(0 <= j["start_s"] <= j["end_s"] <= wall + 0.01 and not j["error"] for j in jobs)
    lanes = sorted({j["lane"] for j in jobs})
    assert 1 <= timeline["lanes"] == len(lanes) == len(timeline["lane_idle_s"]) <= 2
    for lane, idle_s in zip(lanes, timeline["lane_idle_s"], strict=True):
        mine = [j for j in jobs if j["lane"] == lane]  # one job at a time
        assert all(a["end_s"] <= b["start_s"] + 0.001 for a, b in itertools.pairwise(mine))
        busy = sum(j["end_s"] - j["start_s"] for j in mine)
        assert idle_s == pytest.approx(wall - busy, abs=0.01)
    assert {k: v["count"] for k, v in timeline["by_kind"].items()} == {
        k: sum(1 for j in jobs if j["kind"] == k) for k in ("step", "upper", "final")
    }
    last_verified = max(j["end_s"] for j in jobs if j["kind"] != "final")
    assert timeline["tail_s"] == pytest.approx(wall - last_verified, abs=0.01)
    idle, busy = timeline["machine_idle_core_s"], timeline["machine_busy_core_s"]
    cores = timeline["machine_cores"]
    assert idle >= 0 and busy > 0 and idle + busy <= cores * (wall + 2 * 0.1) + 0.05
    assert timeline["leader_cpu_s"] >= 0 and timeline["workers_cpu_s"] >= 0
    assert timeline["leader_cpu_s"] + timeline["workers_cpu_s"] > 0
    if database:
        assert timeline["database_cpu_s"] > 0
    else:
        assert timeline["database_cpu_s"] is None


def _timeline_of_the_saved_homes(tmp_path: Path, published: int) -> None:
    """`python -m bench.timeline` harvests the benchmark's saved homes into a fresh catalogue
    and prints and writes where the time went."""
    out = tmp_path / "timeline.json"
    cmd = [sys.executable, "-m", "bench.timeline", str(tmp_path / "work" / "nodes")]
    cmd += ["--workdir", str(tmp_path / "timeline"), "--json", str(out)]
    done = _ran(cmd, columns=160)
    (timeline,) = json.loads(out.read_text())
    _check_timeline(timeline, nodes=5)
    assert timeline["entries"] >= published  # (the freshness trial added to the homes)
    assert timeline["node_server_cpu_s"] > 0
    assert "final commits" in done.stdout and "machine idle" in done.stdout
    assert done.stdout.count(" step ") == 5  # the table: one step row a node


def _rerun_reusing_the_node_homes(cmd: list[str], tmp_path: Path, first: dict[str, Any]) -> None:
    """--reuse-nodes (for a 10M run: its import takes most of an hour) skips the import and
    harvests the homes the first run left, its freshness trials included."""
    out = tmp_path / "again.json"
    again = [*cmd[: cmd.index("--json")], "--json", str(out), "--workdir", str(tmp_path / "work")]
    again += ["--reuse-nodes", "--no-pg", "--no-floor", "--page-rounds", "0", "--fresh-trials", "0"]
    done = _ran(again)
    assert "reusing the node homes" in done.stderr
    results = json.loads(out.read_text())
    assert "import" not in results and results["import_skipped"] == "--reuse-nodes"
    # the same homes: every entry the first run harvested, and those its trials added
    assert results["harvest"]["records"] >= first["harvest"]["records"]
    assert results["samples_represented"] >= first["samples_represented"]


def _hold_memory(megabytes: int, ready: Any, done: Any) -> None:
    block = bytearray(megabytes * 2**20)  # touched: resident
    for i in range(0, len(block), 4096):
        block[i] = 1
    ready.set()
    done.wait(60)


def _parent_of_a_big_child(megabytes: int) -> int:
    ctx = multiprocessing.get_context("spawn")
    ready, done = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_memory, args=(megabytes, ready, done))
    child.start()
    ready.wait(60)
    time.sleep(3.0)  # the parent samples (every 0.2 s) while the child holds its memory
    done.set()
    child.join()
    return megabytes


def test_isolated_memory_counts_the_processes_a_measurement_starts() -> None:
    from bench.isolate import isolated

    measured = isolated(_parent_of_a_big_child, 300)
    assert measured.result == 300
    assert measured.peak_rss < 300 * 2**20, measured  # the child's memory is not its own
    # the child's 300 MiB on top of the parent (whose current RSS may be below its peak)
    assert measured.tree_peak_rss >= 300 * 2**20 + 20 * 2**20, measured
    assert measured.tree_peak_rss >= measured.peak_rss + 200 * 2**20, measured


def _parent_sharing_with_a_forked_child(megabytes: int) -> int:
    block = bytearray(megabytes * 2**20)  # touched, then shared with the child (fork)
    for i in range(0, len(block), 4096):
        block[i] = 1
    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_wait_holding_nothing_new, args=(ready, done))
    child.start()
    ready.wait(60)
    time.sleep(3.0)  # sampled while both map the same pages
    done.set()
    child.join()
    return len(block) // 2**20


def _wait_holding_nothing_new(ready: Any, done: Any) -> None:
    ready.set()
    done.wait(60)


def test_isolated_pss_counts_pages_shared_by_its_processes_once() -> None:
    """The sum of RSS counts a page two processes share twice; the sum of PSS once."""
    from bench.isolate import isolated

    measured = isolated(_parent_sharing_with_a_forked_child, 300)
    assert measured.result == 300
    assert measured.tree_peak_rss >= 2 * 300 * 2**20, measured  # parent and child: twice
    assert 300 * 2**20 <= measured.tree_peak_pss < 300 * 2**20 + 150 * 2**20, measured


def test_isolated_peak_is_not_the_spawning_parents() -> None:
    """Linux carries the forked parent's peak into ru_maxrss across exec: a large parent (a
    test runner, the bench driver) must not show up as the measured process's peak."""
    from bench.isolate import isolated

    ballast = bytearray(400 * 2**20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    measured = isolated(len, b"x")
    assert measured.result == 1
    assert measured.peak_rss < 300 * 2**20, measured
    del ballast


def test_isolated_reports_a_failure_in_its_process() -> None:
    from bench.isolate import isolated

    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        isolated(divmod, 1, 0)


def test_a_failed_benchmark_audit_names_each_check_that_did_not_hold() -> None:
    from audit.report import Report
    from bench.federation import failed

    report = Report("catalogue.example")
    for core in ("catalogue-checkpoint", "catalogue-log", "node-tree"):
        report[core].ran = True
    assert failed(report) == []
    report["content-digest"].fail("node.example leaf 5", "content digest differs")
    report["node-tree"].ran = False  # a core check that did not run fails the audit too
    assert not report.ok
    assert failed(report) == [
        "node-tree (skipped, 0 failures): ",
        "content-digest (FAILED, 1 failures): node.example leaf 5: content digest differs",
    ]
