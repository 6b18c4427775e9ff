"""Throughput of `biobank-audit verify --bundle` on a synthetic bundle (not a test: run by hand).

    python -m tests.audit.bench_audit 1000000   # entries; prints entries/s
    python -m tests.audit.bench_audit 100000 1  # the same with no worker processes

Options as the CLI's: worker processes as `auto_workers()` unless a count is given.
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
import time
from pathlib import Path

import orjson

from audit.checks import AuditOptions, run_audit
from audit.fetcher import BUNDLE_FORMAT, BundleSource
from audit.parallel import auto_workers
from protocol.canonical import canonical
from tests.audit.sim import Catalogue, NodeLog


def build(n: int, path: Path) -> None:
    cat = Catalogue()
    node = NodeLog.create("big.example/biobank-node", "DE")
    cat.enrol(node)
    node.seed(n - 1)
    note = cat.harvest(node)
    with open(path / "nodes-0.jsonl", "wb") as fh:
        for leaf, content in zip(node.leaves, node.contents, strict=True):
            fh.write(
                orjson.dumps({"leaf": base64.b64encode(leaf).decode(), "content": content}) + b"\n"
            )
    with open(path / "catalogue-entries.jsonl", "wb") as fh:
        for leaf in cat.leaves:
            fh.write(orjson.dumps({"leaf": base64.b64encode(leaf).decode()}) + b"\n")
    meta = {
        "format": BUNDLE_FORMAT,
        "catalogue": "bench",
        "mirrors": {node.origin: {"file": "nodes-0.jsonl", "checkpoint": note}},
        "descriptor": {"origin": cat.origin, "verifier_key": cat.vkey},
        "checkpoint": cat.checkpoint(),
        "searches": cat.searches(),
    }
    (path / "bundle.json").write_text(json.dumps(meta))
    assert canonical({})  # protocol imported and working


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else auto_workers()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        build(n, path)
        start = time.perf_counter()
        report, _ = run_audit(BundleSource(path), state=None, options=AuditOptions(workers=workers))
        took = time.perf_counter() - start
    print(
        f"{n} entries in {took:.1f}s: {n / took:,.0f} entries/s; ok={report.ok}; workers={workers}"
    )


if __name__ == "__main__":
    main()
