"""The node descriptor at /.well-known/biobank-node."""

from __future__ import annotations

import importlib
from typing import Any

from fastapi import APIRouter, Request

from node.api.deps import HomeDep
from node.home import current_verifier_key
from protocol.schema import SchemaSet

router = APIRouter(tags=["descriptor"])

FALLBACK_POLICY = {
    "k": 2,
    "age_band": 10,
    "period_width": 5,
    "diagnosis_precision": "full",
    "published_fields": [
        "age",
        "dataset_types",
        "diagnoses",
        "period",
        "sex",
        "storage_temperature",
        "use_conditions",
    ],
}


def policy_summary(home: Any) -> dict[str, Any]:
    """The policy in force (node.policy), or the importer's fallback bands."""
    try:
        policy = importlib.import_module("node.policy")
    except ImportError:
        return dict(FALLBACK_POLICY)
    summary: dict[str, Any] = policy.Policy.load(home.policy_path).summary()
    return summary


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
        "schemas": [schemas.schema_id(k) for k in ("biobank", "collection", "sample")],
        "policy": policy_summary(home),
    }
