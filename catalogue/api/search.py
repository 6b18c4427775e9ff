"""GET /v1/search: faceted search across all active nodes."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from catalogue.api.deps import Conn, Ctx
from catalogue.api.models import SearchResponse
from catalogue.filters import parse_filters
from catalogue.search import search as run_search

router = APIRouter()

_LIST = "repeatable, or comma-separated"


@router.get("/v1/search", response_model=SearchResponse,
            responses={400: {"description": "problem+json naming each invalid parameter"}})
def search(
    request: Request, conn: Conn, ctx: Ctx,
    sample_type: list[str] | None = Query(None, description=f"sample-type codes ({_LIST})"),
    storage_temperature: list[str] | None = Query(None, description="storage-temperature codes"),
    sex: list[str] | None = Query(None, description="sex codes"),
    age_min: str | None = Query(None, description="age band overlaps [age_min, age_max]"),
    age_max: str | None = Query(None),
    period_from: str | None = Query(None, description="collection period overlaps (years)"),
    period_to: str | None = Query(None),
    icd10: list[str] | None = Query(None, description="C50 (prefix), C00-C97 (block), II"),
    orpha: list[str] | None = Query(None, description="ORPHA:558"),
    duo: list[str] | None = Query(None, description="DUO codes (use conditions)"),
    dataset_type: list[str] | None = Query(None),
    country: list[str] | None = Query(None, description="ISO 3166-1 alpha-2"),
    biobank: list[str] | None = Query(None),
    collection: list[str] | None = Query(None),
    page: str | None = Query(None, description="biobank results page (from 1)"),
    page_size: str | None = Query(None, description="items per page (max 100)"),
    collections_page: str | None = Query(None),
) -> Any:
    params = {k: request.query_params.getlist(k) for k in request.query_params}
    filters = parse_filters(params, ctx.vocab)
    body = run_search(conn, filters, ctx.vocab, ctx.settings.stale_after, ctx.cube)
    return Response(orjson.dumps(body), media_type="application/json")
