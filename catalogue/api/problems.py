"""The catalogue's domain errors as HTTP statuses (the problem+json shape: service/problems.py)."""

from __future__ import annotations

from fastapi import FastAPI

from catalogue.errors import (
    EnrolmentError,
    FetchError,
    FilterError,
    NodeHalted,
    NotificationRefused,
    RevocationError,
    UnknownNode,
)
from protocol.errors import InputError, ValidationFailed
from service import problems
from service.problems import ErrorStatuses

STATUSES: ErrorStatuses = [
    (UnknownNode, 404, "Unknown node"),
    (FilterError, 400, "Invalid search parameters"),
    (NotificationRefused, 403, "Notification refused"),
    (NodeHalted, 409, "Node halted"),
    (RevocationError, 409, "Revocation refused"),
    (EnrolmentError, 409, "Enrolment refused"),
    (ValidationFailed, 400, "Validation failed"),
    (InputError, 400, "Bad request"),
    (FetchError, 502, "Node unreachable"),
]


# error statuses /openapi.json documents beyond 400 (parameters or a body) and 404 (a path
# naming something): service.http.install; keys "METHOD path", a path ending "/" a prefix
DOCUMENTED: dict[str, tuple[int, ...]] = {
    "GET /v1/log/checkpoint": (404,),
    "GET /readyz": (503,),
    # the admin API: no or a wrong token, disabled (no CATALOGUE_ADMIN_TOKEN), body too large
    "* /v1/admin/": (400, 401, 413, 503),
    "POST /v1/admin/nodes": (409, 502),
    "DELETE /v1/admin/nodes/{origin}": (409,),
    "POST /v1/admin/nodes/{origin}/revoke": (409,),
    # Beacon v2 answers its own errors in the Beacon error format (FOREIGN)
    "* /beacon/v2/": (400,),
    "GET /beacon/v2/biosamples": (403,),
    "POST /beacon/v2/biosamples": (403,),
    "GET /beacon/v2/individuals": (403,),
    "POST /beacon/v2/individuals": (403,),
    "GET /v1/dcat": (406,),
    "POST /v1/negotiator/requests": (502,),
    # a node's notification (docs/freshness.md): every refusal is problem+json
    "POST /v1/notify": (400, 403, 404, 409, 413, 429, 503),
}
# paths whose errors have a format of their own besides problem+json (request validation)
FOREIGN = {"/beacon/v2": "application/json"}


def install(app: FastAPI) -> None:
    """Map domain errors (a verification failure: 500), bad requests (400) and HTTP errors
    to problem+json."""
    problems.install(
        app, errors=STATUSES, fallback=(500, "Verification failed"), invalid_status=400
    )
