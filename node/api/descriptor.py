"""The node descriptor at /.well-known/biobank-node."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from node.api.deps import HomeDep
from node.home import current_verifier_key
from node.policy import Policy
from protocol.schema import SchemaSet

router = APIRouter(tags=["descriptor"])


def policy_summary(home: Any) -> dict[str, Any]:
    """The policy in force (node.policy)."""
    return Policy.load(home.policy_path).summary()


@router.get("/.well-known/biobank-node", summary="Who this node is, its key, schemas, policy")
def descriptor(home: HomeDep, request: Request) -> dict[str, Any]:
    cfg = home.config
    schemas = SchemaSet.default()
    return {
        "origin": cfg.origin,
        "name": cfg.name,
        "country": cfg.country,
        "organisation": cfg.organisation,
        "contact": {"email": cfg.contact},
        "url": cfg.url or str(request.base_url).rstrip("/"),
        # read per request: a rotation changes it while the server runs
        "verifier_key": current_verifier_key(home.path),
        "schemas": [schemas.schema_id(k) for k in ("biobank", "collection", "sample-group")],
        "policy": policy_summary(home),
    }
