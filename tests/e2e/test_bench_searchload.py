"""Issue 19 item 5: search latency measured while 20 clients fetch log pages and while a
harvest runs (bench/searchload.py), against a real federation on loopback; and the search
targets the benchmark prints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import federation as bench_federation
from bench.federation import QUERIES
from bench.report import search_targets
from bench.searchload import harvest_load, log_page_load
from federation.build import Federation, build_federation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    work = tmp_path_factory.mktemp("fed")
    with build_federation(work, ("DE", "DK"), samples=300, seed=19) as federation:
        yield federation


def test_search_latency_is_measured_while_20_clients_fetch_log_pages(fed: Federation) -> None:
    out = log_page_load(fed.url, rounds=2)
    assert out["clients"] == 20
    pages = out["pages"]
    assert pages["ok"] > 0 and pages["other"] == 0
    assert pages["entries"] > 0 and pages["per_s"] > 0
    for key in ("idle", "loaded"):
        assert out[key]["requests"] == 2 * len(QUERIES)
        assert out[key]["p95_ms"] >= out[key]["p50_ms"] > 0


def test_search_latency_is_measured_during_a_harvest_of_every_node(
    fed: Federation, tmp_path: Path
) -> None:
    settings = bench_federation.catalogue_settings(
        f"sqlite:///{tmp_path / 'catalogue.db'}", str(tmp_path)
    )
    nodes = [(n.url, n.verifier_key) for n in fed.nodes]
    out = harvest_load(fed.url, 2, settings, nodes)
    assert out["loaded"]["requests"] == 2 * len(QUERIES)
    assert out["loaded"]["p95_ms"] >= out["loaded"]["p50_ms"] > 0
    # the harvest ran to the end and took what the federation's own first harvest took
    assert out["harvest"]["added"] == sum(o.added for o in fed.outcomes) > 0
    assert isinstance(out["harvest_running_throughout"], bool)


def test_search_targets_are_judged_at_the_runs_size() -> None:
    at_1m = search_targets(
        {"size": 1_000_000, "search_sqlite": {"p95_ms": 25.0}, "search_pg": {"p95_ms": 30.0}}
    )
    assert at_1m[0].startswith("target search p95 (SQLite) < 20 ms (at 1M): 25.0 ms")
    assert at_1m[0].endswith("NOT met")
    assert at_1m[1] == "target search p95 PostgreSQL <= 1.5 x SQLite: 1.20 x: met"
    small = search_targets({"size": 200_000, "search_sqlite": {"p95_ms": 11.2}})
    assert small == [
        "target search p95 (SQLite) < 20 ms at 1M: not judged, this run has 200,000 samples "
        "(p95 11.2 ms)"
    ]
    at_10m = search_targets({"size": 10_000_000, "search_sqlite": {"p95_ms": 58.0}})
    assert at_10m == [
        "target search p95 (SQLite) < 150 ms (at 10M): 58.0 ms at 10,000,000 samples: met"
    ]
