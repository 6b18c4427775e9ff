"""The catalogue's identity, its own signed log, and the code lists."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from catalogue import mirror
from catalogue.api.deps import Conn, Ctx
from catalogue.errors import UnknownNode
from protocol.codelists import CodeLists
from protocol.errors import ConfigError

router = APIRouter()


@router.get("/.well-known/biobank-catalogue")
def well_known(ctx: Ctx) -> dict[str, str]:
    return {"origin": ctx.key.origin, "verifier_key": ctx.key.verifier_key}


@router.get("/v1/log/checkpoint", response_class=PlainTextResponse)
def checkpoint(conn: Conn) -> str:
    return mirror.own_checkpoint(conn)


@router.get("/v1/log/entries")
def entries(conn: Conn, start: int = Query(0, ge=0),
            limit: int = Query(1000, ge=1, le=1000)) -> dict[str, Any]:
    return mirror.own_entries(conn, start, limit)


@router.get("/v1/log/proof/inclusion")
def inclusion(conn: Conn, index: int = Query(ge=0), size: int = Query(ge=1)) -> dict[str, Any]:
    return mirror.inclusion(mirror.own_hashes(conn, size), index, size)


@router.get("/v1/log/proof/consistency")
def consistency(conn: Conn, from_: int = Query(alias="from", ge=1),
                to: int = Query(ge=1)) -> dict[str, Any]:
    return mirror.consistency(mirror.own_hashes(conn, to), from_, to)


@router.get("/v1/codelists/{name}")
def codelist(name: str) -> dict[str, Any]:
    try:
        cl = CodeLists.default().get(name)
    except ConfigError as exc:
        raise UnknownNode(f"no code list named {name!r}") from exc
    return {"name": cl.name, "version": cl.version, "source": cl.source, "licence": cl.licence,
            "codes": [{"code": c.code, "en": c.en, "zh": c.zh, "parent": c.parent}
                      for c in cl.entries]}
