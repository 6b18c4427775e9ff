"""A real Prometheus server scrapes a harvested federation; its answers match the status API.

Debian's ``prometheus`` package (``/usr/bin/prometheus``) runs with a temporary config and
database on a loopback port, scraping the catalogue's and the node's ``/metrics`` every second.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from federation import build_federation
from federation.servers import free_port

PROMETHEUS = "/usr/bin/prometheus"


def prometheus_binary() -> str:
    """Debian's Prometheus; skip outside CI when absent, fail inside CI."""
    found = shutil.which("prometheus") or (PROMETHEUS if os.path.exists(PROMETHEUS) else None)
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"CI=true but Prometheus is missing at {PROMETHEUS} (apt-get install prometheus)"
        )
    pytest.skip(f"Prometheus not installed at {PROMETHEUS} (apt-get install -y prometheus)")


def _config(targets: dict[str, str]) -> str:
    jobs = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
        for job, target in targets.items()
    )
    return f"global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{jobs}"


class Prometheus:
    """A Prometheus server on loopback, queried through its HTTP API."""

    def __init__(self, binary: str, workdir: Path, targets: dict[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        config.write_text(_config(targets), encoding="utf-8")
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = (workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def wait(self, query: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """The result of ``query`` once it has ``count`` series (polling; fails after timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                resp = self.client.get("/api/v1/query", params={"query": query})
                # 503 "Service Unavailable" (plain text) while its storage is still starting
                body = resp.json() if resp.status_code != 503 else {"status": "starting"}
                if body["status"] == "success" and len(body["data"]["result"]) >= count:
                    result: list[dict[str, Any]] = body["data"]["result"]
                    return result
            except httpx.TransportError:  # not listening yet
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.log.flush()
                log = Path(self.log.name).read_text(encoding="utf-8", errors="replace")
                pytest.fail(
                    f"Prometheus never answered {query!r} with {count} series:\n{log[-3000:]}"
                )
            time.sleep(0.2)

    def value(self, query: str, **labels: str) -> float:
        """The value of the one series of ``query`` with ``labels``."""
        series = [
            s
            for s in self.wait(query, 1)
            if all(s["metric"].get(k) == v for k, v in labels.items())
        ]
        assert len(series) == 1, series
        return float(series[0]["value"][1])

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def prometheus_binary_path() -> str:
    return prometheus_binary()


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Any]:
    with build_federation(tmp_path / "fed", ("DE",), samples=300, seed=3) as fed:
        yield fed


def test_prometheus_scrapes_the_federation(
    prometheus_binary_path: str, federation: Any, tmp_path: Path
) -> None:
    node = federation.nodes[0]
    targets = {
        "catalogue": federation.url.removeprefix("http://"),
        "node": node.url.removeprefix("http://"),
    }
    started = time.monotonic()
    prom = Prometheus(prometheus_binary_path, tmp_path / "prometheus", targets)
    try:
        up = prom.wait("up == 1", 2)
        assert {s["metric"]["job"] for s in up} == {"catalogue", "node"}
        applied = prom.wait("biobank_catalogue_node_entries_applied_total", 1)
        prom.wait("biobank_node_log_entries_total", 1)
        scraped_after = time.monotonic() - started
        status = httpx.get(f"{federation.url}/v1/nodes", timeout=10).json()["nodes"]
        origin = status[0]["origin"]
        detail = httpx.get(f"{federation.url}/v1/nodes/{origin}", timeout=10).json()
        node_size = int(httpx.get(f"{node.url}/v1/log/checkpoint", timeout=10).text.split("\n")[1])

        assert [s["metric"]["node"] for s in applied] == [origin]
        assert (
            prom.value("biobank_catalogue_node_entries_applied_total", node=origin)
            == (detail["tree_size"])
            == node_size
        )
        assert (
            prom.value("biobank_catalogue_node_harvest_lag_entries", node=origin)
            == (detail["lag"])
            == 0
        )
        assert (
            prom.value("biobank_catalogue_node_rejections_total", node=origin)
            == (detail["rejections"])
        )
        assert prom.value("biobank_catalogue_node_state", node=origin, state="active") == 1
        assert prom.value("biobank_catalogue_node_stale", node=origin) == int(detail["stale"]) == 0
        assert prom.value("biobank_node_log_size_entries") == node_size
        assert prom.value("sum(biobank_node_log_entries_total)") == node_size
        assert prom.value("biobank_node_info", origin=origin) == 1
        assert prom.value("biobank_catalogue_node_harvest_lag_seconds", node=origin) >= 0
    finally:
        prom.stop()
    print(f"Prometheus scraped both targets {scraped_after:.1f} s after its start")
