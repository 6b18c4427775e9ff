"""The node HTTP app: ``create_app(settings)`` serves the descriptor and the signed log."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from node import metrics, notify, store
from node.api import descriptor, log, service_info
from node.api import notify as notify_api
from node.home import Home
from node.policy import Policy
from node.publish import ensure_checkpoint
from node.settings import NodeSettings
from protocol.errors import BiobankError
from protocol.tls import client_tls
from service import http, problems
from service.limits import BodyGuard, ConcurrencyLimit
from service.proofs import ProofCache

# error statuses beyond 400 (parameters) that /openapi.json documents (service.http.install)
ERRORS = {
    "GET /v1/log/checkpoint": (404, 503),
    "GET /v1/log/entries": (404, 503),
    "GET /v1/log/proof/inclusion": (503,),
    "GET /v1/log/proof/consistency": (503,),
    "GET /readyz": (503,),
    "POST /v1/notify/targets": (403, 409, 413, 429),
}


def create_app(settings: NodeSettings) -> FastAPI:
    """Open the node home named by ``settings`` and build the app (no import-time state)."""
    home = Home.open(settings.home)
    tls = client_tls(settings.ca_bundle, setting="NODE_CA_BUNDLE")  # a bad file stops the start
    Policy.load(home.policy_path)  # a wrong policy.toml stops the start, not each request
    conn = store.connect(home.db_path)
    try:
        store.create_schema(conn)
        ensure_checkpoint(conn, home.config.origin, home.signer)
        store.extend_subtrees(conn, store.log_size(conn))  # a log stored before they were kept
    finally:
        conn.close()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # push, then pull: new checkpoints go to the catalogues in notify_targets (node.notify)
        sender = notify.Sender(home.db_path, poll=settings.notify_poll, verify=tls)
        task = asyncio.create_task(sender.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title=f"biobank-node {home.config.origin}",
        description="A biobank node: signed append-only log of metadata records.",
        lifespan=lifespan,
        **http.app_options(),
    )
    app.state.home = home
    app.state.proofs = ProofCache()  # the newest proofs, by the root they lead to
    app.state.accept_registrations = settings.accept_registrations
    app.state.registration_wait = settings.registration_wait
    app.state.tls = tls
    app.include_router(descriptor.router)
    app.include_router(log.router)
    app.include_router(service_info.router)
    app.include_router(notify_api.router)
    metrics.install(app, home)  # /healthz, /readyz, /metrics

    # bad parameters: 400 problem+json naming them, as the catalogue answers (docs/api.md)
    problems.install(app, errors=[(BiobankError, 400, "Bad Request")], invalid_status=400)
    http.install(app, errors=ERRORS)
    # proofs and log pages: a few at a time; every body capped before it is read
    app.add_middleware(
        ConcurrencyLimit,
        patterns=[r"/v1/log/proof/.*", r"/v1/log/entries"],
        slots=settings.proof_concurrency,
        wait=30.0,
        setting="NODE_PROOF_CONCURRENCY",
    )
    app.add_middleware(BodyGuard, max_body=settings.max_body, setting="NODE_MAX_BODY")
    return app
