"""The catalogue's identity, its own signed log, and the code lists."""

from __future__ import annotations

import functools
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Query
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
    return {"origin": ctx.key.origin, "verifier_key": ctx.key.verifier_key}


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
    conn: Conn, index: int = Query(ge=0, le=MAX_INDEX), size: int = Query(ge=1, le=MAX_INDEX)
) -> dict[str, Any]:
    return mirror.inclusion(mirror.own_hashes(conn, size), index, size)


@router.get("/v1/log/proof/consistency")
def consistency(
    conn: Conn,
    from_: int = Query(alias="from", ge=1, le=MAX_INDEX),
    to: int = Query(ge=1, le=MAX_INDEX),
) -> dict[str, Any]:
    return mirror.consistency(mirror.own_hashes(conn, to), from_, to)


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
