"""The catalogue's request limits: admin token checked before any body is read, bodies
capped (CATALOGUE_MAX_ADMIN_BODY, CATALOGUE_MAX_BODY), proof and log-page requests at most
CATALOGUE_PROOF_CONCURRENCY at a time (service/limits.py)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request

from catalogue.api.admin import require_token
from catalogue.notify import MAX_NOTE
from catalogue.settings import Settings
from service.limits import BodyGuard, ConcurrencyLimit, Guard

__all__ = ["ADMIN_PREFIX", "EXPENSIVE", "NOTIFY_SLOTS", "install"]

ADMIN_PREFIX = "/v1/admin"
#: the routes whose cost grows with a log: proofs and entry pages, own log and mirrors
EXPENSIVE = [
    r"/v1/log/proof/.*",
    r"/v1/log/entries",
    r"/v1/nodes/.+/log/proof/.*",
    r"/v1/nodes/.+/log/entries",
]
#: notifications checked at once (each reads the database and verifies a signature); more
#: wait up to 5 s, then 503 with Retry-After: a flood of forged ones cannot take every thread
NOTIFY_SLOTS = 4


def _authorise(request: Request) -> None:
    require_token(request.app.state.ctx, request.headers.get("authorization"))


def install(app: FastAPI, settings: Settings, *, admin: bool = True) -> None:
    """Add the limits to ``app``; ``admin``: it serves /v1/admin (token before body)."""
    app.add_middleware(
        ConcurrencyLimit,
        patterns=EXPENSIVE,
        slots=settings.proof_concurrency,
        wait=30.0,
        setting="CATALOGUE_PROOF_CONCURRENCY",
    )
    app.add_middleware(
        ConcurrencyLimit,
        patterns=[r"/v1/notify"],
        slots=NOTIFY_SLOTS,
        wait=5.0,
        what="notifications",
    )
    guard = Guard(
        ADMIN_PREFIX, settings.max_admin_body, _authorise, setting="CATALOGUE_MAX_ADMIN_BODY"
    )
    note = Guard("/v1/notify", MAX_NOTE)  # a checkpoint note: 16 KiB, refused unread beyond
    app.add_middleware(
        BodyGuard,
        max_body=settings.max_body,
        setting="CATALOGUE_MAX_BODY",
        guards=[guard, note] if admin else [note],
    )
