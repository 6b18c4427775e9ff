"""Beacon v2 under /beacon/v2 (docs/beacon.md): framework endpoints and boolean and count
queries on /biosamples and /individuals, answered by the /v1/search of the same filters."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from catalogue.api.deps import Conn, Ctx
from catalogue.beacon import (
    configuration,
    count_response,
    entry_types,
    error_response,
    filtering_terms,
    filtering_terms_response,
    info_response,
    map_response,
    parse_get_filters,
    service_info,
    translate,
)
from catalogue.beacon.responses import BY_PATH, GRANTED, EntryType
from catalogue.context import Context
from catalogue.models import nodes, records
from catalogue.search import search as run_search

__all__ = ["BASE", "router"]

BASE = "/beacon/v2"
router = APIRouter(prefix=BASE, tags=["beacon"])


def _root(request: Request) -> str:
    return str(request.base_url).rstrip("/") + BASE


def _who(ctx: Context) -> tuple[str | None, str | None]:
    """The operator's organisation and contact, where the settings carry them."""
    return ctx.settings.organisation, ctx.settings.contact


@router.get("")
@router.get("/")
@router.get("/info")
def info(ctx: Ctx, request: Request) -> dict[str, Any]:
    return info_response(ctx.key.origin, str(request.base_url), *_who(ctx))


@router.get("/service-info")
def beacon_service_info(ctx: Ctx, request: Request) -> dict[str, Any]:
    return service_info(
        ctx.key.origin,
        str(request.base_url),
        *_who(ctx),
        artifact="beacon",
        name=f"Beacon of biobank catalogue {ctx.key.origin}",
        description="Beacon v2 (boolean and count) over the catalogue's search.",
        version="v2.0.0",
    )


@router.get("/configuration")
def beacon_configuration(ctx: Ctx) -> dict[str, Any]:
    return configuration(ctx.key.origin)


@router.get("/map")
def beacon_map(ctx: Ctx, request: Request) -> dict[str, Any]:
    return map_response(ctx.key.origin, _root(request))


@router.get("/entry_types")
def beacon_entry_types(ctx: Ctx) -> dict[str, Any]:
    return entry_types(ctx.key.origin)


@router.get("/filtering_terms")
def beacon_filtering_terms(ctx: Ctx, conn: Conn) -> dict[str, Any]:
    q = (
        select(records.c.kind, records.c.record_id)
        .join(nodes, nodes.c.id == records.c.node_id)
        .where(records.c.kind.in_(("biobank", "collection")), nodes.c.state != "retired")
    )
    ids: dict[str, list[str]] = {"biobank": [], "collection": [], "node": []}
    for r in conn.execute(q):
        ids[r.kind].append(r.record_id)
    ids["node"] = list(
        conn.execute(select(nodes.c.origin).where(nodes.c.state != "retired")).scalars()
    )
    return filtering_terms_response(ctx.key.origin, filtering_terms(ctx.vocab, ids))


def _answer(
    ctx: Ctx,
    conn: Conn,
    request: Request,
    entry: EntryType,
    beacon_filters: list[Any],
    requested: str,
    test_mode: bool,
) -> JSONResponse:
    origin = ctx.key.origin
    t = translate(beacon_filters, ctx.vocab)
    if requested not in GRANTED:
        msg = (
            f"requestedGranularity {requested!r} is not granted: this Beacon grants "
            "'boolean' and 'count' only, never records"
        )
        body = error_response(
            origin, entry, requested, t.ids, 403, msg, {"grantedGranularities": list(GRANTED)}
        )
        return JSONResponse(body, status_code=403)
    if not t.ok or t.filters is None:
        parts = []
        if t.unknown:
            parts.append("unknown filters: " + ", ".join(t.unknown))
        parts.extend(t.problems)
        body = error_response(
            origin,
            entry,
            requested,
            t.ids,
            400,
            "; ".join(parts) + f" (see {BASE}/filtering_terms)",
            {"unknownFilters": t.unknown, "invalidFilters": t.problems},
        )
        return JSONResponse(body, status_code=400)
    result = run_search(conn, t.filters, ctx.vocab, ctx.settings.stale_after, ctx.cube)
    span = result["total"] if entry.counts == "total" else result["donors"]
    search_url = str(request.base_url) + "v1/search"
    if t.params:
        search_url += "?" + urlencode(t.params, doseq=True)
    body = count_response(
        origin,
        entry,
        requested,
        "count" if requested == "count" else "boolean",
        t.ids,
        span,
        search_url,
        test_mode,
    )
    return JSONResponse(body)


def _get(entry_path: str) -> Any:
    entry = BY_PATH[entry_path]

    def handler(
        ctx: Ctx,
        conn: Conn,
        request: Request,
        filters: list[str] | None = Query(
            None,
            description="filter ids, comma-separated or repeated; age as age>=P40Y "
            f"({BASE}/filtering_terms)",
        ),
        requestedGranularity: str = Query("boolean"),  # noqa: N803  (Beacon's name)
        testMode: bool = Query(False),  # noqa: N803
    ) -> JSONResponse:
        return _answer(
            ctx,
            conn,
            request,
            entry,
            parse_get_filters(filters or []),
            requestedGranularity,
            testMode,
        )

    return handler


def _post(entry_path: str) -> Any:
    entry = BY_PATH[entry_path]

    async def handler(ctx: Ctx, conn: Conn, request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except (ValueError, RecursionError):  # not JSON, or nested too deep to decode
            body = None
        query = body.get("query", {}) if isinstance(body, dict) else None
        if not isinstance(query, dict) or not isinstance(query.get("filters", []), list):
            err = error_response(
                ctx.key.origin,
                entry,
                "boolean",
                [],
                400,
                'the body must be a Beacon request: {"meta": ..., "query": {"filters": [...]}}',
            )
            return JSONResponse(err, status_code=400)
        return _answer(
            ctx,
            conn,
            request,
            entry,
            query.get("filters", []),
            str(query.get("requestedGranularity", "boolean")),
            bool(query.get("testMode", False)),
        )

    return handler


for _path in BY_PATH:
    router.add_api_route(f"/{_path}", _get(_path), methods=["GET"], response_model=None)
    router.add_api_route(f"/{_path}", _post(_path), methods=["POST"], response_model=None)
