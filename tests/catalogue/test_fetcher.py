"""NodeFetcher over a real socket: a kept-alive connection the node closes is tried again;
entry pages read through httpx or (``page_tls``) aiohttp make the same checks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest

from catalogue.errors import FetchError
from catalogue.harvest.fetcher import RETRIES, NodeFetcher
from federation import LiveServer, node_app, prepare_node
from federation.build import DemoNode
from protocol.tls import client_tls

BODY = orjson.dumps({"entries": [], "next": None})
PATHS = ["httpx", "aiohttp"]  # how entry pages are read (NodeFetcher page_tls)


def _fetcher(client: httpx.AsyncClient, port: int, path: str, **kw: float) -> NodeFetcher:
    tls = client_tls(None, setting="test") if path == "aiohttp" else None
    limits: dict[str, float] = {"max_bytes": 10**6, "timeout": 10, **kw}
    return NodeFetcher(
        client,
        f"http://127.0.0.1:{port}",
        max_bytes=int(limits["max_bytes"]),
        timeout=limits["timeout"],
        page_tls=tls,
    )


async def _serve(drop_first: int) -> tuple[asyncio.Server, list[str]]:
    """A node that closes its first `drop_first` connections without a word, then answers."""
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        seen.append(request.split(b" ")[1].decode())
        if len(seen) > drop_first:
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n" % len(BODY) + BODY
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, seen


async def _entries(drop_first: int, path: str = "httpx") -> tuple[object, list[str]]:
    server, seen = await _serve(drop_first)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient() as client, _fetcher(client, port, path) as fetcher:
            try:
                return await fetcher.entries(0, 1000), seen
            except FetchError as exc:
                return exc, seen
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dropped", [1, 2])
def test_a_dropped_connection_is_tried_again(dropped: int, path: str) -> None:
    assert RETRIES >= 2  # a harvester rides out a node closing two kept-alive connections
    result, seen = asyncio.run(_entries(drop_first=dropped, path=path))
    assert result == ([], None)
    assert seen == ["/v1/log/entries?start=0&limit=1000"] * (dropped + 1)


@pytest.mark.parametrize("path", PATHS)
def test_a_node_that_never_answers_is_a_fetch_error_naming_the_attempts(path: str) -> None:
    result, seen = asyncio.run(_entries(drop_first=100, path=path))
    assert isinstance(result, FetchError)
    error = "RemoteProtocolError" if path == "httpx" else "ServerDisconnectedError"
    assert error in str(result) and f"{RETRIES + 1} attempts" in str(result)
    assert "/v1/log/entries" in str(result)
    # aiohttp sends an idempotent request a second time on a dropped connection itself
    assert len(seen) == (RETRIES + 1) * (1 if path == "httpx" else 2)


@pytest.mark.parametrize("status", [404, 500])
def test_an_answer_is_never_retried(status: int) -> None:
    async def go() -> tuple[object, int]:
        hits = 0

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal hits
            await reader.readuntil(b"\r\n\r\n")
            hits += 1
            writer.write(
                b"HTTP/1.1 %d X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n" % status
            )
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with httpx.AsyncClient() as client:
            fetcher = NodeFetcher(client, f"http://127.0.0.1:{port}", max_bytes=10**6, timeout=10)
            try:
                await fetcher.checkpoint()
                result: object = None
            except FetchError as exc:
                result = exc
        server.close()
        await server.wait_closed()
        return result, hits

    result, hits = asyncio.run(go())
    assert isinstance(result, FetchError) and f"HTTP {status}" in str(result)
    assert hits == 1


async def _answer(respond: bytes, path: str, body: bool = True, **kw: float) -> tuple[object, int]:
    """Entry page 0 from a node that answers `respond` then, unless it is refused first,
    a body of 32 MB (no Content-Length); the result and the body bytes it wrote."""
    written = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        await reader.readuntil(b"\r\n\r\n")
        writer.write(respond)
        try:
            for _ in range(512 if body else 0):
                writer.write(b" " * 65536)
                await writer.drain()
                written += 65536
        except ConnectionError:
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient() as client, _fetcher(client, port, path, **kw) as fetcher:
            try:
                result: object = await fetcher.entries(0, 1000)
            except FetchError as exc:
                result = exc
    finally:
        server.close()
        await server.wait_closed()
    return result, written


@pytest.mark.parametrize("path", PATHS)
def test_entry_page_declared_too_big_is_refused_before_its_body(path: str) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4194304\r\n\r\n"
    result, written = asyncio.run(_answer(head, path, max_bytes=10**6))
    assert isinstance(result, FetchError)
    assert "response of 4194304 bytes exceeds the limit of 1000000" in str(result)
    assert "/v1/log/entries" in str(result)
    assert written < 32 << 20


@pytest.mark.parametrize("path", PATHS)
def test_entry_page_streamed_too_big_is_refused_while_streaming(path: str) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
    result, written = asyncio.run(_answer(head, path, max_bytes=10**6))
    assert isinstance(result, FetchError)
    assert "response exceeds the limit of 1000000 bytes" in str(result)
    assert "/v1/log/entries" in str(result)
    assert written < 32 << 20  # refused before the node had sent it all


@pytest.mark.parametrize("path", PATHS)
def test_entry_page_timeout_is_a_fetch_error_naming_the_url(path: str) -> None:
    async def go() -> object:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            await reader.read()  # never answers; until the client gives up and closes
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with (
                httpx.AsyncClient() as client,
                _fetcher(client, port, path, timeout=0.3) as fetcher,
            ):
                try:
                    return await fetcher.entries(0, 1000)
                except FetchError as exc:
                    return exc
        finally:
            server.close()
            await server.wait_closed()

    result = asyncio.run(go())
    assert isinstance(result, FetchError)
    assert "/v1/log/entries: no complete answer within 0.3 s" in str(result)


@pytest.mark.parametrize("path", PATHS)
def test_entry_page_error_status_is_a_fetch_error(path: str) -> None:
    head = b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    result, _ = asyncio.run(_answer(head, path, body=False))
    assert isinstance(result, FetchError)
    assert "/v1/log/entries: HTTP 503" in str(result)


def test_entry_page_refused_connection_is_a_fetch_error_naming_the_url() -> None:
    async def go() -> object:
        async with httpx.AsyncClient() as client, _fetcher(client, 9, "aiohttp") as fetcher:
            try:
                return await fetcher.entries(0, 1000)
            except FetchError as exc:
                return exc

    result = asyncio.run(go())
    assert isinstance(result, FetchError)
    assert str(result).startswith("GET http://127.0.0.1:9/v1/log/entries: ClientConnectorError")


def test_entry_pages_read_by_aiohttp_equal_those_read_by_httpx(tmp_path: Path) -> None:
    """Both paths hand the harvest the same entries from a real node."""
    node = DemoNode("DE", tmp_path / "DE")
    prepare_node(node, samples=120, seed=5, workdir=tmp_path)
    server = LiveServer(node_app(node.home, f"http://127.0.0.1:{node.port}"), node.port).start()
    try:

        async def read(path: str) -> list[object]:
            pages: list[object] = []
            async with httpx.AsyncClient() as client, _fetcher(client, node.port, path) as f:
                start: int | None = 0
                while start is not None:
                    page, start = await f.entries(start, 50)
                    pages.extend(page)
            return pages

        by_httpx = asyncio.run(read("httpx"))
        assert len(by_httpx) > 0
        assert asyncio.run(read("aiohttp")) == by_httpx
    finally:
        server.stop()
