"""GA4GH service-info (1.0.0) of the node at /service-info, from its descriptor's identity."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from node.api.deps import HomeDep

__all__ = ["router"]

router = APIRouter(tags=["service-info"])


@router.get("/service-info", summary="GA4GH service-info: who runs this node and how to reach them")
def service_info(home: HomeDep, request: Request) -> dict[str, Any]:
    cfg = home.config
    base = str(request.base_url)
    url = cfg.url or base.rstrip("/")
    host, _, path = cfg.origin.partition("/")
    ident = ".".join(reversed(host.split("."))) + ("." + path.replace("/", ".") if path else "")
    out: dict[str, Any] = {
        "id": ident,
        "name": cfg.name,
        "type": {"group": "org.biobank-federation", "artifact": "biobank-node", "version": "1"},
        "description": "A biobank node: signed append-only log of biobank, collection and "
        "sample-group metadata (/.well-known/biobank-node).",
        "organization": {"name": cfg.organisation, "url": url},
        "version": "1.0.0",
        "environment": "prod",
        "documentationUrl": base.rstrip("/") + "/docs",
    }
    if cfg.contact:
        out["contactUrl"] = f"mailto:{cfg.contact}"
    return out
