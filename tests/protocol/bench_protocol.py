"""Throughput of the protocol hot paths on realistic records (not a test: run by hand).

python -m tests.protocol.bench_protocol [n]   # prints calls/s for each hot path
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from protocol.canonical import canonical, parse_canonical
from protocol.entries import parse_leaf
from protocol.schema import SchemaSet
from protocol.verify import StepVerifier
from tests.audit.sim import NodeLog


def _rate(label: str, n: int, fn: Callable[[], Any]) -> float:
    took = float("inf")
    for _ in range(3):  # best of three: other work on the machine only slows a run down
        start = time.perf_counter()
        fn()
        took = min(took, time.perf_counter() - start)
    print(f"{label:<34} {n / took:>12,.0f}/s")
    return n / took


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    node = NodeLog.create("bench.example/biobank-node", "DE")
    node.seed(n - 1)
    leaves = node.leaves
    contents = [orjson.loads(orjson.dumps(c)) for c in node.contents]  # as a harvest sees them
    note = node.checkpoint()
    schemas = SchemaSet.default()
    for c in contents[:2]:  # compile validators outside the timing
        schemas.problems("sample-group" if "nonce" in c else "biobank", c, "warm-up")
    _rate("canonical(record)", n, lambda: [canonical(c) for c in contents])
    _rate("parse_canonical(leaf)", n, lambda: [parse_canonical(b) for b in leaves])
    _rate(
        "parse_leaf(leaf)",
        n,
        lambda: [
            parse_leaf(b, expected_log=node.origin, expected_index=i) for i, b in enumerate(leaves)
        ],
    )
    _rate(
        "schemas.problems(sample)",
        n - 1,
        lambda: [schemas.problems("sample-group", c, "x") for c in contents[1:]],
    )

    def harvest() -> None:
        step = StepVerifier(None, note, [node_verifier(node)], schemas, origin=node.origin)
        for leaf, content in zip(leaves, contents, strict=True):
            step.feed(leaf, content)
        step.finish()

    _rate("StepVerifier.feed (records)", n, harvest)


def node_verifier(node: NodeLog) -> Any:
    from protocol.note import Verifier

    return Verifier.from_key(node.vkey)


if __name__ == "__main__":
    main()
