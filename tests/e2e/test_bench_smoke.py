"""The benchmark runs end to end at a tiny size (no timing is asserted, only that it works)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow


def test_bench_runs_at_a_tiny_size_and_writes_consistent_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    pg_url = os.environ.get("CATALOGUE_TEST_PG_URL")
    cmd = [sys.executable, "-m", "bench", "--size", "2k", "--reps", "1", "--search-rounds", "2",
           "--page-rounds", "1", "--json", str(out), "--workdir", str(tmp_path / "work")]
    cmd += ["--pg-url", pg_url] if pg_url else ["--no-pg"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "120"})
    assert done.returncode == 0, done.stderr[-3000:]
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
    assert len(results["search_sqlite"]["queries"]) >= 10
    assert results["search_sqlite"]["p95_ms"] >= results["search_sqlite"]["p50_ms"]
    assert results["audit"]["records"] > published
    page = results["search_sqlite"]["page"]
    if "error" not in page:  # Chromium present: three landing URLs rendered once each
        assert page["n"] == 3 and 0 < page["p50_ms"] <= page["max_ms"]
    else:
        assert os.environ.get("CI") != "true", page["error"]
    if pg_url:
        assert results["search_pg"]["requests"] == results["search_sqlite"]["requests"]
        assert results["harvest_pg"]["records"] == published
