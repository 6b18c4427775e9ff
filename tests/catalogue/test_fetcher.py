"""NodeFetcher over a real socket: a kept-alive connection the node closes is tried again."""

from __future__ import annotations

import asyncio
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

import httpx
import orjson
import pytest

from catalogue.errors import FetchError
from catalogue.harvest.fetcher import KEEP_BUFFER, RETRIES, NodeFetcher

BODY = orjson.dumps({"entries": [], "next": None})


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


async def _entries(drop_first: int) -> tuple[object, list[str]]:
    server, seen = await _serve(drop_first)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient() as client:
            fetcher = NodeFetcher(client, f"http://127.0.0.1:{port}", max_bytes=10**6, timeout=10)
            try:
                return await fetcher.entries(0, 1000), seen
            except FetchError as exc:
                return exc, seen
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("dropped", [1, 2])
def test_a_dropped_connection_is_tried_again(dropped: int) -> None:
    assert RETRIES >= 2  # a harvester rides out a node closing two kept-alive connections
    result, seen = asyncio.run(_entries(drop_first=dropped))
    assert result == ([], None)
    assert seen == ["/v1/log/entries?start=0&limit=1000"] * (dropped + 1)


def test_a_node_that_never_answers_is_a_fetch_error_naming_the_attempts() -> None:
    result, seen = asyncio.run(_entries(drop_first=100))
    assert isinstance(result, FetchError)
    assert "RemoteProtocolError" in str(result) and f"{RETRIES + 1} attempts" in str(result)
    assert len(seen) == RETRIES + 1


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


class _Missed(importlib.abc.MetaPathFinder):
    """Last on sys.meta_path: sees only the imports no other finder could satisfy."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        self.names.append(fullname)
        return None


async def _pages_with(missed: _Missed, pages: int) -> int:
    server, _seen = await _serve(drop_first=0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient() as client:
            fetcher = NodeFetcher(client, f"http://127.0.0.1:{port}", max_bytes=10**6, timeout=10)
            await fetcher.entries(0, 1000)  # the client's lazy imports, once
            sys.meta_path.append(missed)
            try:
                for _ in range(pages):
                    assert await fetcher.entries(0, 1000) == ([], None)
            finally:
                sys.meta_path.remove(missed)
            return pages
    finally:
        server.close()
        await server.wait_closed()


def test_fetching_a_page_searches_for_no_missing_module() -> None:
    """httpcore imports sniffio on each request; without it installed every request's failed
    import searched the whole sys.path (about 0.25 ms of CPU a request). A dependency now."""
    missed = _Missed()
    assert asyncio.run(_pages_with(missed, 5)) == 5
    assert missed.names == []


def _bodies() -> list[bytes]:
    """A long page, a short one, a long one again, and one past the kept buffers' size."""
    entry = {"leaf": "eyJ9", "content": {"x": "y" * 500}}
    return [
        orjson.dumps({"entries": [entry] * 1000, "next": 1000}),
        orjson.dumps({"entries": [entry] * 3, "next": None}),
        orjson.dumps({"entries": [{"leaf": "ZQ==", "content": None}] * 900, "next": 900}),
        orjson.dumps({"entries": [entry] * 9000, "next": None}),  # about 4.7 MB
        b'{"entries":[],"next":null}',
    ]


async def _json_in_turn(bodies: list[bytes]) -> tuple[list[object], int]:
    queue = list(bodies)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while queue:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            body = queue.pop(0)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n" % len(body) + body
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient() as client:
            fetcher = NodeFetcher(client, f"http://127.0.0.1:{port}", max_bytes=10**7, timeout=10)
            docs = [await fetcher.get_json("/v1/log/entries") for _ in bodies]
            kept = sum(len(b) for b in fetcher._buffers)  # noqa: SLF001 (what the fetcher holds)
            return docs, kept
    finally:
        server.close()
        await server.wait_closed()


def test_json_bodies_read_into_a_kept_buffer_parse_each_response_whole() -> None:
    """Responses parsed as JSON are read into a buffer kept for the next one: a short body
    after a long one is parsed alone (nothing of the longer one's bytes), and a buffer
    grown past KEEP_BUFFER is let go."""
    bodies = _bodies()
    docs, kept = asyncio.run(_json_in_turn(bodies))
    assert docs == [orjson.loads(b) for b in bodies]
    assert len(bodies[3]) > KEEP_BUFFER
    assert 0 < kept <= KEEP_BUFFER


def test_harvest_client_takes_what_a_read_returned_whole_not_in_64k_pieces() -> None:
    """httpcore reads a body in pieces of at most READ_NUM_BYTES; the harvest raises it past
    the 256 KiB asyncio reads at once (catalogue.harvest.fetcher.READ_PIECE). Fails if
    httpcore no longer reads that attribute (the setting would silently do nothing)."""
    import inspect

    import httpcore

    from catalogue.harvest.fetcher import READ_PIECE

    assert READ_PIECE >= 256 * 1024
    assert httpcore.AsyncHTTP11Connection.READ_NUM_BYTES == READ_PIECE
    methods = vars(httpcore.AsyncHTTP11Connection).values()
    readers = [
        f for f in methods if inspect.isfunction(f) and "READ_NUM_BYTES" in f.__code__.co_names
    ]
    assert readers  # a method of the connection still reads the attribute


def test_fetcher_reads_a_body_larger_than_a_read_piece_whole() -> None:
    """A body of several read pieces (and of many 256 KiB socket reads) arrives whole."""
    from catalogue.harvest.fetcher import READ_PIECE

    body = orjson.dumps({"entries": [{"leaf": "AA==", "content": {"x": "y" * 1000}}] * 3000})
    assert len(body) > 2 * READ_PIECE

    async def run() -> object:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body
            )
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with httpx.AsyncClient() as client:
                fetcher = NodeFetcher(
                    client, f"http://127.0.0.1:{port}", max_bytes=8 << 20, timeout=10
                )
                return await fetcher.get_json("/v1/log/entries")
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(run()) == orjson.loads(body)
