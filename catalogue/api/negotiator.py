"""The access request hand-off to a BBMRI-ERIC Negotiator (docs/negotiator.md).

`GET /v1/negotiator` says whether one is configured (CATALOGUE_NEGOTIATOR_URL);
`POST /v1/negotiator/requests` takes the page's basket (collection ids with their nodes and
the search that found them), builds the Negotiator's request from the verified collection
records (`url`, `humanReadable`, `resources`), sends it to
`{CATALOGUE_NEGOTIATOR_URL}/api/v3/requests` and answers the `redirectUrl` it returns.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlencode

import httpx
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import and_, or_, select

from catalogue.api.deps import Conn, Ctx
from catalogue.models import nodes, records
from catalogue.search import parse_filters
from catalogue.search.codes import Vocabulary
from protocol.codelists import CodeLists

__all__ = ["human_readable", "router"]

router = APIRouter()

MAX_RESOURCES = 500

# The search parameters in words (English: the Negotiator's working language).
_WORDS: dict[str, tuple[str, str | None]] = {
    "sample_type": ("sample type", "sample-type"),
    "storage_temperature": ("storage temperature", "storage-temperature"),
    "sex": ("donor sex", "sex"),
    "dataset_type": ("data type", "dataset-type"),
    "duo": ("data use conditions", "duo"),
    "country": ("country", "country"),
    "biobank": ("biobank", None),
    "collection": ("collection", None),
    "node": ("published by node", None),
    "orpha": ("rare disease (ORPHA)", None),
    "icd10": ("diagnosis (ICD-10)", None),
}


_NUMBERS = ("age_min", "age_max", "period_from", "period_to")


class BasketItem(BaseModel):
    id: Annotated[str, Field(min_length=1, max_length=255)]
    node: Annotated[str, Field(min_length=1, max_length=255)]


class HandOff(BaseModel):
    query: Annotated[str, Field(max_length=8000)] = ""  # the search's query string
    collections: Annotated[list[BasketItem], Field(min_length=1, max_length=MAX_RESOURCES)]


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


def _label(lists: CodeLists, name: str, code: str) -> str:
    for entry in lists.get(name).entries:
        if entry.code == code:
            return f"{entry.en} ({code})" if entry.en != code else code
    return code


def human_readable(pairs: list[tuple[str, str]], vocab: Vocabulary) -> str:
    """The search's filters in words ("sample type: Plasma (plasma); age from 18 years").
    Raises FilterError (400) for a query /v1/search would refuse."""
    params: dict[str, list[str]] = {}
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    f = parse_filters(params, vocab)
    lists = CodeLists.default()
    chapters = lists.get("icd10-chapter").codes()
    parts: list[str] = []
    for param, (words, code_list) in _WORDS.items():
        values = f.icd10_raw if param == "icd10" else f.lists.get(param) or []
        if values:
            if param == "icd10":  # chapters (II) in words; codes and ranges as given
                shown = [_label(lists, "icd10-chapter", v) if v in chapters else v for v in values]
            else:
                shown = [_label(lists, code_list, v) if code_list else v for v in values]
            parts.append(f"{words}: {' or '.join(shown)}")
    if f.age_min is not None or f.age_max is not None:
        parts.append(_range("donor age", f.age_min, f.age_max, "years"))
    if f.period_from is not None or f.period_to is not None:
        parts.append(_range("collected", f.period_from, f.period_to, ""))
    if not parts:
        return "All samples in the catalogue (no filters)."
    return "Samples with " + "; ".join(parts) + "."


def _range(words: str, low: int | None, high: int | None, unit: str) -> str:
    tail = f" {unit}" if unit else ""
    if low is not None and high is not None:
        return f"{words} {low} to {high}{tail}"
    if low is not None:
        return f"{words} from {low}{tail}"
    return f"{words} up to {high}{tail}"


@router.get("/v1/negotiator", tags=["negotiator"])
def negotiator_status(ctx: Ctx) -> dict[str, Any]:
    """Whether access requests go to a Negotiator (otherwise the page offers e-mail and CSV)."""
    return {"configured": bool(ctx.settings.negotiator_url)}


@router.post(
    "/v1/negotiator/requests",
    tags=["negotiator"],
    responses={
        201: {"description": "the Negotiator accepted: {redirectUrl}"},
        404: {"description": "no Negotiator configured, or a collection is unknown"},
        502: {"description": "the Negotiator refused or did not answer (its reason as detail)"},
    },
    status_code=201,
)
async def negotiator_request(body: HandOff, request: Request, conn: Conn, ctx: Ctx) -> JSONResponse:
    """Send the basket to the Negotiator; answer `{"redirectUrl"}` for the browser."""
    base_url = ctx.settings.negotiator_url
    if not base_url:
        return _problem(404, "No Negotiator configured", "CATALOGUE_NEGOTIATOR_URL is not set")
    pairs = [(k, v) for k, v in parse_qsl(body.query.lstrip("?")) if k in _WORDS or k in _NUMBERS]
    readable = human_readable(pairs, ctx.vocab)
    site = str(request.base_url).rstrip("/")
    search_url = f"{site}/?{urlencode(pairs)}" if pairs else f"{site}/"
    resources = await asyncio.to_thread(_resources, conn, body.collections, site)
    missing = [f"{c.node} {c.id}" for c in body.collections if (c.node, c.id) not in resources]
    if missing:
        return _problem(404, "Unknown collection", "not in the catalogue: " + ", ".join(missing))
    payload = {
        "url": search_url,
        "humanReadable": readable,
        "resources": [resources[(c.node, c.id)] for c in body.collections],
    }
    target = f"{base_url.rstrip('/')}/api/v3/requests"
    try:
        async with httpx.AsyncClient(timeout=ctx.settings.request_timeout) as client:
            answer = await client.post(target, json=payload)
    except httpx.HTTPError as exc:
        return _problem(502, "Negotiator unreachable", f"{target}: {type(exc).__name__}")
    reason = _reason(answer)
    if answer.status_code not in (200, 201):
        return _problem(502, "Negotiator refused the request", f"{answer.status_code}: {reason}")
    try:
        redirect = orjson.loads(answer.content).get("redirectUrl")
    except (orjson.JSONDecodeError, AttributeError):
        redirect = None
    if not isinstance(redirect, str) or not redirect.startswith(("https://", "http://")):
        return _problem(502, "Negotiator answer without redirectUrl", reason)
    return JSONResponse({"redirectUrl": redirect}, status_code=201)


def _reason(answer: httpx.Response) -> str:
    try:
        data = orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        return answer.text[:500]
    if isinstance(data, dict):
        for key in ("detail", "message", "title", "error"):
            if isinstance(data.get(key), str):
                return str(data[key])[:500]
    return answer.text[:500]


def _resources(
    conn: Any, items: list[BasketItem], site: str
) -> dict[tuple[str, str], dict[str, Any]]:
    """Each basket item's Negotiator resource, from the verified collection record."""
    origins = {c.node for c in items}
    ids = {
        r.origin: r.id
        for r in conn.execute(
            select(nodes.c.id, nodes.c.origin).where(
                nodes.c.origin.in_(origins), nodes.c.state != "retired"
            )
        )
    }
    keys = [(ids[c.node], c.id) for c in items if c.node in ids]
    if not keys:
        return {}
    origin_of = {v: k for k, v in ids.items()}
    q = select(records.c.node_id, records.c.record_id, records.c.content).where(
        records.c.kind == "collection",
        or_(*[and_(records.c.node_id == nid, records.c.record_id == rid) for nid, rid in keys]),
    )
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in conn.execute(q):
        content = orjson.loads(r.content)
        contact = content.get("contact") or {}
        out[(origin_of[r.node_id], r.record_id)] = {
            "id": r.record_id,
            "name": content.get("name") or r.record_id,
            "description": content.get("description") or "",
            "contactEmail": contact.get("email") or "",
            "uri": f"{site}/?{urlencode({'collection': r.record_id}, quote_via=quote)}",
        }
    return out
