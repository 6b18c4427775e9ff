"""Issue 16 items 5 and 6: the request limits of service/limits.py on a real server: the
expensive routes run a few at a time (the rest wait, then 503) while cheap routes never wait."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from fastapi import FastAPI

from federation.servers import live_server
from service.limits import ConcurrencyLimit
from service.problems import PROBLEM


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/log/proof/consistency")
    def slow() -> dict[str, str]:
        time.sleep(1.0)
        return {"ok": "proof"}

    @app.get("/v1/search")
    def search() -> dict[str, str]:
        return {"ok": "search"}

    app.add_middleware(
        ConcurrencyLimit, patterns=[r"/v1/log/proof/.*"], slots=1, wait=0.3, setting="X_SLOTS"
    )
    return app


def test_concurrency_limit_bounds_expensive_routes_and_never_delays_search() -> None:
    with (
        live_server(_app()) as server,
        httpx.Client(base_url=server.url, timeout=10) as c,
        ThreadPoolExecutor(3) as pool,
    ):
        futures = [pool.submit(c.get, "/v1/log/proof/consistency") for _ in range(3)]
        time.sleep(0.1)
        t0 = time.monotonic()
        assert c.get("/v1/search").json() == {"ok": "search"}
        search_time = time.monotonic() - t0
        answers = [f.result() for f in futures]
    assert search_time < 0.5, search_time
    assert sorted(r.status_code for r in answers) == [200, 503, 503]
    busy = [r for r in answers if r.status_code == 503]
    for r in busy:
        assert r.headers["content-type"] == PROBLEM and r.headers["retry-after"] == "1"
        assert "X_SLOTS" in r.json()["detail"]


def test_concurrency_limit_lets_waiting_requests_through_when_a_slot_frees() -> None:
    app = _app()
    app.user_middleware.clear()
    app.add_middleware(ConcurrencyLimit, patterns=[r"/v1/log/proof/.*"], slots=1, wait=5.0)
    with live_server(app) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        t0 = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: c.get("/v1/log/proof/consistency"), range(2)))
        elapsed = time.monotonic() - t0
    assert [r.status_code for r in answers] == [200, 200]
    assert elapsed >= 1.9  # one after the other, never both at once
