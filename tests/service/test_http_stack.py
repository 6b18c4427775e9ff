"""What the servers' HTTP stack costs a request (issue 19 item 4): the C parser and event
loop uvicorn takes when installed, and no thread hop for the repeated-parameter check."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from federation.servers import live_server
from service import http, problems


def _app() -> FastAPI:
    app = FastAPI(**http.app_options())

    @app.get("/echo")
    def echo(n: int = 0) -> dict[str, Any]:
        return {"n": n}

    problems.install(app, errors=[], invalid_status=400)
    http.install(app)
    return app


def test_servers_run_httptools_and_uvloop() -> None:
    """Both are dependencies: uvicorn's "auto" picks them (about a fifth less event-loop CPU a
    request than h11 and asyncio's loop, node/README.md "Performance")."""
    config = uvicorn.Config(_app(), host="127.0.0.1", port=0)
    config.load()
    assert config.http_protocol_class.__name__ == "HttpToolsProtocol"
    if sys.platform != "win32":
        factory = config.get_loop_factory()
        assert factory is not None and factory.__module__.startswith("uvloop")


def test_repeated_parameter_check_makes_no_thread_hop() -> None:
    """The check every route runs is async: FastAPI runs a plain `def` dependency in its
    thread pool, a hop to a worker thread and back on every request."""
    (dependency,) = http.app_options()["dependencies"]
    assert asyncio.iscoroutinefunction(dependency.dependency)


@pytest.mark.parametrize("path", ["/echo?n=1&n=2", "/echo?n=2"])
def test_repeated_parameter_still_refused_over_httptools(path: str) -> None:
    with live_server(_app()) as server, httpx.Client(base_url=server.url) as client:
        got = client.get(path)
    if path.count("n=") > 1:
        assert got.status_code == 400
        assert got.headers["content-type"] == "application/problem+json"
        assert "given more than once" in got.text
    else:
        assert got.status_code == 200 and got.json() == {"n": 2}
        assert got.headers["x-content-type-options"] == "nosniff"
