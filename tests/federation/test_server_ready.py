"""`federation.servers.ServerProcess` hands a server over only once it is ready: a catalogue
answers /readyz 200 after loading its search index (half a minute at 10M samples), and a
measurement or test started before that would time out on its first search."""

from __future__ import annotations

import time

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from federation.servers import HOST, ServerProcess, free_port


def _serve_ready_after(port: int, seconds: float) -> None:
    started = time.monotonic()

    def readyz(_request: Request) -> PlainTextResponse:
        ready = time.monotonic() - started >= seconds
        return PlainTextResponse("ready" if ready else "loading", 200 if ready else 503)

    app = Starlette(routes=[Route("/readyz", readyz)])
    uvicorn.run(app, host=HOST, port=port, log_level="warning")


def test_a_server_process_is_entered_only_once_its_ready_path_answers_200() -> None:
    port = free_port()
    server = ServerProcess(_serve_ready_after, (port, 1.5), [port], ready="/readyz")
    start = time.monotonic()
    with server:
        assert time.monotonic() - start >= 1.5
        assert httpx.get(f"http://{HOST}:{port}/readyz").status_code == 200


def test_a_server_never_ready_is_stopped_with_a_clear_error() -> None:
    port = free_port()
    server = ServerProcess(
        _serve_ready_after, (port, 3600.0), [port], ready="/readyz", ready_timeout=1.0
    )
    with pytest.raises(RuntimeError, match=r"/readyz not ready within 1 s"), server:
        pass
    assert not server.process.is_alive()
