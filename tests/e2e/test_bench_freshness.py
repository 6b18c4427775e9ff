"""Freshness in the benchmark (issue 19 item 3), at a tiny size on a real federation."""

from __future__ import annotations

from pathlib import Path

from bench.freshness import freshness
from federation import build_federation


def test_freshness_bench_measures_import_to_search_and_the_wait_apart(tmp_path: Path) -> None:
    with build_federation(tmp_path, ("DE", "IT"), samples=2000, seed=5) as fed:
        nodes = [(n.home, tmp_path / "exports" / n.country, n.country) for n in fed.nodes]
        said: list[str] = []
        out = freshness(fed.url, nodes, tmp_path / "fresh", trials=2, large=300, say=said.append)
    assert out["k"] == 10
    small, large = out["small"], out["300"]
    assert small["n"] == large["n"] == 2 == len(said) / 2
    for figures in (small, large):
        assert 0 < figures["p50_s"] <= figures["p95_s"] <= figures["max_s"]
        assert figures["entries_median"] >= 1  # each trial published something
        assert figures["from_commit"]["p95_s"] >= 0
    # pushed: searchable long before any schedule (the served catalogue has none)
    assert small["p95_s"] < 5, small
    waiting = out["waiting"]
    assert waiting["held_at_node"] is True  # one donor waits: policy, reported apart
    assert waiting["waited_s"] > 0 and waiting["latency_after_publication_s"] < 5
