"""Admin API behind a bearer token (CATALOGUE_ADMIN_TOKEN, no default): enrol, retire, clear,
revoke a node key, harvest."""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Depends, Header, HTTPException
from pydantic import BaseModel, Field, field_validator

from catalogue import enrol as enrolment
from catalogue.api.deps import Ctx
from catalogue.harvest import Harvester, keys
from catalogue.notify import register_with_node
from service.http import MAX_INDEX, bearer_token

__all__ = ["router"]


class EnrolRequest(BaseModel):
    url: str = Field(max_length=2048, pattern=r"^https?://[^\s]+$")  # the node's base URL
    key: str = Field(max_length=1024)  # its verifier key, obtained out of band

    @field_validator("url")
    @classmethod
    def _a_url(cls, value: str) -> str:
        try:
            urlsplit(value).port  # noqa: B018 - raises on a bad IPv6 host or port
            url = httpx.URL(value)
            port = url.port
        except (httpx.InvalidURL, ValueError) as exc:
            raise ValueError(f"not a URL: {exc}") from exc
        if not url.host or (port is not None and not 0 < port < 65536):
            raise ValueError("not a URL with a host")
        return value


class RevokeRequest(BaseModel):
    key: str = Field(max_length=1024)  # the node's new verifier key, obtained out of band
    from_size: int | None = Field(None, ge=0, le=MAX_INDEX)  # default: the last verified size


def require_token(ctx: Ctx, authorization: Annotated[str | None, Header()] = None) -> None:
    expected = ctx.settings.admin_token
    if not expected:
        raise HTTPException(503, "admin API disabled: set CATALOGUE_ADMIN_TOKEN")
    given = bearer_token(authorization)  # "Bearer <token>", scheme in any case; not bare
    # Constant-time comparison: the time taken must not reveal how much of a guess is right.
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


router = APIRouter(prefix="/v1/admin", dependencies=[Depends(require_token)])


@router.post("/nodes", status_code=201)
async def enrol(body: EnrolRequest, ctx: Ctx) -> dict[str, Any]:
    s = ctx.settings
    descriptor = await enrolment.fetch_descriptor(
        body.url, timeout=s.request_timeout, ca_bundle=s.ca_bundle
    )
    node = await asyncio.to_thread(
        enrolment.enrol, ctx.engine, ctx.key, body.url, body.key, descriptor
    )
    # push, then pull: ask the node to notify us (docs/freshness.md); never fails the enrolment
    node["notifications"] = await register_with_node(
        body.url, s.public_url, timeout=s.request_timeout, ca_bundle=s.ca_bundle
    )
    return node


@router.delete("/nodes/{origin:path}")
async def retire(origin: str, ctx: Ctx) -> dict[str, Any]:
    await asyncio.to_thread(enrolment.retire, ctx.engine, ctx.key, origin)
    return {"origin": origin, "state": "retired"}


@router.post("/nodes/{origin:path}/clear")
async def clear(origin: str, ctx: Ctx) -> dict[str, Any]:
    cleared = await asyncio.to_thread(enrolment.clear_halt, ctx.engine, origin)
    return {"origin": origin, "state": "active", "alerts_cleared": cleared}


@router.post("/nodes/{origin:path}/revoke")
async def revoke(origin: str, body: RevokeRequest, ctx: Ctx) -> dict[str, Any]:
    return await asyncio.to_thread(
        keys.revoke, ctx.engine, ctx.key, origin, body.key, body.from_size
    )


@router.post("/harvest")
async def harvest(ctx: Ctx) -> dict[str, Any]:
    harvester = Harvester(engine=ctx.engine, settings=ctx.settings, key=ctx.key, kept=ctx.workers)
    outcomes = await harvester.harvest_all()
    return {"nodes": [vars(o) for o in outcomes]}
