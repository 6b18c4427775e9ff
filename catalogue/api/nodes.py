"""Node status and the per-node mirror of node logs (origins hold '/': {origin:path})."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response

from catalogue import mirror
from catalogue.api.deps import Conn, Ctx
from catalogue.harvest.keys import node_keys
from catalogue.status import list_status, node_detail
from service.http import IMMUTABLE, MAX_INDEX, SHORT

__all__ = ["router"]

router = APIRouter()


@router.get("/v1/nodes")
def nodes_list(conn: Conn, ctx: Ctx) -> dict[str, Any]:
    return {"nodes": list_status(conn, ctx.settings.stale_after)}


@router.get("/v1/nodes/{origin:path}/log/checkpoint", response_class=PlainTextResponse)
def node_checkpoint(origin: str, conn: Conn) -> PlainTextResponse:
    return PlainTextResponse(mirror.node_checkpoint(conn, origin), headers={"Cache-Control": SHORT})


@router.get("/v1/nodes/{origin:path}/log/entries")
def node_entries(
    origin: str,
    conn: Conn,
    start: int = Query(0, ge=0, le=MAX_INDEX),
    limit: int = Query(1000, ge=1, le=1000),
) -> Response:
    body = mirror.node_entries(conn, origin, start, limit)
    # a page followed by more leaves never changes (docs/api.md "Caching"); the body is
    # orjson's, so the last page ends exactly so
    cache = "no-cache" if body.endswith(b',"next":null}') else IMMUTABLE
    return Response(body, media_type="application/json", headers={"Cache-Control": cache})


@router.get("/v1/nodes/{origin:path}/log/proof/inclusion")
def node_inclusion(
    origin: str,
    conn: Conn,
    request: Request,
    index: int = Query(ge=0, le=MAX_INDEX),
    size: int = Query(ge=1, le=MAX_INDEX),
) -> dict[str, Any]:
    return mirror.node_proof(conn, origin, "inclusion", index, size, request.app.state.proofs)


@router.get("/v1/nodes/{origin:path}/log/proof/consistency")
def node_consistency(
    origin: str,
    conn: Conn,
    request: Request,
    from_: int = Query(alias="from", ge=1, le=MAX_INDEX),
    to: int = Query(ge=1, le=MAX_INDEX),
) -> dict[str, Any]:
    return mirror.node_proof(conn, origin, "consistency", from_, to, request.app.state.proofs)


@router.get("/v1/nodes/{origin:path}/rejections")
def node_rejections(origin: str, conn: Conn, ctx: Ctx) -> dict[str, Any]:
    detail = node_detail(conn, origin, ctx.settings.stale_after)
    return {"origin": origin, "rejections": detail["rejection_report"]}


@router.get("/v1/nodes/{origin:path}")
def node_status(origin: str, conn: Conn, ctx: Ctx) -> dict[str, Any]:
    detail = node_detail(conn, origin, ctx.settings.stale_after)
    detail.update(node_keys(conn, origin))  # verifier_key: the key in force now
    return detail
