"""The node's health checks and Prometheus metrics, read from the node database at scrape time.

Metrics (the node's log as ``biobank-node status`` shows it): ``biobank_node_log_size_entries``,
``biobank_node_log_entries_total{op,kind}``, ``biobank_node_live_records{kind}``,
``biobank_node_checkpoint_size_entries``, ``biobank_node_checkpoint_timestamp_seconds`` and
``biobank_node_info{origin}``. No key, secret or local id is ever a label or a value.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

from fastapi import FastAPI
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from node import store
from node.home import Home
from service import health, metrics


class NodeCollector(Collector):
    """Counts from ``node.db``; the GROUP BY scans are redone only when the log has grown."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self._lock = threading.Lock()
        self._cached: tuple[int, dict[str, object]] | None = None

    def _counts(self, conn: sqlite3.Connection, size: int) -> dict[str, object]:
        with self._lock:
            if self._cached is None or self._cached[0] != size:
                self._cached = (size, store.counts(conn))
            return self._cached[1]

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        conn = store.connect(self.home.db_path, readonly=True)
        try:
            size = store.log_size(conn)
            latest = store.latest_checkpoint(conn)
            counts = self._counts(conn, size)
        finally:
            conn.close()
        info = GaugeMetricFamily(
            "biobank_node_info", "This node's log origin (value always 1).", labels=["origin"]
        )
        info.add_metric([self.home.config.origin], 1)
        yield info
        yield GaugeMetricFamily(
            "biobank_node_log_size_entries", "Entries in the node's log.", value=size
        )
        entries = CounterMetricFamily(
            "biobank_node_log_entries",
            "Log entries appended, by operation (publish, withdraw, rotate-key) and record "
            "kind (biobank, collection, sample-group; key for rotate-key).",
            labels=["op", "kind"],
        )
        for key, n in dict(counts["entries"]).items():  # type: ignore[call-overload]
            kind, op = str(key).split("/", 1)
            entries.add_metric([op, kind], int(n))
        yield entries
        live = GaugeMetricFamily(
            "biobank_node_live_records",
            "Records published and not withdrawn, by kind.",
            labels=["kind"],
        )
        for kind, n in dict(counts["live"]).items():  # type: ignore[call-overload]
            live.add_metric([str(kind)], int(n))
        yield live
        if latest is not None:
            yield GaugeMetricFamily(
                "biobank_node_checkpoint_size_entries",
                "Tree size of the latest signed checkpoint.",
                value=latest[0],
            )
            signed = datetime.strptime(latest[3], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            yield GaugeMetricFamily(
                "biobank_node_checkpoint_timestamp_seconds",
                "When the latest checkpoint was signed (Unix time).",
                value=signed.timestamp(),
            )


def database_ready(home: Home) -> str | None:
    """None when the node database opens and holds a signed checkpoint."""
    try:
        conn = store.connect(home.db_path, readonly=True)
        try:
            latest = store.latest_checkpoint(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"node database {home.db_path}: {exc}"
    return None if latest is not None else "the node has not signed a checkpoint yet"


def install(app: FastAPI, home: Home) -> None:
    """``/healthz``, ``/readyz`` (database) and ``/metrics`` on the node app."""
    health.install(app, {"database": lambda: database_ready(home)})
    registry = metrics.new_registry()
    registry.register(NodeCollector(home))
    metrics.install(app, registry)
