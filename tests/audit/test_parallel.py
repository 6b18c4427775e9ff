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
from audit.fetcher import BUNDLE_FORMAT, BundleSource
from tests.audit.conftest import make_world
from tests.audit.sim import Catalogue, NodeLog


def _write_bundle(cat: Catalogue, path: Path, served: dict[str, tuple[list[bytes], list[Any]]],
                  ) -> None:
    mirrors = {}
    for n, (origin, (leaves, contents)) in enumerate(sorted(served.items())):
        name = f"nodes-{n}.jsonl"
        with open(path / name, "wb") as fh:
            for leaf, content in zip(leaves, contents, strict=True):
                fh.write(orjson.dumps({"leaf": base64.b64encode(leaf).decode(),
                                       "content": content}) + b"\n")
        mirrors[origin] = {"file": name, "checkpoint": cat.mirrors[origin].checkpoint}
    with open(path / "catalogue-entries.jsonl", "wb") as fh:
        for leaf in cat.leaves:
            fh.write(orjson.dumps({"leaf": base64.b64encode(leaf).decode()}) + b"\n")
    meta = {"format": BUNDLE_FORMAT, "catalogue": "test", "mirrors": mirrors,
            "descriptor": {"origin": cat.origin, "verifier_key": cat.vkey},
            "checkpoint": cat.checkpoint(), "search": cat.search()}
    (path / "bundle.json").write_text(json.dumps(meta))


def _faulty_bundle(path: Path) -> None:
    """Two nodes; DE's mirror serves every kind of fault the per-leaf checks look for."""
    world = make_world()
    de, fr = world.de, world.fr
    if "nonce" in de.contents[0]:
        raise AssertionError("leaf 0 should be the biobank record")
    de.publish("sample", {**de.contents[1], "id": "smp_" + "z" * 26, "sex": "Blut"})
    world.cat.harvest(de)
    leaves, contents = list(de.leaves), [None if c is None else dict(c) for c in de.contents]
    contents[5]["sex"] = "male" if contents[5]["sex"] == "female" else "female"  # digest
    contents[6] = {**contents[6], "age": {"min": 1.5, "max": 2}}  # no canonical form
    contents[world.withdrawn_leaf] = world.withdrawn_content  # served after its withdrawal
    withdraw = next(i for i, leaf in enumerate(leaves) if b'"op":"withdraw"' in leaf)
    contents[withdraw] = {"id": "x"}  # content beside a withdraw entry
    leaves[8] = leaves[8].replace(b'{"digest"', b'{ "digest"')  # not canonical
    contents[9] = None  # a live record served without content
    served = {de.origin: (leaves, contents), fr.origin: (fr.leaves[:-2], fr.contents[:-2])}
    _write_bundle(world.cat, path, served)


def _report(path: Path, workers: int) -> dict[str, Any]:
    report, state = run_audit(BundleSource(path), state=None,
                              options=AuditOptions(workers=workers, parallel_min=1))
    assert state is None or report.ok
    return report.to_json()


def test_parallel_report_equals_serial_report_on_faulty_bundle(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit.checks, "CHUNK", 7)  # many chunks, faults spread across them
    _faulty_bundle(tmp_path)
    serial = _report(tmp_path, 1)
    parallel = _report(tmp_path, 2)
    assert parallel == serial
    failures = {c["name"]: c["failures"] for c in serial["checks"] if c["failures"]}
    for name in ("node-tree", "content-digest", "content-schema", "withdrawn-content"):
        assert failures.get(name), (name, failures)


def test_parallel_report_equals_serial_report_on_honest_bundle(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit.checks, "CHUNK", 5)
    cat = Catalogue()
    node = NodeLog.create("big.example/biobank-node", "DE")
    cat.enrol(node)
    node.seed(60)
    node.withdraw("sample", node.contents[4]["id"])
    node.rotate_key()
    node.seed(5, start=60)
    cat.harvest(node, node.checkpoint(keys=node.signer_keys[-2:]))
    _write_bundle(cat, tmp_path, {node.origin: (node.leaves, node.contents)})
    serial = _report(tmp_path, 1)
    assert serial["ok"] is True, serial
    assert _report(tmp_path, 2) == serial


def test_undecodable_line_raises_after_the_same_leaves(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
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


def test_cli_accepts_a_worker_count(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from audit.cli import app
    from tests.audit.helpers import audit as run_cli

    world = make_world()
    _write_bundle(world.cat, tmp_path, {n.origin: (n.leaves, n.contents)
                                        for n in (world.de, world.fr)})
    for workers in ("1", "2"):
        code, report = run_cli("--bundle", tmp_path, "--workers", workers)
        assert code == 0 and report["ok"] is True, report
    result = CliRunner().invoke(app, ["verify", "--bundle", str(tmp_path), "--workers", "0"])
    assert result.exit_code == 2 and "--workers" in result.output  # below the minimum of 1


def test_spawned_workers_when_another_thread_runs(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
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
