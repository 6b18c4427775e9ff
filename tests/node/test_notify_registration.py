"""Issue 16's hardening applied to the node's POST /v1/notify/targets (docs/freshness.md):
a registration is no port or host probe for its caller (one answer, at one time, whatever the
confirmation fetch met), reads a bounded descriptor, and runs a few at a time.

The hostile "catalogues" here are real HTTP servers on loopback, not stand-ins for our parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from federation.servers import LiveServer, free_port, live_server
from node import notify, store
from node.api.notify import CONFIRM_SLOTS, MAX_DESCRIPTOR
from node.app import create_app
from node.settings import NodeSettings
from tests.node.node_support import make_home

WAIT = 1.0  # NODE_REGISTRATION_WAIT in these tests
DESCRIPTOR = "/.well-known/biobank-catalogue"


class Hostile:
    """Real servers that are no catalogue, each at its own base path; counts the GETs."""

    def __init__(self) -> None:
        self.gets = 0

    def app(self) -> Starlette:
        async def not_found(_r: Request) -> Response:
            self.gets += 1
            return JSONResponse({"detail": "nothing here"}, status_code=404)

        async def other(_r: Request) -> Response:
            self.gets += 1
            return JSONResponse({"service": "a database admin page"})

        async def trickle(_r: Request) -> Response:
            self.gets += 1

            async def body() -> AsyncIterator[bytes]:
                while True:  # a byte every 0.2 s, forever: each read is within any timeout
                    yield b" "
                    await asyncio.sleep(0.2)

            return StreamingResponse(body(), media_type="application/json")

        async def huge(_r: Request) -> Response:
            self.gets += 1
            pad = "x" * (MAX_DESCRIPTOR + 1024)
            return Response(
                f'{{"notify": "{notify.PATH}", "pad": "{pad}"}}', media_type="application/json"
            )

        return Starlette(
            routes=[
                Route(f"/404{DESCRIPTOR}", not_found),
                Route(f"/other{DESCRIPTOR}", other),
                Route(f"/trickle{DESCRIPTOR}", trickle),
                Route(f"/huge{DESCRIPTOR}", huge),
            ]
        )


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer, Hostile]]:
    home, _vkey = make_home(tmp_path, records=False)
    hostile = Hostile()
    settings = NodeSettings(home=home.path, registration_wait=WAIT, notify_poll=5.0)
    with ExitStack() as stack:
        node = stack.enter_context(live_server(create_app(settings)))
        other = stack.enter_context(live_server(hostile.app()))
        yield node, other, hostile


def _register(node: LiveServer, url: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    resp = httpx.post(f"{node.url}/v1/notify/targets", json={"url": url}, timeout=30)
    return resp, time.monotonic() - started


def _targets(node_home: Path) -> list[str]:
    conn = store.connect(node_home / "node.db")
    try:
        return [t.url for t in notify.targets(conn)]
    finally:
        conn.close()


def test_registration_refusal_is_no_port_or_host_probe(
    servers: tuple[LiveServer, LiveServer, Hostile],
) -> None:
    node, other, _hostile = servers
    probes = {
        "closed port": f"http://127.0.0.1:{free_port()}",
        "HTTP server answering 404": f"{other.url}/404",
        "HTTP server that is no catalogue": f"{other.url}/other",
        "server trickling bytes forever": f"{other.url}/trickle",
    }
    reasons = {}
    for what, url in probes.items():
        resp, took = _register(node, url)
        assert resp.status_code == 400, (what, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
        (param,) = resp.json()["invalid_params"]
        assert param["name"] == "url"
        reasons[what] = param["reason"].replace(url, "URL")
        # answered at the end of the confirmation time, whatever the fetch met
        assert WAIT - 0.05 <= took < WAIT + 0.75, (what, took)
    assert len(set(reasons.values())) == 1, reasons


def test_registration_reads_a_bounded_descriptor(
    servers: tuple[LiveServer, LiveServer, Hostile],
    tmp_path: Path,
) -> None:
    node, other, _hostile = servers
    # names the notify path, but in more bytes than any descriptor: refused, never added
    resp, _took = _register(node, f"{other.url}/huge")
    assert resp.status_code == 400, resp.text
    assert _targets(tmp_path / "home") == []


def test_registrations_beyond_the_confirmation_slots_get_429_without_a_fetch(
    servers: tuple[LiveServer, LiveServer, Hostile],
) -> None:
    node, other, hostile = servers
    n = CONFIRM_SLOTS + 2
    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(lambda _i: _register(node, f"{other.url}/trickle")[0], range(n)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [400] * CONFIRM_SLOTS + [429] * 2, statuses
    busy = next(a for a in answers if a.status_code == 429)
    assert busy.headers["content-type"] == "application/problem+json"
    assert int(busy.headers["Retry-After"]) >= 1
    assert hostile.gets == CONFIRM_SLOTS  # a refused-at-once registration fetched nothing


def test_registration_refusals_are_documented_as_problem_json(
    servers: tuple[LiveServer, LiveServer, Hostile],
) -> None:
    node, _other, _hostile = servers
    doc = httpx.get(f"{node.url}/openapi.json", timeout=10).json()
    responses = doc["paths"]["/v1/notify/targets"]["post"]["responses"]
    for status in ("400", "403", "409", "413", "429"):
        assert "application/problem+json" in responses[status]["content"], status


def _catalogue_that_never_ends(status: int, chunk: int, pause: float) -> Starlette:
    """A registered "catalogue" whose answer to a notification never ends."""

    async def notified(_r: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            while True:
                yield b"x" * chunk
                await asyncio.sleep(pause)

        return StreamingResponse(body(), status_code=status, media_type="text/plain")

    return Starlette(routes=[Route(notify.PATH, notified, methods=["POST"])])


@pytest.mark.parametrize(
    ("status", "chunk", "pause", "outcome"),
    [
        (500, 65536, 0.0, "HTTP 500: xxx"),  # an endless error page: its first bytes kept
        (200, 65536, 0.3, "delivered"),  # an endless acknowledgement: delivered
        (200, 1, 0.3, "TimeoutError"),  # a byte at a time, forever: the send times out
    ],
)
def test_notify_sender_reads_a_bounded_answer_within_its_timeout(
    tmp_path: Path, status: int, chunk: int, pause: float, outcome: str
) -> None:
    home, _vkey = make_home(tmp_path, records=True)  # a checkpoint to send
    with live_server(_catalogue_that_never_ends(status, chunk, pause)) as hostile:
        conn = store.connect(home.db_path)
        try:
            notify.add_target(conn, hostile.url)
            conn.commit()
        finally:
            conn.close()
        sender = notify.Sender(home.db_path, poll=0.05, timeout=1.0)

        async def run_a_while() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sender.run(), 2.6)

        asyncio.run(run_a_while())
    conn = store.connect(home.db_path)
    try:
        (target,) = notify.targets(conn)
    finally:
        conn.close()
    if outcome == "delivered":
        assert target.delivered_size > 0 and target.attempts == 0, target
    else:  # the attempt ended (timeout or a bounded answer read) and was recorded
        assert target.attempts >= 1, target
        assert target.last_error is not None and len(target.last_error) < 300
        assert target.last_error.startswith(outcome), target.last_error


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999",
        "http://127.0.0.1:0",
        "http://[::1",
        "http://a b.example",
        "http://example.org/\x00",
        "ftp://example.org",
        "http://" + "a" * 100_00 + ".example",
    ],
)
def test_registration_of_a_malformed_url_is_a_400_naming_url_without_a_fetch(
    servers: tuple[LiveServer, LiveServer, Hostile], url: str
) -> None:
    node, _other, _hostile = servers
    resp, took = _register(node, url)
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert [p["name"] for p in resp.json()["invalid_params"]] == ["url"]
    assert took < WAIT  # refused at once: nothing was fetched
    assert len(resp.text) < 2000  # the reason does not echo a long URL whole
