"""The /v1/search parameters are declared once (catalogue.search.FILTERS): the OpenAPI
document lists exactly those, each with its description, and the answers to unknown or
repeated single-valued parameters stay those of the filter parser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from catalogue.app import create_app
from catalogue.search import FILTERS
from federation.servers import live_server
from tests.catalogue.conftest import make_settings


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'catalogue.db'}", tmp_path / "home"))
    with live_server(app) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def _types(schema: dict[str, Any]) -> set[str]:
    return {s.get("type", "") for s in schema.get("anyOf", [schema])} - {"null"}


def test_openapi_lists_every_filter_definition(client: httpx.Client) -> None:
    op = client.get("/openapi.json").json()["paths"]["/v1/search"]["get"]
    params = [p for p in op["parameters"] if p["in"] == "query"]
    assert [p["name"] for p in params] == [d.name for d in FILTERS]
    for p, d in zip(params, FILTERS, strict=True):
        assert p["description"] == d.help
        assert not p.get("required", False)
        assert _types(p["schema"]) == ({"array"} if d.repeatable else {"string"}), d.name


def test_unknown_and_repeated_parameters_are_named(client: httpx.Client) -> None:
    resp = client.get(
        "/v1/search",
        params=[
            ("bogus", "1"),
            ("page", "1"),
            ("page", "2"),
            ("sample_type", "Nope"),
            ("sex", "female"),
        ],
    )
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"
    known = ", ".join(d.name for d in FILTERS)
    assert resp.json()["invalid_params"] == [
        {"name": "bogus", "reason": f"unknown search parameter; known: {known}"},
        {"name": "sample_type", "reason": "unknown code 'Nope' in code list sample-type"},
        {"name": "page", "reason": "given more than once"},
    ]


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("diagnoses", "icd10 or orpha"),  # the record's field name
        ("use_conditions", "duo"),
        ("age", "age_min or age_max"),
        ("sampletype", "sample_type"),  # a close spelling
        ("Countries", "country"),
    ],
)
def test_an_unknown_parameter_names_the_one_it_likely_meant(
    client: httpx.Client, given: str, meant: str
) -> None:
    resp = client.get("/v1/search", params={given: "x"})
    assert resp.status_code == 400
    assert resp.json()["invalid_params"] == [
        {"name": given, "reason": f"unknown search parameter; did you mean {meant}?"}
    ]


def test_declared_parameters_reach_the_search(client: httpx.Client) -> None:
    resp = client.get(
        "/v1/search",
        params=[
            ("sample_type", "Plasma,Serum"),
            ("sample_type", "DNA"),
            ("page_size", "5"),
            ("icd10", "C50"),
        ],
    )
    assert resp.status_code == 200
    assert resp.json()["query"] == {
        "sample_type": ["Plasma", "Serum", "DNA"],
        "icd10": ["C50"],
        "page": 1,
        "page_size": 5,
        "collections_page": 1,
    }


@pytest.mark.parametrize(
    ("param", "typed", "meant", "reason"),
    [
        ("sample_type", "blood", "Blood", "did you mean Blood?"),  # another case
        ("sample_type", "血浆", "Plasma", "did you mean Plasma?"),  # the Chinese label
        ("sample_type", "ffpe", "TissueFFPE", "did you mean TissueFFPE?"),  # a part of it
        ("sample_type", "Whole blod", "WholeBlood", "did you mean WholeBlood or "),  # misspelt
        ("sex", "Female", "female", "(one of female, male, other, unknown); did you mean female?"),
        ("country", "Germany", "DE", "did you mean DE?"),  # the English label
        ("duo", "GRU", "DUO:0000042", "did you mean DUO:0000042?"),  # DUO's shorthand
    ],
)
def test_an_unknown_code_says_which_code_it_likely_meant(
    client: httpx.Client, param: str, typed: str, meant: str, reason: str
) -> None:
    """A researcher typing a label, another case or a close spelling is told the code, and
    the code told is one the search takes."""
    resp = client.get("/v1/search", params={param: typed})
    assert resp.status_code == 400
    (problem,) = resp.json()["invalid_params"]
    assert problem["name"] == param
    assert problem["reason"].startswith(f"unknown code {typed!r} in code list ")
    assert reason in problem["reason"]
    assert client.get("/v1/search", params={param: meant}).status_code == 200
