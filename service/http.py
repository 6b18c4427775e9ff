"""The HTTP conventions the node and the catalogue share beyond problem+json (docs/api.md).

``app_options()`` goes into ``FastAPI(...)``: no trailing-slash redirects (they echoed the
``Host`` header), no CDN-backed docs pages, and the dependency that refuses a repeated query
parameter unless the route declares it repeatable. ``install(app, ...)`` then adds the
response headers (``nosniff``, a ``Cache-Control`` default), the CORS decision for the public
read API, ``/docs`` served from packaged Swagger UI assets under a CSP, and the OpenAPI
post-processing that documents every error status as problem+json.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.routing import APIRoute
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.problems import PROBLEM, problem

# The largest log index or tree size a request may name: start + limit still fits the
# 64-bit integers of SQLite and PostgreSQL (a larger one is a 400 naming the parameter).
MAX_INDEX = 2**62

# Cache-Control values (docs/api.md "Caching")
NO_STORE = "no-store"  # errors and the admin API
REVALIDATE = "no-cache"  # the default: may be stored, revalidated before each use
SHORT = "public, max-age=10"  # checkpoints and search: they change when a log grows
# a page of log entries followed by more leaves: its leaves never change (a day, not a
# year, so that content erased after a consent withdrawal leaves shared caches within a day)
IMMUTABLE = "public, max-age=86400, immutable"

DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} API</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/init.js"></script></body></html>
"""
_DOCS_ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript"}
_INIT_JS = Path(__file__).resolve().parent / "static" / "docs-init.js"


def app_options(*, repeats_checked: Collection[str] = ()) -> dict[str, Any]:
    """Keyword arguments for ``FastAPI(...)`` (before any router is included).

    ``repeats_checked``: paths whose route refuses repeated parameters itself, with the same
    400 and reason, among its other problems (``/v1/search`` names them all at once).
    """
    skip = frozenset(repeats_checked)

    # async: FastAPI runs a plain `def` dependency in its thread pool, a hop to a worker
    # thread and back on every request of both programs (~0.04 ms of CPU) for a dict look-up
    async def repeated(request: Request) -> None:
        if request.url.path not in skip:
            refuse_repeated(request)

    return {
        "docs_url": None,
        "redoc_url": None,
        "redirect_slashes": False,
        "dependencies": [Depends(repeated)],
    }


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (scheme case-insensitive, RFC 7235);
    None for a missing header, another scheme, a bare token or an empty one."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        return None
    return token


def _is_list(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (list, set, frozenset, tuple):
        return True
    return origin in (Union, UnionType) and any(_is_list(a) for a in get_args(annotation))


def _query_fields(dependant: Dependant) -> list[Any]:
    """The query parameters of a route's dependant and of all its sub-dependencies."""
    out = list(dependant.query_params)
    for sub in dependant.dependencies:
        out.extend(_query_fields(sub))
    return out


_SINGLE = "biobank_single_valued_query"  # attribute caching the names on the route


def _single_valued(route: APIRoute) -> frozenset[str]:
    """The query parameters ``route`` declares that are not lists."""
    names: frozenset[str] | None = getattr(route, _SINGLE, None)
    if names is None:
        fields = _query_fields(route.dependant)
        names = frozenset(f.alias for f in fields if not _is_list(f.field_info.annotation))
        setattr(route, _SINGLE, names)
    return names


def refuse_repeated(request: Request) -> None:
    """A declared single-valued query parameter given twice: 400 naming it (the same answer
    on every route of both programs, and on /v1/search)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    single = _single_valued(route)
    query = request.query_params
    repeated = sorted(
        name for name in set(query.keys()) if name in single and len(query.getlist(name)) > 1
    )
    if repeated:
        raise RequestValidationError(
            [
                {"loc": ("query", name), "msg": "given more than once", "type": "repeated"}
                for name in repeated
            ]
        )


class _Headers:
    """``X-Content-Type-Options: nosniff`` on every response and a ``Cache-Control`` on every
    response whose route did not set one (no-store for errors and the admin API)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        admin = str(scope.get("path", "")).startswith("/v1/admin")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                if admin or int(message["status"]) >= 400:
                    headers["Cache-Control"] = NO_STORE
                elif "cache-control" not in headers:
                    headers["Cache-Control"] = REVALIDATE
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(
    app: FastAPI,
    *,
    errors: Mapping[str, Sequence[int]] | None = None,
    foreign: Mapping[str, str] | None = None,
) -> None:
    """Headers, CORS, ``/docs`` and the OpenAPI error documentation for ``app``.

    ``errors`` adds documented error statuses: keys ``"GET /v1/log/checkpoint"`` (one
    operation), ``"* /v1/admin/"`` (a method and a path prefix, ``*`` for every method).
    ``foreign`` maps a path prefix to the media type of the error format a standard imposes
    there (Beacon v2), documented beside problem+json.
    """
    # CORS: the read API is public, unauthenticated and cookie-free, so any origin may read it
    # from a browser; only GET/HEAD, no credentials, no request headers beyond the simple ones
    # (so no cross-origin page can send an Authorization header to the admin API).
    app.add_middleware(
        _Cors,
        allow_origins=["*"],
        allow_methods=["GET", "HEAD"],
        allow_headers=[],
        allow_credentials=False,
        max_age=86400,
    )
    app.add_middleware(_Headers)
    _install_docs(app)
    _install_openapi(app, errors or {}, foreign or {})


class _Cors(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered 400 problem+json as every other
    bad request is (Starlette answers it in plain text)."""

    def preflight_response(self, request_headers: Any) -> Any:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        keep = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in ("content-length", "content-type")
        }
        return problem(response.status_code, bytes(response.body).decode(), headers=keep)


def _install_docs(app: FastAPI) -> None:
    assets = resources.files("fastapi_offline") / "static"
    page = _DOCS_PAGE.format(title=re.sub(r"[<>&\"']", "", app.title))
    headers = {"Content-Security-Policy": DOCS_CSP, "Referrer-Policy": "same-origin"}

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)

    @app.get("/docs/assets/{name}", include_in_schema=False)
    def docs_asset(name: str) -> FileResponse:
        if name == "init.js":
            return FileResponse(_INIT_JS, media_type="text/javascript", headers=headers)
        if name not in _DOCS_ASSETS:
            raise HTTPException(404, f"no docs asset named {name!r}")
        path = Path(str(assets / name))
        return FileResponse(path, media_type=_DOCS_ASSETS[name], headers=headers)


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "invalid_params": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "reason"],
                "properties": {"name": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
        "problems": {"type": "array"},
    },
}


def _problem_response(
    status: int, description: str | None = None, other: str | None = None
) -> dict[str, Any]:
    content: dict[str, Any] = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    if other:
        content[other] = {"schema": {"type": "object"}}
    return {"description": description or HTTPStatus(status).phrase, "content": content}


def _extra(errors: Mapping[str, Sequence[int]], method: str, path: str) -> set[int]:
    out: set[int] = set()
    for key, statuses in errors.items():
        m, _, p = key.partition(" ")
        if m not in ("*", method):
            continue
        if p == path or (p.endswith("/") and path.startswith(p)):
            out.update(statuses)
    return out


def _install_openapi(
    app: FastAPI, errors: Mapping[str, Sequence[int]], foreign: Mapping[str, str]
) -> None:
    """``/openapi.json`` as the servers answer: 400 problem+json (never 422) on operations
    with parameters or a body, 404 where a path names something, the ``errors`` given."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        schemas["Problem"] = PROBLEM_SCHEMA
        for path, operations in schema.get("paths", {}).items():
            for method, op in operations.items():
                responses = op.setdefault("responses", {})
                responses.pop("422", None)
                statuses = _extra(errors, method.upper(), path)
                if op.get("parameters") or op.get("requestBody"):
                    statuses.add(400)
                if "{" in path:
                    statuses.add(404)
                other = next((m for p, m in foreign.items() if path.startswith(p)), None)
                for status in sorted(statuses):
                    old = responses.get(str(status), {})
                    responses[str(status)] = _problem_response(
                        status, old.get("description"), other
                    )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = [
    "IMMUTABLE",
    "MAX_INDEX",
    "NO_STORE",
    "REVALIDATE",
    "SHORT",
    "app_options",
    "bearer_token",
    "install",
    "refuse_repeated",
]
