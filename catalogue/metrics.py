"""The catalogue's health checks and Prometheus metrics (read from the database at scrape time).

Per node (label ``node``: its origin), the values ``/v1/nodes`` shows: harvest lag in entries
and seconds, last success and attempt times, entries applied, rejections, open alerts and
alerts by kind, failed or refused harvests by kind, state and staleness; and a latency
histogram of ``/v1/search``. The admin token and node keys are never a label or a value.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Receive, Scope, Send

from catalogue.context import Context
from catalogue.models import alerts, harvest_refusals, nodes, own_state
from catalogue.status import list_status, parse_time
from service import health, metrics

__all__ = ["CatalogueCollector", "install"]

STATES = ("active", "halted", "retired")
Family = GaugeMetricFamily | CounterMetricFamily


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ("node",)) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _counter(name: str, doc: str, labels: tuple[str, ...] = ("node",)) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


class CatalogueCollector(Collector):
    """Node status as ``/v1/nodes`` computes it (``catalogue.status.list_status``)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Family]:
        with self.ctx.engine.connect() as conn:
            rows = list_status(conn, self.ctx.settings.stale_after)
            own_size = conn.execute(select(own_state.c.size)).scalar() or 0
            by_kind = conn.execute(
                select(
                    nodes.c.origin,
                    alerts.c.kind,
                    func.count(),
                    func.count(alerts.c.cleared_at),
                )
                .join(nodes, nodes.c.id == alerts.c.node_id)
                .group_by(nodes.c.origin, alerts.c.kind)
            ).all()
            refusals = conn.execute(
                select(nodes.c.origin, harvest_refusals.c.kind, harvest_refusals.c.n).join(
                    nodes, nodes.c.id == harvest_refusals.c.node_id
                )
            ).all()
        now = datetime.now(UTC)
        yield GaugeMetricFamily(
            "biobank_catalogue_log_size_entries",
            "Entries in the catalogue's own signed log.",
            value=own_size,
        )
        yield from self._nodes(rows, now)
        raised = _counter(
            "biobank_catalogue_node_alerts",
            "Alerts raised (rollback, equivocation: the node is halted), by kind.",
            ("node", "kind"),
        )
        open_ = _gauge(
            "biobank_catalogue_node_open_alerts",
            "Alerts not yet cleared by an operator, by kind.",
            ("node", "kind"),
        )
        for origin, kind, total, cleared in by_kind:
            raised.add_metric([origin, kind], int(total))
            open_.add_metric([origin, kind], int(total) - int(cleared))
        yield raised
        yield open_
        refused = _counter(
            "biobank_catalogue_node_harvest_refusals",
            "Harvest attempts that failed or were refused, by kind (the error class: "
            "FetchError for an unreachable node, SignatureError, ProofError, RollbackError, ...).",
            ("node", "kind"),
        )
        for origin, kind, n in refusals:
            refused.add_metric([origin, kind], int(n))
        yield refused

    def _nodes(self, rows: list[dict[str, Any]], now: datetime) -> Iterator[Family]:
        state = _gauge(
            "biobank_catalogue_node_state",
            "1 for the node's current state (active, halted, retired), 0 for the others.",
            ("node", "state"),
        )
        stale = _gauge(
            "biobank_catalogue_node_stale",
            "1 when the last successful harvest is older than CATALOGUE_STALE_AFTER.",
        )
        applied = _counter(
            "biobank_catalogue_node_entries_applied",
            "Node log entries verified and applied (the verified tree size).",
        )
        remote = _gauge(
            "biobank_catalogue_node_remote_size_entries",
            "Tree size of the node's latest checkpoint seen by a harvest.",
        )
        lag = _gauge(
            "biobank_catalogue_node_harvest_lag_entries",
            "Entries the node has signed that the catalogue has not applied yet.",
        )
        lag_s = _gauge(
            "biobank_catalogue_node_harvest_lag_seconds",
            "Seconds since the last successful harvest of the node (absent before the first).",
        )
        success = _gauge(
            "biobank_catalogue_node_last_success_timestamp_seconds",
            "When the node was last harvested successfully (Unix time).",
        )
        attempt = _gauge(
            "biobank_catalogue_node_last_attempt_timestamp_seconds",
            "When a harvest of the node was last attempted (Unix time).",
        )
        rejected = _counter(
            "biobank_catalogue_node_rejections",
            "Records of the node's accepted log kept out of the index (schema or policy "
            "rejections).",
        )
        for r in rows:
            node = [r["origin"]]
            for s in STATES:
                state.add_metric([*node, s], 1 if r["state"] == s else 0)
            stale.add_metric(node, 1 if r["stale"] else 0)
            applied.add_metric(node, int(r["tree_size"]))
            rejected.add_metric(node, int(r["rejections"]))
            if r["remote_size"] is not None:
                remote.add_metric(node, int(r["remote_size"]))
            if r["lag"] is not None:
                lag.add_metric(node, int(r["lag"]))
            last = parse_time(r["last_success_at"])
            if last is not None:
                success.add_metric(node, last.timestamp())
                lag_s.add_metric(node, max((now - last).total_seconds(), 0.0))
            tried = parse_time(r["last_attempt_at"])
            if tried is not None:
                attempt.add_metric(node, tried.timestamp())
        yield from (state, stale, applied, remote, lag, lag_s, success, attempt, rejected)


class SearchTimer:
    """ASGI middleware: the latency of every ``/v1/search`` request into a histogram."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/search":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.histogram.observe(time.perf_counter() - start)


def database_ready(ctx: Context) -> str | None:
    """None when the database answers (the driver's first error line otherwise)."""
    try:
        with ctx.engine.connect() as conn:
            conn.execute(select(own_state.c.size)).scalar()
    except DBAPIError as exc:
        first = str(exc.orig or exc).strip().splitlines()
        return f"database unreachable: {first[0] if first else type(exc).__name__}"
    return None


def index_ready(ctx: Context) -> str | None:
    return None if ctx.cube.loaded else "the search index is not loaded yet"


def install(app: FastAPI, ctx: Context) -> None:
    """``/healthz``, ``/readyz`` (database, search index) and ``/metrics`` on the catalogue."""
    health.install(
        app, {"database": lambda: database_ready(ctx), "search_index": lambda: index_ready(ctx)}
    )
    registry = metrics.new_registry()
    registry.register(CatalogueCollector(ctx))
    histogram = Histogram(
        "biobank_catalogue_search_duration_seconds",
        "Time to answer GET /v1/search, from request to the last byte sent.",
        registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    )
    app.add_middleware(SearchTimer, histogram=histogram)
    metrics.install(app, registry)
