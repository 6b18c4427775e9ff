"""Response models of /v1/search (the shape in docs/architecture.md), for OpenAPI and checking."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

__all__ = ["SearchResponse"]


class Count(BaseModel):
    """An interval sum over the matching sample groups; exact when min == max."""

    min: int
    max: int


class CodeCount(BaseModel):
    code: str
    count: Count


class Provenance(BaseModel):
    node: str
    checkpoint_size: int
    verified_at: str | None


class BiobankItem(BaseModel):
    id: str
    name: str | None
    acronym: str | None
    country: str | None
    description: str | None
    contact: dict[str, Any] | None
    url: str | None
    quality_standards: list[str]
    samples: Count
    provenance: Provenance


class CollectionItem(BaseModel):
    id: str
    biobank: str | None
    name: str | None
    description: str | None
    contact: dict[str, Any] | None
    use_conditions: list[str]
    dataset_types: list[str]
    design: list[str]
    samples: Count | None
    declared_size: int | None
    count_source: Literal["groups", "declared"]
    provenance: Provenance


class BiobankPage(BaseModel):
    items: list[BiobankItem]
    page: int
    page_size: int
    total: int


class CollectionPage(BaseModel):
    items: list[CollectionItem]
    page: int
    page_size: int
    total: int


class NodeSummary(BaseModel):
    origin: str
    country: str | None
    stale: bool
    alerts: int


class Counts(BaseModel):
    country: list[CodeCount]
    biobank: list[CodeCount]
    collection: list[CodeCount]


class Facets(BaseModel):
    sample_type: list[CodeCount]
    storage_temperature: list[CodeCount]
    sex: list[CodeCount]
    dataset_type: list[CodeCount]
    use_conditions: list[CodeCount]
    country: list[CodeCount]
    diagnosis_chapter: list[CodeCount]


class SearchResponse(BaseModel):
    query: dict[str, Any]
    total: Count
    donors: Count
    counts: Counts
    facets: Facets
    biobanks: BiobankPage
    collections: CollectionPage
    nodes: list[NodeSummary]
