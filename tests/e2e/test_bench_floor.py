"""The benchmark's floor does every check the harvest makes, on a real node's saved pages, and
the benchmark gives every target its ratio to the floor of the same run (issue 19, items 4, 8).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from bench import report
from bench.floor import FloorError, floor, save_pages
from catalogue.db import SQLITE_PAGE_SIZE
from federation.build import DemoNode, node_app, prepare_node
from federation.servers import live_server
from protocol.canonical import canonical
from protocol.errors import BiobankError


@pytest.fixture(scope="module")
def saved_pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    work = tmp_path_factory.mktemp("floor")
    node = DemoNode("DE", work / "nodes" / "DE")
    prepare_node(node, samples=400, seed=3, workdir=work)
    with live_server(node_app(node.home, node.url), node.port):
        pages = work / "pages.jsonl"
        yield pages, save_pages([node.url], pages)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    return path


def test_floor_processes_every_saved_entry_and_stores_it(
    saved_pages: tuple[Path, int], tmp_path: Path
) -> None:
    pages, count = saved_pages
    assert count > 10
    out = floor(str(pages), str(tmp_path / "floor.db"))
    assert out["records"] == count and out["seconds"] > 0
    import sqlite3

    with sqlite3.connect(tmp_path / "floor.db") as conn:
        stored, with_content = conn.execute(
            "SELECT count(*), count(content) FROM leaves"
        ).fetchone()
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        logs = conn.execute(
            "SELECT key >> 40, min(key & 0xFFFFFFFFFF), max(key & 0xFFFFFFFFFF), typeof(leaf)"
            " FROM leaves GROUP BY key >> 40"
        ).fetchall()
    assert stored == count and with_content > 0
    # one node's log, by its number (as the harvest's rows carry their node's id), and each
    # entry by its index, in the row's one integer key
    assert logs == [(1, 0, count - 1, "blob")]
    assert page_size == SQLITE_PAGE_SIZE  # the harvest's: the faster of the two here


def test_floor_loops_with_the_cyclic_collector_off_and_leaves_it_as_found(
    saved_pages: tuple[Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fastest correct loop: no cycles are made, so the collector is off while it runs
    (its default thresholds cost the loop about 13%); the caller's collector is as before."""
    import gc

    import bench.floor

    seen: list[bool] = []
    hash_leaf = bench.floor.leaf_hash

    def spy(leaf: bytes) -> bytes:
        seen.append(gc.isenabled())
        return hash_leaf(leaf)

    monkeypatch.setattr(bench.floor, "leaf_hash", spy)
    pages, count = saved_pages
    frozen = gc.get_freeze_count()
    assert gc.isenabled()
    out = floor(str(pages), str(tmp_path / "gc.db"))
    assert out["records"] == count == len(seen) and not any(seen)
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    gc.disable()
    try:  # a caller without the collector gets none back
        floor(str(pages), str(tmp_path / "gc2.db"))
        assert not gc.isenabled()
    finally:
        gc.enable()


def _tampered(pages: Path, tmp_path: Path, change: Any) -> Path:
    lines = _lines(pages)
    item = next(e for line in lines[1:] for e in line.get("entries", []) if e["content"])
    change(item)
    return _write(tmp_path / "tampered.jsonl", lines)


@pytest.mark.parametrize(
    ("what", "change", "message"),
    [
        ("content", lambda e: e["content"].update(samples=12345), "digest"),
        ("schema", None, "schema"),
        ("float", lambda e: e["content"].update(samples=12.0), "floats"),
        (
            "leaf bytes",
            lambda e: e.update(leaf=base64.b64encode(base64.b64decode(e["leaf"]) + b" ").decode()),
            "canonical",
        ),
    ],
)
def test_floor_refuses_a_tampered_saved_page(
    saved_pages: tuple[Path, int], tmp_path: Path, what: str, change: Any, message: str
) -> None:
    pages, _ = saved_pages
    if change is None:  # a schema failure whose digest matches (a node that signs anything)

        def change(e: dict[str, Any]) -> None:
            e["content"]["sex"] = "Female"
            leaf = orjson.loads(base64.b64decode(e["leaf"]))
            import hashlib

            leaf["digest"] = "sha256:" + hashlib.sha256(canonical(e["content"])).hexdigest()
            e["leaf"] = base64.b64encode(canonical(leaf)).decode()

    with pytest.raises((FloorError, ValueError, BiobankError)) as info:
        floor(str(_tampered(pages, tmp_path, change)), str(tmp_path / "t.db"))
    assert message in str(info.value).lower(), what


def test_floor_refuses_leaves_that_do_not_rebuild_the_signed_root(
    saved_pages: tuple[Path, int], tmp_path: Path
) -> None:
    pages, _ = saved_pages
    lines = _lines(pages)
    lines[1]["entries"].pop()  # one leaf fewer than the checkpoint signs
    with pytest.raises(FloorError, match="signed root"):
        floor(str(_write(tmp_path / "short.jsonl", lines)), str(tmp_path / "s.db"))


def _run(rate: float, n: int = 1000, probe: float = 30.0) -> dict[str, Any]:
    return {"seconds": n / rate, "records": n, "peak_rss": 2**20, "probe": probe}


def test_every_target_gets_its_ratio_to_the_floor_of_the_same_run() -> None:
    results: dict[str, Any] = {
        "size": 1000,
        "reps": 1,
        "floor": report.summarise([_run(50_000)], "records"),
        "floor_indexed": report.summarise([_run(32_000)], "records"),
        "harvest": report.summarise([_run(40_000, probe=31.5)], "records"),
        "harvest_pg": report.summarise([_run(44_000)], "records"),
        "audit": report.summarise([_run(70_000)], "records"),
        "audit_bundle": report.summarise([_run(90_000)], "records"),
        "machine": {"cpu_probe_start": 30.0, "cpu_probe_end": 29.0},
    }
    results["vs_floor"] = found = report.vs_floor(results)
    assert found["ratios"]["harvest"] == pytest.approx(0.8)
    assert found["ratios"]["audit_bundle"] == pytest.approx(1.8)
    met = {t["figure"]: (t["measured"], t["met"]) for t in found["targets"][2:]}
    # the harvest against both floors: the issue's (verify, store) and the same work's
    issue, same = found["targets"][:2]
    assert (issue["measured"], issue["met"]) == (pytest.approx(0.8), False)
    assert (same["measured"], same["met"]) == (pytest.approx(1.25), True)
    assert "same work" in same["target"] and "same work" not in issue["target"]
    assert met["harvest_pg"] == (pytest.approx(1.1), True)
    assert met["audit"] == (pytest.approx(70_000), True)
    assert met["audit_bundle"] == (pytest.approx(90_000), False)
    assert results["harvest"]["probe"] == 31.5
    console = Console(record=True, width=200)
    report.show(results, console)
    text = console.export_text()
    assert "x floor" in text and "31.5 M/s" in text
    assert "harvest >= 1.0 x the single-core floor: 0.80 x: NOT met" in text
    assert "floor doing the same work (verify, store, index;" in text and "1.25 x: met" in text
    assert "floor doing the same work (... + the search index)" in text  # its row, 0.64 x floor
