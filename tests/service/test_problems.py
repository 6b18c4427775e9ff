"""problem+json: one body shape for the node's and the catalogue's errors (service/problems.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Query

from catalogue.errors import FilterError, UnknownNode
from federation.servers import live_server
from protocol.errors import Problem, ValidationFailed, VerificationError
from service.problems import PROBLEM, install


def _app(invalid_status: int) -> FastAPI:
    app = FastAPI()
    install(
        app,
        errors=[
            (UnknownNode, 404, "Unknown node"),
            (FilterError, 400, "Bad filter"),
            (ValidationFailed, 400, "Validation failed"),
        ],
        fallback=(500, "Verification failed"),
        invalid_status=invalid_status,
    )

    @app.get("/raise/{what}")
    def raise_(what: str, n: int = Query(0)) -> Any:
        if what == "unknown":
            raise UnknownNode("no node 'x'")
        if what == "filter":
            raise FilterError([{"name": "sex", "reason": "unknown code 'f'"}])
        if what == "invalid":
            raise ValidationFailed("1 record", [Problem("row 2", "/sex", "f", "unknown code")])
        if what == "verify":
            raise VerificationError("root mismatch")
        raise HTTPException(401, "token required", headers={"WWW-Authenticate": "Bearer"})

    return app


@pytest.fixture(scope="module", params=[400, 422])
def client(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    """A real server whose invalid requests answer 400 (the catalogue) or 422 (the node)."""
    with live_server(_app(request.param)) as server, httpx.Client(base_url=server.url) as c:
        c.headers["x-invalid-status"] = str(request.param)
        yield c


def test_domain_errors_map_to_their_status_title_and_extras(client: httpx.Client) -> None:
    unknown = client.get("/raise/unknown")
    assert unknown.status_code == 404 and unknown.headers["content-type"] == PROBLEM
    assert unknown.json() == {
        "type": "about:blank",
        "title": "Unknown node",
        "status": 404,
        "detail": "no node 'x'",
        "instance": "/raise/unknown",
    }
    assert client.get("/raise/filter").json()["invalid_params"] == [
        {"name": "sex", "reason": "unknown code 'f'"}
    ]
    assert client.get("/raise/invalid").json()["problems"] == [
        {"location": "row 2", "field": "/sex", "value": "f", "reason": "unknown code"}
    ]
    fallback = client.get("/raise/verify")
    assert (fallback.status_code, fallback.json()["title"]) == (500, "Verification failed")


def test_http_errors_keep_their_headers_and_reason_phrase(client: httpx.Client) -> None:
    resp = client.get("/raise/other")
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
    assert resp.json()["title"] == "Unauthorized" and resp.json()["detail"] == "token required"


def test_invalid_parameters_get_the_apps_status_and_name_the_parameter(
    client: httpx.Client,
) -> None:
    resp = client.get("/raise/x", params={"n": "many"})
    assert resp.status_code == int(client.headers["x-invalid-status"])
    assert resp.headers["content-type"] == PROBLEM
    (param,) = resp.json()["invalid_params"]
    assert param["name"] == "n" and "integer" in param["reason"]
