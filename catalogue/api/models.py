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


class OwnedCount(BaseModel):
    """The count of one biobank or collection id of one node: an id belongs to the node that
    publishes it (`origin`), so two nodes using the same id are listed apart."""

    code: str
    origin: str
    count: Count


class Provenance(BaseModel):
    node: str
    checkpoint_size: int
    verified_at: str | None


class AgeRange(BaseModel):
    """A collection's declared age range, in its unit (years, months, weeks or days)."""

    min: int | None
    max: int | None
    unit: str


class BiobankItem(BaseModel):
    """A biobank card. `published` is false when sample groups or collections name a biobank
    whose record the node does not publish (name and contact are then null); `collections`
    counts its published collections (0: a biobank listed on its own)."""

    id: str
    origin: str  # the node that publishes it (as provenance.node)
    published: bool
    collections: int
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
    """A collection card. `published` is false for sample groups naming a collection whose
    record is not published, `biobank_published` false when its biobank's record is not
    (the names are then null). `declared_size`, `subjects` (number_of_subjects) and `age`
    are the collection record's own declarations, shown whatever `count_source` is."""

    id: str
    origin: str  # the node that publishes it (as provenance.node)
    biobank: str | None
    published: bool
    biobank_published: bool
    name: str | None
    acronym: str | None
    description: str | None
    url: str | None
    contact: dict[str, Any] | None
    use_conditions: list[str]
    dataset_types: list[str]
    design: list[str]
    sample_types: list[str]
    sex: list[str]
    quality_standards: list[str]
    samples: Count | None
    declared_size: int | None
    subjects: int | None
    age: AgeRange | None
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
    biobank: list[OwnedCount]
    collection: list[OwnedCount]


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
