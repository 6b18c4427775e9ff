"""GET /v1/dcat: the catalogue as DCAT-AP 3 / HealthDCAT-AP, Turtle or JSON-LD by the
Accept header (or `?format=ttl|jsonld`); docs/dcat.md."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from catalogue.api.deps import Conn, Ctx
from catalogue.dcat import MEDIA_TYPES, catalogue_graph, choose, serialise

__all__ = ["router"]

router = APIRouter()


@router.get(
    "/v1/dcat",
    responses={
        200: {"content": {m: {} for m in MEDIA_TYPES}, "description": "the DCAT-AP graph"},
        406: {"description": "problem+json: none of the offered media types is acceptable"},
    },
)
def dcat(
    request: Request,
    conn: Conn,
    ctx: Ctx,
    format: str | None = Query(None, description="ttl or jsonld; overrides Accept"),
) -> Response:
    media = choose(request.headers.get("accept"), format)
    if media is None:
        raise HTTPException(
            status_code=406,
            detail=f"offered: {', '.join(MEDIA_TYPES)} (Accept header, or ?format=ttl|jsonld)",
        )
    base = str(request.base_url).rstrip("/")
    body = serialise(catalogue_graph(conn, ctx, base), media)
    return Response(body, media_type=media, headers={"Vary": "Accept"})
