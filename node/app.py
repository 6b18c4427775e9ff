"""The node HTTP app: ``create_app(settings)`` serves the descriptor and the signed log."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from node import store
from node.api import descriptor, log
from node.home import Home
from node.publish import ensure_checkpoint
from node.settings import NodeSettings
from protocol.errors import BiobankError

PROBLEM = "application/problem+json"


def _problem(status: int, detail: str, request: Request, **extra: object) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def create_app(settings: NodeSettings) -> FastAPI:
    """Open the node home named by ``settings`` and build the app (no import-time state)."""
    home = Home.open(settings.home)
    conn = store.connect(home.db_path)
    try:
        store.create_schema(conn)
        ensure_checkpoint(conn, home.config.origin, home.signer)
    finally:
        conn.close()
    app = FastAPI(
        title=f"biobank-node {home.config.origin}",
        description="A biobank node: signed append-only log of metadata records.",
    )
    app.state.home = home
    app.include_router(descriptor.router)
    app.include_router(log.router)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _problem(exc.status_code, str(exc.detail), request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        params = [
            {"name": ".".join(str(p) for p in e["loc"][1:]), "reason": e["msg"]}
            for e in exc.errors()
        ]
        return _problem(422, "invalid request parameters", request, invalid_params=params)

    @app.exception_handler(BiobankError)
    async def domain_error(request: Request, exc: BiobankError) -> JSONResponse:
        return _problem(400, exc.message, request)

    return app
