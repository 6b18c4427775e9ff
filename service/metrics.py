"""Prometheus metrics shared plumbing: a per-app registry served at ``/metrics``.

Each app gets its own ``CollectorRegistry`` (never the process-wide default), so that several
apps in one process (tests, the demo) do not collide; values the status API shows are read
from the database at scrape time by the program's own collectors.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector


def new_registry() -> CollectorRegistry:
    """A registry of this app's own, with the standard process metrics (CPU, memory, fds)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


def install(app: FastAPI, registry: CollectorRegistry) -> None:
    """Serve ``registry`` in the Prometheus text format at ``GET /metrics``."""

    @app.get(
        "/metrics",
        tags=["metrics"],
        summary="Prometheus metrics (text format)",
        response_class=PlainTextResponse,
    )
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.state.metrics = registry


__all__ = ["install", "new_registry"]
