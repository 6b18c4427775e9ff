"""The catalogue's identity, its own signed log, and the code lists."""

from __future__ import annotations

import functools
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, Response

from catalogue import mirror
from catalogue.api.deps import Conn, Ctx
from protocol.codelists import CodeLists
from protocol.errors import ConfigError
from service.http import IMMUTABLE, MAX_INDEX, SHORT

__all__ = ["router"]

router = APIRouter()


@router.get("/.well-known/biobank-catalogue")
def well_known(ctx: Ctx) -> dict[str, str]:
    found = {"origin": ctx.key.origin, "verifier_key": ctx.key.verifier_key}
    if ctx.settings.notify:  # nodes POST new checkpoints here (docs/freshness.md)
        found["notify"] = "/v1/notify"
    return found


@router.get("/v1/log/checkpoint", response_class=PlainTextResponse)
def checkpoint(conn: Conn) -> PlainTextResponse:
    return PlainTextResponse(mirror.own_checkpoint(conn), headers={"Cache-Control": SHORT})


@router.get("/v1/log/entries")
def entries(
    conn: Conn,
    start: int = Query(0, ge=0, le=MAX_INDEX),
    limit: int = Query(1000, ge=1, le=1000),
) -> Response:
    page = mirror.own_entries(conn, start, limit)
    # a page followed by more leaves never changes (docs/api.md "Caching")
    cache = IMMUTABLE if page["next"] is not None else "no-cache"
    return Response(
        orjson.dumps(page), media_type="application/json", headers={"Cache-Control": cache}
    )


@router.get("/v1/log/proof/inclusion")
def inclusion(
    conn: Conn,
    request: Request,
    index: int = Query(ge=0, le=MAX_INDEX),
    size: int = Query(ge=1, le=MAX_INDEX),
) -> dict[str, Any]:
    return mirror.own_proof(conn, "inclusion", index, size, request.app.state.proofs)


@router.get("/v1/log/proof/consistency")
def consistency(
    conn: Conn,
    request: Request,
    from_: int = Query(alias="from", ge=1, le=MAX_INDEX),
    to: int = Query(ge=1, le=MAX_INDEX),
) -> dict[str, Any]:
    return mirror.own_proof(conn, "consistency", from_, to, request.app.state.proofs)


@functools.lru_cache(maxsize=64)
def _codelist_body(name: str) -> bytes:
    """A shipped code list, encoded once: the lists change only with a new release."""
    cl = CodeLists.default().get(name)
    return orjson.dumps(
        {
            "name": cl.name,
            "version": cl.version,
            "source": cl.source,
            "licence": cl.licence,
            "codes": [
                {"code": c.code, "en": c.en, "zh": c.zh, "parent": c.parent} for c in cl.entries
            ],
        }
    )


@router.get("/v1/codelists/{name}")
def codelist(name: str) -> Response:
    try:
        body = _codelist_body(name)
    except ConfigError as exc:
        raise HTTPException(status_code=404, detail=f"no code list named {name!r}") from exc
    # shipped with the release: let browsers and proxies keep them for a day
    return Response(
        body, media_type="application/json", headers={"Cache-Control": "public, max-age=86400"}
    )
