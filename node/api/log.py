"""The log read API: checkpoint, entry pages, inclusion and consistency proofs."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from node import highwater, store
from node.api.deps import ConnDep, HomeDep
from node.home import Home
from node.pages import PAGE, PAGE_SQL, page_body, stored_page
from protocol.merkle import consistency_proof_from, inclusion_proof_from
from service.http import IMMUTABLE, MAX_INDEX, SHORT
from service.problems import invalid
from service.proofs import ProofCache

router = APIRouter(prefix="/v1/log", tags=["log"])
__all__ = ["PAGE", "page_body", "router"]


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


def _size(conn: sqlite3.Connection) -> int:
    latest = store.latest_checkpoint(conn)
    return 0 if latest is None else latest[0]


@router.get("/entries", summary="Leaves (base64) with their content (null once erased)")
async def entries(
    request: Request,
    start: int = Query(0, ge=0, le=MAX_INDEX),
    limit: int = Query(PAGE, ge=1, le=PAGE),
) -> Response:
    # one hop to a worker thread for the whole page (a sync route with the ConnDep
    # dependency made three: open, route, close; each costs the server ~0.1 ms of CPU)
    home: Home = request.app.state.home
    etag = request.headers.get("if-none-match")
    return await run_in_threadpool(_entries_page, home.db_path, start, limit, etag)


_readers = threading.local()


def _reader(db_path: Path) -> sqlite3.Connection:
    """This worker thread's read connection to the database at ``db_path``, kept open
    between pages: a new connection per page parsed the schema and re-read every page from
    the operating system (~0.5 µs an entry). Opened again when the file at the path is
    another (a database restored from a backup)."""
    cached: dict[str, tuple[tuple[int, int], sqlite3.Connection]]
    cached = _readers.__dict__.setdefault("by_path", {})
    st = os.stat(db_path)
    key = (st.st_dev, st.st_ino)
    held = cached.get(str(db_path))
    if held is not None and held[0] == key:
        return held[1]
    if held is not None:
        held[1].close()
    conn = store.connect(db_path, readonly=True)
    # pages copy the stored content's bytes as they are (PAGE_SQL): they must be UTF-8
    (encoding,) = conn.execute("PRAGMA encoding").fetchone()
    if encoding != "UTF-8":
        conn.close()
        raise RuntimeError(f"{db_path}: database text encoding is {encoding}, not UTF-8")
    cached[str(db_path)] = (key, conn)
    return conn


def _entries_page(db_path: Path, start: int, limit: int, etag: str | None) -> Response:
    conn = _reader(db_path)
    size = _size(conn)
    if start > size:
        raise HTTPException(404, f"start {start} is beyond the signed tree size {size}")
    # pages are aligned to multiples of PAGE so that they are stable and cacheable
    stop = min(size, start + limit, (start // PAGE + 1) * PAGE)
    if stop < size:  # a page followed by more leaves never changes (docs/api.md "Caching")
        if stop - start == PAGE:  # a full page: its bytes as encoded when it was completed
            stored = stored_page(conn, start)
            if stored is not None:
                body, tag = stored
                headers = {"Cache-Control": IMMUTABLE, "ETag": tag}
                if etag is not None and tag in (t.strip() for t in etag.split(",")):
                    return Response(status_code=304, headers=headers)
                return Response(body, media_type="application/json", headers=headers)
        body = page_body(conn.execute(PAGE_SQL, (start, stop)), stop)
        return Response(body, media_type="application/json", headers={"Cache-Control": IMMUTABLE})
    body = page_body(conn.execute(PAGE_SQL, (start, stop)), None)
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-cache"})


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
