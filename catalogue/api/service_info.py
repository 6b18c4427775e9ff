"""GA4GH service-info (1.0.0) of the catalogue at /service-info."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from catalogue.api.deps import Ctx
from catalogue.beacon import service_info as document

__all__ = ["router"]

router = APIRouter(tags=["service-info"])


@router.get("/service-info")
def service_info(ctx: Ctx, request: Request) -> dict[str, Any]:
    return document(
        ctx.key.origin,
        str(request.base_url),
        ctx.settings.organisation,
        ctx.settings.contact,
        artifact="biobank-catalogue",
        name=f"Biobank catalogue {ctx.key.origin}",
        description="Verified, combined biobank metadata from enrolled nodes: /v1/search, "
        "Beacon v2 at /beacon/v2.",
        version="1",
    )
