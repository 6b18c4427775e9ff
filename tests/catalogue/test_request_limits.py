"""Issue 16 item 5: the admin token is checked before any request body is read, and every
request body is capped (413 problem+json), on the catalogue and on the node, with real
servers on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from catalogue.app import create_app
from federation.servers import ServerProcess, live_server
from node.app import create_app as create_node_app
from node.settings import NodeSettings
from service.problems import PROBLEM
from tests.catalogue.conftest import ADMIN_TOKEN, make_settings
from tests.node.node_support import make_home

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BIG = 15 * 1024 * 1024


def _json_array(size: int) -> bytes:
    """A JSON array of about ``size`` bytes (what the prober posted)."""
    item = b'{"url": "http://x", "key": "k"},'
    body = b"[" + item * (size // len(item))
    return body[:-1] + b"]"


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def served_catalogue(tmp_path: Path) -> Iterator[ServerProcess]:
    settings = make_settings(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "home")
    with ServerProcess.catalogue(settings.model_dump()) as proc:
        yield proc


def test_admin_post_without_token_is_refused_before_its_body_is_read(
    served_catalogue: ServerProcess,
) -> None:
    url = served_catalogue.urls()[0]
    pid = served_catalogue.process.pid
    assert pid is not None
    body = _json_array(BIG)
    assert httpx.get(url + "/v1/nodes").status_code == 200  # warm up
    time.sleep(0.5)
    before = _rss_kib(pid)

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=60) as client:
            return client.post(
                "/v1/admin/nodes", content=body, headers={"Content-Type": "application/json"}
            )

    with ThreadPoolExecutor(5) as pool:  # five at once, as the prober sent them
        answers = list(pool.map(post, range(5)))
    after = _rss_kib(pid)
    for resp in answers:
        assert resp.status_code == 401, resp.text
        assert resp.headers["content-type"] == PROBLEM
        assert resp.headers["www-authenticate"] == "Bearer"
    # reading and parsing 15 MB of JSON costs hundreds of MB; refusing it first costs nothing
    assert after - before < 20 * 1024, (before, after)


def test_oversized_admin_body_with_token_gets_413_problem(
    served_catalogue: ServerProcess,
) -> None:
    url = served_catalogue.urls()[0]
    with httpx.Client(base_url=url, timeout=60) as client:
        resp = client.post("/v1/admin/nodes", content=_json_array(BIG), headers=AUTH)
        assert resp.status_code == 413
        assert resp.headers["content-type"] == PROBLEM
        assert "CATALOGUE_MAX_ADMIN_BODY" in resp.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the cap counts what arrives
            for _ in range(100):
                yield b" " * 1024

        resp = client.post("/v1/admin/nodes", content=chunks(), headers=AUTH)
        assert resp.status_code == 413 and resp.headers["content-type"] == PROBLEM
        # a body under the cap still reaches the route (and is validated there)
        resp = client.post("/v1/admin/nodes", json={"url": "x"}, headers=AUTH)
        assert resp.status_code == 400, resp.text


def test_public_post_bodies_are_capped_too(tmp_path: Path) -> None:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "home", max_body=64 * 1024
    )
    with live_server(create_app(settings)) as server, httpx.Client(base_url=server.url) as c:
        resp = c.post("/beacon/v2/individuals", content=b"[" + b" " * 100_000 + b"]")
        assert resp.status_code == 413 and "CATALOGUE_MAX_BODY" in resp.json()["detail"]
        ok = c.post("/beacon/v2/individuals", json={"query": {"filters": []}})
        assert ok.status_code == 200, ok.text


def test_node_caps_every_request_body(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    app = create_node_app(NodeSettings(home=home.path))
    with live_server(app) as server, httpx.Client(base_url=server.url) as c:
        resp = c.post("/v1/log/entries", content=b"x" * (1024 * 1024))
        assert resp.status_code == 413
        assert resp.headers["content-type"] == PROBLEM
        assert "NODE_MAX_BODY" in resp.json()["detail"]
        assert c.get("/v1/log/entries").status_code == 200
