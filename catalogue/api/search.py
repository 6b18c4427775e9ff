"""GET /v1/search: faceted search across all active nodes.

The query parameters are declared from the filter definitions (`catalogue.search.FILTERS`):
`search_filters` is a FastAPI dependency whose signature is built from that table, so
FastAPI reads each parameter and /openapi.json documents each, with its description.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from catalogue.api.deps import Conn, Ctx
from catalogue.api.models import SearchResponse
from catalogue.search import FILTERS, Filters, parse_filters
from catalogue.search import search as run_search
from service.http import SHORT

__all__ = ["router", "search_filters"]

router = APIRouter()


def search_filters(request: Request, ctx: Ctx, **given: list[str] | str | None) -> Filters:
    """The validated search (a FilterError, answered 400, names every bad parameter).

    Values come from FastAPI, one keyword per filter definition. The raw query is consulted
    only for what a declared parameter cannot say: names no definition declares (refused as
    unknown) and a single-valued parameter given more than once (refused as such).
    """
    query = request.query_params
    params: dict[str, list[str]] = {
        name: query.getlist(name) for name in query if name not in given
    }
    for d in FILTERS:
        value = given[d.name]
        if isinstance(value, list):
            params[d.name] = value
        elif value is not None:
            repeated = query.getlist(d.name)
            params[d.name] = repeated if len(repeated) > 1 else [value]
    return parse_filters(params, ctx.vocab)


def _declare(definitions: Mapping[str, tuple[type[Any] | Any, str]]) -> inspect.Signature:
    """`search_filters`'s signature: the request, the context and one query parameter each."""
    head = [
        p
        for p in inspect.signature(search_filters, eval_str=True).parameters.values()
        if p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    return inspect.Signature(
        [
            *head,
            *(
                inspect.Parameter(
                    name,
                    inspect.Parameter.KEYWORD_ONLY,
                    annotation=annotation,
                    default=Query(None, description=text),
                )
                for name, (annotation, text) in definitions.items()
            ),
        ]
    )


search_filters.__signature__ = _declare(  # type: ignore[attr-defined]
    {d.name: (list[str] | None if d.repeatable else str | None, d.help) for d in FILTERS}
)


@router.get(
    "/v1/search",
    response_model=SearchResponse,
    responses={400: {"description": "problem+json naming each invalid parameter"}},
)
def search(conn: Conn, ctx: Ctx, filters: Annotated[Filters, Depends(search_filters)]) -> Any:
    body = run_search(conn, filters, ctx.vocab, ctx.settings.stale_after, ctx.cube)
    # short: the answer changes when a harvest brings new leaves (docs/api.md "Caching")
    return Response(
        orjson.dumps(body), media_type="application/json", headers={"Cache-Control": SHORT}
    )
