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


def install(app: FastAPI) -> None:
    """Map domain errors (a verification failure: 500), bad requests (400) and HTTP errors
    to problem+json."""
    problems.install(
        app, errors=STATUSES, fallback=(500, "Verification failed"), invalid_status=400
    )
