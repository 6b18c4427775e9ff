"""``GET /v1/version``: the catalogue's index version, for pages that tell researchers of changes.

The version is the size of the catalogue's own log: every accepted harvest step, enrolment,
retirement and revocation appends to it, so it moves whenever what a search may answer can
have changed. A few bytes, never cached; the web page polls it every CATALOGUE_WEB_POLL
seconds and compares the results again only when it moved (docs/freshness.md).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import select

from catalogue.api.deps import Conn, Ctx
from catalogue.models import own_state

__all__ = ["router"]

router = APIRouter(tags=["search"])


@router.get("/v1/version", summary="The index version: it moves when data may have changed")
def version(conn: Conn, ctx: Ctx) -> JSONResponse:
    size = int(conn.execute(select(own_state.c.size)).scalar() or 0)
    return JSONResponse(
        {"version": size, "poll_seconds": ctx.settings.web_poll},
        headers={"Cache-Control": "no-store", "ETag": f'"{size}"'},
    )
