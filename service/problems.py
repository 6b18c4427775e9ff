"""RFC 9457 ``application/problem+json`` for the node's and the catalogue's HTTP APIs.

``install(app, ...)`` maps domain errors (``protocol.errors`` and each program's own),
request validation errors and HTTP errors to one body shape::

    {"type": "about:blank", "title": ..., "status": ..., "detail": ..., "instance": path,
     "invalid_params": [{"name", "reason"}] (bad parameters), "problems": [...] (records)}
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from protocol.errors import BiobankError, ValidationFailed

PROBLEM = "application/problem+json"

# (error class, HTTP status, title): the first class the error is an instance of wins
ErrorStatuses = Sequence[tuple[type[BiobankError], int, str]]


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response; ``title`` defaults to the status's reason phrase."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def invalid_params(exc: RequestValidationError) -> list[dict[str, str]]:
    """One ``{"name", "reason"}`` per invalid request field (``limit``, ``key.email``)."""
    return [
        {
            "name": ".".join(str(p) for p in err.get("loc", ())[1:]) or "?",
            "reason": str(err.get("msg", "invalid")),
        }
        for err in exc.errors()
    ]


def invalid(name: str, reason: str) -> RequestValidationError:
    """A query parameter refused by a route's own check: raise it for the same 400 with
    ``invalid_params`` naming the parameter as a declared constraint gives."""
    return RequestValidationError([{"loc": ("query", name), "msg": reason, "type": "value"}])


def allowed_methods(request: Request) -> list[str]:
    """The methods /openapi.json lists at the request's path (for ``Allow``): a parameter
    matches one path segment, or several when no one-segment match exists (origins hold '/')."""
    paths = request.app.openapi().get("paths", {})
    path = request.url.path
    for segment in (r"[^/]+", r".+"):
        methods: set[str] = set()
        for template, operations in paths.items():
            pattern = re.sub(r"\\\{[^}]*\\\}", segment, re.escape(template))
            if re.fullmatch(pattern, path):
                methods.update(m.upper() for m in operations)
        if methods:
            return sorted(methods)
    return ["GET"]  # the web page's routes and /docs, not in the document


def install(
    app: FastAPI,
    *,
    errors: ErrorStatuses,
    fallback: tuple[int, str] = (500, "Internal Server Error"),
    invalid_status: int = 400,
) -> None:
    """Answer every error of ``app`` as problem+json.

    ``errors`` maps domain errors to a status and title (others get ``fallback``); a request
    whose parameters or body do not validate gets ``invalid_status`` with ``invalid_params``.
    """

    async def on_domain(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BiobankError)
        extra: dict[str, Any] = {}
        if isinstance(getattr(exc, "invalid_params", None), list):
            extra["invalid_params"] = exc.invalid_params  # type: ignore[attr-defined]
        if isinstance(exc, ValidationFailed):
            extra["problems"] = [p.to_json() for p in exc.problems]
        status, title = next(((s, t) for cls, s, t in errors if isinstance(exc, cls)), fallback)
        return problem(status, str(exc), title=title, instance=request.url.path, **extra)

    async def on_invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        params = invalid_params(exc)
        return problem(
            invalid_status,
            "; ".join(f"{p['name']}: {p['reason']}" for p in params),
            title="Invalid request",
            instance=request.url.path,
            invalid_params=params,
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method some route serves at this path, not one
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem(exc.status_code, str(exc.detail), instance=request.url.path, headers=headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # a bug, not bad input: the same body shape, no internals (the log has the traceback)
        return problem(500, "internal error", instance=request.url.path)

    app.add_exception_handler(Exception, on_unexpected)
    app.add_exception_handler(BiobankError, on_domain)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_invalid)


__all__ = [
    "PROBLEM",
    "ErrorStatuses",
    "allowed_methods",
    "install",
    "invalid",
    "invalid_params",
    "problem",
]
