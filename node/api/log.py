"""The log read API: checkpoint, entry pages, inclusion and consistency proofs."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, Response

from node import highwater, store
from node.api.deps import ConnDep, HomeDep
from protocol.merkle import consistency_proof_from, inclusion_proof_from
from service.http import IMMUTABLE, MAX_INDEX, SHORT
from service.problems import invalid
from service.proofs import ProofCache

router = APIRouter(prefix="/v1/log", tags=["log"])
PAGE = 1000


@router.get(
    "/checkpoint",
    response_class=PlainTextResponse,
    summary="The latest signed checkpoint (C2SP tlog-checkpoint note)",
)
def checkpoint(conn: ConnDep, home: HomeDep) -> PlainTextResponse:
    latest = store.latest_checkpoint(conn)
    if latest is None:
        raise HTTPException(404, "this node has not signed a checkpoint yet")
    try:  # the mark is raised BEFORE a checkpoint goes out; a restored database refuses
        highwater.check(home.path, latest)
    except highwater.RecoveryRequired as exc:
        raise HTTPException(503, exc.message) from exc
    return PlainTextResponse(latest[2], headers={"Cache-Control": SHORT})


def _size(conn: ConnDep) -> int:
    latest = store.latest_checkpoint(conn)
    return 0 if latest is None else latest[0]


@router.get("/entries", summary="Leaves (base64) with their content (null once erased)")
def entries(
    conn: ConnDep,
    start: int = Query(0, ge=0, le=MAX_INDEX),
    limit: int = Query(PAGE, ge=1, le=PAGE),
) -> Response:
    size = _size(conn)
    if start > size:
        raise HTTPException(404, f"start {start} is beyond the signed tree size {size}")
    # pages are aligned to multiples of PAGE so that they are stable and cacheable
    stop = min(size, start + limit, (start // PAGE + 1) * PAGE)
    items: list[dict[str, Any]] = []
    for leaf, content in store.entries_page(conn, start, stop):
        items.append(
            {
                "leaf": base64.b64encode(leaf).decode(),
                "content": None if content is None else orjson.Fragment(content),
            }
        )
    body = {"entries": items, "next": stop if stop < size else None}
    # a page followed by more leaves never changes (docs/api.md "Caching")
    cache = IMMUTABLE if stop < size else "no-cache"
    return Response(
        orjson.dumps(body), media_type="application/json", headers={"Cache-Control": cache}
    )


def _proofs(request: Request) -> ProofCache:
    cache: ProofCache = request.app.state.proofs
    return cache


@router.get("/proof/inclusion", summary="RFC 9162 inclusion proof of leaf `index` in tree `size`")
def inclusion(
    request: Request,
    conn: ConnDep,
    index: int = Query(..., ge=0, le=MAX_INDEX),
    size: int = Query(..., ge=1, le=MAX_INDEX),
) -> dict[str, list[str]]:
    latest = store.latest_checkpoint(conn)
    signed = 0 if latest is None else latest[0]
    if latest is None or not index < size <= signed:
        name = "index" if index >= size else "size"
        raise invalid(name, f"need index < size <= {signed} (signed tree size)")
    return _proofs(request).get(
        ("inclusion", latest[1], index, size),
        lambda: inclusion_proof_from(store.proof_subtrees(conn), index, size),
    )


@router.get("/proof/consistency", summary="RFC 9162 consistency proof between two tree sizes")
def consistency(
    request: Request,
    conn: ConnDep,
    from_: int = Query(..., alias="from", ge=1, le=MAX_INDEX),
    to: int = Query(..., ge=1, le=MAX_INDEX),
) -> dict[str, list[str]]:
    latest = store.latest_checkpoint(conn)
    signed = 0 if latest is None else latest[0]
    if latest is None or not from_ <= to <= signed:
        name = "from" if from_ > to else "to"
        raise invalid(name, f"need from <= to <= {signed} (signed tree size)")
    return _proofs(request).get(
        ("consistency", latest[1], from_, to),
        lambda: consistency_proof_from(store.proof_subtrees(conn), from_, to),
    )
