"""Servers of one process build every route of their app before any client request reaches
it (`federation.servers.WARM_PATH`). FastAPI builds a route's parameters at the first request
that tries it, changing the route function's shared `Query` objects as it goes; two apps of
one process (the demo's and the tests' node servers, in threads) building the same function
at once raced, and pydantic's warning about the changed object, an error under the tests'
filter, answered a harvest's first request with HTTP 500 (a CI run of this session)."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import httpx
from fastapi import FastAPI, Query, Request

from federation.servers import WARM_PATH, live_server
from node.app import create_app as node_app
from node.settings import NodeSettings
from tests.node.node_support import make_home


def test_a_live_server_tries_every_route_once_before_it_is_handed_over() -> None:
    seen: list[str] = []
    app = FastAPI()

    @app.middleware("http")
    async def record(request: Request, call_next):  # type: ignore[no-untyped-def]
        seen.append(request.url.path)
        return await call_next(request)

    @app.get("/items")
    def items(start: int = Query(0, ge=0), limit: int = Query(10, ge=1)) -> list[int]:
        return list(range(start, start + limit))

    with live_server(app) as server:
        assert seen == [WARM_PATH]  # before the caller's first request, and only that
        assert httpx.get(server.url + "/items", params={"limit": 2}).json() == [0, 1]


def test_two_node_servers_of_one_process_answer_their_first_requests_at_once(
    tmp_path: Path,
) -> None:
    """The race itself: first requests to two node apps in the same instant, repeatedly,
    with warnings as errors; every one answered (before the warm-up, about one pair in
    fifteen got HTTP 500)."""
    statuses: list[int] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for trial in range(10):
            homes = [make_home(tmp_path / f"{trial}-{side}", k=2)[0] for side in "ab"]
            with (
                live_server(node_app(NodeSettings(home=homes[0].path))) as one,
                live_server(node_app(NodeSettings(home=homes[1].path))) as two,
            ):
                go = threading.Barrier(2)

                def first(url: str, go: threading.Barrier = go) -> None:
                    go.wait()
                    statuses.append(httpx.get(url + "/v1/log/checkpoint", timeout=30).status_code)

                threads = [threading.Thread(target=first, args=(s.url,)) for s in (one, two)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
    assert len(statuses) == 20 and 500 not in statuses, statuses
