"""Issue 16's hardening applied to the catalogue's POST /v1/notify (docs/freshness.md): an
unauthenticated body is capped at a checkpoint note's size before anything of it is read,
and every refusal is documented as problem+json."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from catalogue.app import create_app
from catalogue.notify import MAX_NOTE
from federation.servers import LiveServer, live_server
from tests.catalogue.conftest import make_settings


@pytest.fixture
def cat(tmp_path: Path, db_url: str) -> Iterator[LiveServer]:
    settings = make_settings(db_url, tmp_path / "cat-home")
    with live_server(create_app(settings, schedule_harvest=False)) as server:
        yield server


def test_notify_body_over_a_note_is_refused_before_it_is_read(cat: LiveServer) -> None:
    # declares 1 MB (under CATALOGUE_MAX_BODY) but sends only the headers: the 413 comes
    # without the server waiting for a byte of the body
    head = (
        "POST /v1/notify HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {1024 * 1024 - 1}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", cat.port), timeout=5) as sock:
        sock.sendall(head.encode())
        chunks = []
        while chunk := sock.recv(4096):  # the server closes after the 413
            chunks.append(chunk)
    answer = b"".join(chunks).decode()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "application/problem+json" in answer
    assert f"larger than {MAX_NOTE} bytes" in answer


def test_notify_refusals_are_documented_as_problem_json(cat: LiveServer) -> None:
    doc = httpx.get(f"{cat.url}/openapi.json", timeout=10).json()
    responses = doc["paths"]["/v1/notify"]["post"]["responses"]
    for status in ("400", "403", "404", "409", "413", "429", "503"):
        assert "application/problem+json" in responses[status]["content"], status


def test_refused_cors_preflight_is_a_400_problem(cat: LiveServer) -> None:
    # a page on another origin may read the API but not POST to it (docs/api.md, CORS)
    resp = httpx.options(
        f"{cat.url}/v1/notify",
        headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"},
    )
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["detail"] == "Disallowed CORS method"
    assert "POST" not in resp.headers["access-control-allow-methods"]
    allowed = httpx.options(
        f"{cat.url}/v1/search",
        headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "GET"},
    )
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "*"
