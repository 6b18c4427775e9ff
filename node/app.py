"""The node HTTP app: ``create_app(settings)`` serves the descriptor and the signed log."""

from __future__ import annotations

from fastapi import FastAPI

from node import metrics, store
from node.api import descriptor, log, service_info
from node.home import Home
from node.policy import Policy
from node.publish import ensure_checkpoint
from node.settings import NodeSettings
from protocol.errors import BiobankError
from service import http, problems

# error statuses beyond 400 (parameters) that /openapi.json documents (service.http.install)
ERRORS = {
    "GET /v1/log/checkpoint": (404, 503),
    "GET /v1/log/entries": (404,),
    "GET /readyz": (503,),
}


def create_app(settings: NodeSettings) -> FastAPI:
    """Open the node home named by ``settings`` and build the app (no import-time state)."""
    home = Home.open(settings.home)
    Policy.load(home.policy_path)  # a wrong policy.toml stops the start, not each request
    conn = store.connect(home.db_path)
    try:
        store.create_schema(conn)
        ensure_checkpoint(conn, home.config.origin, home.signer)
    finally:
        conn.close()
    app = FastAPI(
        title=f"biobank-node {home.config.origin}",
        description="A biobank node: signed append-only log of metadata records.",
        **http.app_options(),
    )
    app.state.home = home
    app.include_router(descriptor.router)
    app.include_router(log.router)
    app.include_router(service_info.router)
    metrics.install(app, home)  # /healthz, /readyz, /metrics

    # bad parameters: 400 problem+json naming them, as the catalogue answers (docs/api.md)
    problems.install(app, errors=[(BiobankError, 400, "Bad Request")], invalid_status=400)
    http.install(app, errors=ERRORS)
    return app
