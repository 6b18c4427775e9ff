"""Liveness and readiness routes shared by the node and the catalogue: ``/healthz``, ``/readyz``.

``/healthz`` answers 200 while the process serves requests; ``/readyz`` runs the app's checks
and answers 503 problem+json naming every check that is not ready (``"not_ready"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from service.problems import problem

# a check returns None when ready, else one line saying what is not ready
Check = Callable[[], str | None]


def install(app: FastAPI, checks: dict[str, Check]) -> None:
    """Add ``/healthz`` and ``/readyz`` (each check named in the 503 answer) to ``app``."""

    @app.get("/healthz", tags=["health"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Ready to serve: every check passes (503 problem+json names those that fail)",
        response_model=None,
    )
    def readyz() -> JSONResponse | dict[str, Any]:
        failing = []
        for name, check in checks.items():
            try:
                reason = check()
            except Exception as exc:  # a check that raises is a check that failed
                reason = f"{type(exc).__name__}: {exc}"
            if reason is not None:
                failing.append({"name": name, "reason": reason})
        if failing:
            return problem(
                503,
                "not ready: " + "; ".join(f"{f['name']}: {f['reason']}" for f in failing),
                title="Not ready",
                instance="/readyz",
                not_ready=failing,
            )
        return {"status": "ready", "checks": sorted(checks)}


__all__ = ["Check", "install"]
