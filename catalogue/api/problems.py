"""RFC 9457 problem+json responses for every error the catalogue raises."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from catalogue.errors import (
    EnrolmentError,
    FetchError,
    FilterError,
    RevocationError,
    UnknownNode,
)
from protocol.errors import BiobankError, InputError, ValidationFailed

_STATUS: list[tuple[type[BiobankError], int, str]] = [
    (UnknownNode, 404, "Unknown node"),
    (FilterError, 400, "Invalid search parameters"),
    (RevocationError, 409, "Revocation refused"),
    (EnrolmentError, 409, "Enrolment refused"),
    (ValidationFailed, 400, "Validation failed"),
    (InputError, 400, "Bad request"),
    (FetchError, 502, "Node unreachable"),
]


_TITLES = {401: "Unauthorized", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 503: "Service unavailable"}


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def install(app: FastAPI) -> None:
    """Map domain errors and request validation errors to problem+json."""

    async def on_domain(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BiobankError)
        extra: dict[str, Any] = {}
        if isinstance(exc, FilterError):
            extra["invalid_params"] = exc.invalid_params
        if isinstance(exc, ValidationFailed):
            extra["problems"] = [p.to_json() for p in exc.problems]
        for cls, status, title in _STATUS:
            if isinstance(exc, cls):
                return problem(status, title, str(exc), **extra)
        return problem(500, "Verification failed", str(exc), **extra)

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        params = [{"name": str(err["loc"][-1]) if err.get("loc") else "?",
                   "reason": str(err.get("msg", "invalid"))} for err in exc.errors()]
        return problem(400, "Invalid request", "; ".join(f"{p['name']}: {p['reason']}"
                                                         for p in params),
                       invalid_params=params)

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        response = problem(exc.status_code, _TITLES.get(exc.status_code, "Error"),
                           str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    app.add_exception_handler(BiobankError, on_domain)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
