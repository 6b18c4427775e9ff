"""Worker processes change nothing but speed: the same report, finding for finding, in order."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

import audit.checks
from audit.checks import AuditOptions, run_audit
from audit.fetcher import BUNDLE_FORMAT, BundleSource, HttpSource
from federation.servers import live_server
from tests.audit.conftest import make_world
from tests.audit.liar import Liar, edit_page, mirror_path
from tests.audit.sim import GROUP, Catalogue, NodeLog


def _write_bundle(
    cat: Catalogue,
    path: Path,
    served: dict[str, tuple[list[bytes], list[Any]]],
) -> None:
    mirrors = {}
    for n, (origin, (leaves, contents)) in enumerate(sorted(served.items())):
        name = f"nodes-{n}.jsonl"
        with open(path / name, "wb") as fh:
            for leaf, content in zip(leaves, contents, strict=True):
                fh.write(
                    orjson.dumps({"leaf": base64.b64encode(leaf).decode(), "content": content})
                    + b"\n"
                )
        mirrors[origin] = {"file": name, "checkpoint": cat.mirrors[origin].checkpoint}
    with open(path / "catalogue-entries.jsonl", "wb") as fh:
        for leaf in cat.leaves:
            fh.write(orjson.dumps({"leaf": base64.b64encode(leaf).decode()}) + b"\n")
    meta = {
        "format": BUNDLE_FORMAT,
        "catalogue": "test",
        "mirrors": mirrors,
        "descriptor": {"origin": cat.origin, "verifier_key": cat.vkey},
        "checkpoint": cat.checkpoint(),
        "searches": cat.searches(),
    }
    (path / "bundle.json").write_text(json.dumps(meta))


def _faulty_world() -> tuple[Catalogue, dict[str, tuple[list[bytes], list[Any]]]]:
    """Two nodes; DE's mirror serves every kind of fault the per-leaf checks look for, FR's
    lacks its last two leaves."""
    world = make_world()
    de, fr = world.de, world.fr
    if "nonce" in de.contents[0]:
        raise AssertionError("leaf 0 should be the biobank record")
    de.publish(GROUP, {**de.contents[1], "id": "grp_" + "z" * 26, "sex": "Blut"})
    de.publish(GROUP, {**de.contents[1], "id": "grp_" + "y" * 26, "samples": 3, "donors": 12})
    world.cat.harvest(de)
    leaves, contents = list(de.leaves), [None if c is None else dict(c) for c in de.contents]
    contents[5]["sex"] = "male" if contents[5]["sex"] == "female" else "female"  # digest
    contents[6] = {**contents[6], "age": {"min": 1.5, "max": 2}}  # no canonical form
    contents[world.withdrawn_leaf] = world.withdrawn_content  # served after its withdrawal
    withdraw = next(i for i, leaf in enumerate(leaves) if b'"op":"withdraw"' in leaf)
    contents[withdraw] = {"id": "x"}  # content beside a withdraw entry
    leaves[8] = leaves[8].replace(b'{"digest"', b'{ "digest"')  # not canonical
    contents[9] = None  # a live record served without content
    return world.cat, {de.origin: (leaves, contents), fr.origin: (fr.leaves[:-2], fr.contents[:-2])}


def _faulty_bundle(path: Path) -> None:
    cat, served = _faulty_world()
    _write_bundle(cat, path, served)


def _report(path: Path, workers: int) -> dict[str, Any]:
    report, state = run_audit(
        BundleSource(path), state=None, options=AuditOptions(workers=workers, parallel_min=1)
    )
    assert state is None or report.ok
    return report.to_json()


def test_parallel_report_equals_serial_report_on_faulty_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit.checks, "CHUNK", 7)  # many chunks, faults spread across them
    _faulty_bundle(tmp_path)
    serial = _report(tmp_path, 1)
    parallel = _report(tmp_path, 2)
    assert parallel == serial
    failures = {c["name"]: c["failures"] for c in serial["checks"] if c["failures"]}
    for name in ("node-tree", "content-digest", "content-schema", "withdrawn-content"):
        assert failures.get(name), (name, failures)


def test_parallel_report_equals_serial_report_on_honest_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit.checks, "CHUNK", 5)
    cat = Catalogue()
    node = NodeLog.create("big.example/biobank-node", "DE")
    cat.enrol(node)
    node.seed(60)
    node.withdraw(GROUP, node.contents[4]["id"])
    node.republish(node.contents[7]["id"], samples=40, donors=31)
    node.rotate_key()
    node.seed(5, start=60)
    cat.harvest(node, node.checkpoint(keys=node.signer_keys[-2:]))
    _write_bundle(cat, tmp_path, {node.origin: (node.leaves, node.contents)})
    serial = _report(tmp_path, 1)
    assert serial["ok"] is True, serial
    assert _report(tmp_path, 2) == serial


def test_undecodable_line_raises_after_the_same_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit.checks, "CHUNK", 4)
    _faulty_bundle(tmp_path)
    mirror = tmp_path / "nodes-0.jsonl"
    lines = mirror.read_bytes().splitlines(keepends=True)
    lines[10] = b'{"leaf": "not base64!"}\n'
    mirror.write_bytes(b"".join(lines))
    errors = []
    for workers in (1, 2):
        with pytest.raises(ValueError) as info:
            _report(tmp_path, workers)
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1]


def test_fed_logs_after_a_log_that_fails_are_audited_like_serial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers are fed the next log's tasks before the caller reaches it: a log whose tasks
    cannot be made (its mirror file was not saved) fails where the serial run fails it, and
    the logs before and after it are audited as the serial run audits them."""
    monkeypatch.setattr(audit.checks, "CHUNK", 3)
    _faulty_bundle(tmp_path)
    meta = json.loads((tmp_path / "bundle.json").read_text())
    first = sorted(meta["mirrors"])[0]
    del meta["mirrors"][first]["file"]
    (tmp_path / "bundle.json").write_text(json.dumps(meta))
    serial = _report(tmp_path, 1)
    assert _report(tmp_path, 2) == serial
    tree = next(c for c in serial["checks"] if c["name"] == "node-tree")
    assert [f["location"] for f in tree["findings"]][0] == f"node {first} mirror"
    assert any(f["location"] != f"node {first} mirror" for f in tree["findings"]), tree


def test_cli_accepts_a_worker_count(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from audit.cli import app
    from tests.audit.helpers import audit as run_cli

    world = make_world()
    _write_bundle(
        world.cat, tmp_path, {n.origin: (n.leaves, n.contents) for n in (world.de, world.fr)}
    )
    for workers in ("1", "2"):
        code, report = run_cli("--bundle", tmp_path, "--workers", workers)
        assert code == 0 and report["ok"] is True, report
    result = CliRunner().invoke(app, ["verify", "--bundle", str(tmp_path), "--workers", "0"])
    assert result.exit_code == 2 and "--workers" in result.output  # below the minimum of 1


def test_spawned_workers_when_another_thread_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    monkeypatch.setattr(audit.checks, "CHUNK", 9)
    _faulty_bundle(tmp_path)
    serial = _report(tmp_path, 1)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)  # a server thread, say: no fork now
    other.start()
    try:
        assert _report(tmp_path, 2) == serial
    finally:
        stop.set()
        other.join()


def _http_report(url: str, workers: int) -> dict[str, Any]:
    source = HttpSource(catalogue=url)
    try:
        report, state = run_audit(
            source, state=None, options=AuditOptions(workers=workers, parallel_min=1)
        )
    finally:
        source.close()
    assert state is None or report.ok
    return report.to_json()


def test_parallel_http_report_equals_serial_on_faulty_mirrors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Workers fetch the mirror pages themselves: faults, a mirror short of its checkpoint."""
    monkeypatch.setattr(audit.checks, "CHUNK", 7)
    cat, served = _faulty_world()
    honest = cat.searches()
    monkeypatch.setattr(cat, "search", lambda query="": honest[query])
    for origin, (leaves, contents) in served.items():
        cat.mirrors[origin].leaves, cat.mirrors[origin].contents = leaves, contents
    with live_server(cat.app()) as server:
        serial = _http_report(server.url, 1)
        assert _http_report(server.url, 2) == serial
    failures = {c["name"]: c["failures"] for c in serial["checks"] if c["failures"]}
    for name in ("node-tree", "content-digest", "content-schema", "withdrawn-content"):
        assert failures.get(name), (name, failures)
    tree = next(c for c in serial["checks"] if c["name"] == "node-tree")
    assert any("entries dropped" in f["reason"] for f in tree["findings"]), tree


def test_parallel_http_stops_where_the_mirror_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mirror that serves nothing from leaf 14 on, yet serves later pages again: the serial
    audit stops at 14, so the workers' later pages must not be applied either."""
    monkeypatch.setattr(audit.checks, "CHUNK", 7)
    world = make_world()
    liar = Liar(world.cat.app())
    liar.lie(
        mirror_path(world.de.origin, "entries"),
        edit_page(
            lambda start, items: items[: 14 - start] if start < 14 else [] if start < 21 else items
        ),
    )
    with live_server(liar) as server:
        serial = _http_report(server.url, 1)
        assert _http_report(server.url, 2) == serial
    reasons = [f["reason"] for c in serial["checks"] for f in c["findings"]]
    assert any("serves only 14 leaves" in r for r in reasons), reasons


def test_parallel_http_page_error_fails_the_node_like_serial(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page that is not JSON: both runs fail that node's mirror with the same finding (the
    page boundaries, and so the URL in the reason, are the fetcher's own business)."""
    monkeypatch.setattr(audit.checks, "CHUNK", 7)
    world = make_world()
    liar = Liar(world.cat.app())

    def broken(query: dict[str, str], body: bytes) -> bytes:
        start = int(query.get("start", 0))
        return b"not json" if start <= 21 < start + int(query.get("limit", 1000)) else body

    liar.lie(mirror_path(world.de.origin, "entries"), broken)
    with live_server(liar) as server:
        reports = [_http_report(server.url, workers) for workers in (1, 2)]
    for report in reports:
        assert report["ok"] is False
        tree = next(c for c in report["checks"] if c["name"] == "node-tree")
        assert [f["location"] for f in tree["findings"]] == [f"node {world.de.origin} mirror"]
        assert "not an entries page" in tree["findings"][0]["reason"]
        assert "start=" in tree["findings"][0]["reason"]


def test_a_record_published_again_within_a_run_keeps_each_served_leaf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The valid group publishes between two other leaves are applied as one run; a record
    published again within the run, or in a later run, keeps every leaf it was served with,
    so content still served for each after its withdrawal is found, as in a serial run."""
    monkeypatch.setattr(audit.checks, "CHUNK", 1000)  # the whole log one chunk
    cat = Catalogue()
    node = NodeLog.create("again.example/biobank-node", "DE")
    cat.enrol(node)
    node.seed(12)
    rid = node.contents[3]["id"]
    node.republish(rid, samples=40, donors=31)  # again within the run
    node.withdraw(GROUP, node.contents[1]["id"])  # another leaf: the run ends
    node.republish(rid, samples=41, donors=31)  # again in the next run
    node.seed(3, start=12)
    served = list(node.contents)
    node.withdraw(GROUP, rid)
    cat.harvest(node)
    again = [i for i, leaf in enumerate(node.leaves) if f'"id":"{rid}"'.encode() in leaf][:3]
    contents = list(node.contents)
    for i in again:  # each publish's content still served
        contents[i] = served[i]
    _write_bundle(cat, tmp_path, {node.origin: (node.leaves, contents)})
    serial = _report(tmp_path, 1)
    assert _report(tmp_path, 2) == serial
    (withdrawn,) = [c for c in serial["checks"] if c["name"] == "withdrawn-content"]
    found = [f["location"] for f in withdrawn["findings"]]
    assert found == [f"node {node.origin} leaf {i}" for i in again], withdrawn
