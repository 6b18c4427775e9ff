"""The harvest's per-entry path outside the index (issue 19 item 4): the content stored as the
canonical bytes the verifier hashed, pages decoded in one pass with the same refusals, and
the young generation collected every COLLECT_EVERY pages because an entries response's
reference cycle holds none of the page."""

from __future__ import annotations

import asyncio
import base64
import binascii
import gc
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from catalogue.errors import FetchError
from catalogue.harvest.fetcher import NodeFetcher, decode_page
from catalogue.models import leaves
from protocol.canonical import bytes_digest, canonical
from tests.catalogue.conftest import Catalogue
from tests.catalogue.simulator import NodeSimulator


def test_stored_content_is_the_canonical_bytes_the_verifier_hashed(
    catalogue: Catalogue, serve: Any
) -> None:
    sim = NodeSimulator()
    sim.populate(30)  # records written in their own key order, not sorted
    serve(sim)
    catalogue.enrol(sim, sim.url)
    out = catalogue.harvest()[sim.origin]
    assert out.ok and out.added == 32
    with catalogue.engine.connect() as conn:
        rows = conn.execute(
            select(leaves.c.idx, leaves.c.leaf, leaves.c.content).order_by(leaves.c.idx)
        ).all()
    assert len(rows) == 32
    for idx, leaf, content in rows:
        record = sim.contents[int(idx)]
        assert content == canonical(record).decode()
        assert content != orjson.dumps(record).decode()  # not the order the node served
        assert bytes_digest(content.encode()) == orjson.loads(leaf)["digest"]


def _page(n: int) -> list[dict[str, Any]]:
    return [
        {"leaf": base64.b64encode(b'{"i":%d}' % i).decode(), "content": {"id": f"r{i}"}}
        for i in range(n)
    ] + [{"leaf": base64.b64encode(b"{}").decode(), "content": None}]


def test_page_decoding_gives_leaf_bytes_and_contents() -> None:
    page = _page(5)
    assert decode_page("node.example", 100, page) == [
        (base64.b64decode(e["leaf"]), e["content"]) for e in page
    ]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"leaf": "eyJ pIjozfQ==", "content": None}, "leaf is not base64"),  # a space
        ({"leaf": "eyJpIjozfQ", "content": None}, "leaf is not base64"),  # no padding
        ({"leaf": "eyJpIjozfQ==eyJ9", "content": None}, "leaf is not base64"),  # after padding
        ({"leaf": "eyJpIjozfQ==\n", "content": None}, "leaf is not base64"),
        ({"leaf": "ZQ==", "content": ["a"]}, "content is not a JSON object"),
        ({"leaf": "ZQ==", "content": "text"}, "content is not a JSON object"),
        ({"leaf": 7, "content": None}, "is not {'leaf': base64"),
        ({"content": None}, "is not {'leaf': base64"),
        (["ZQ==", None], "is not {'leaf': base64"),
        ("ZQ==", "is not {'leaf': base64"),
    ],
)
def test_page_decoding_refuses_a_malformed_entry_by_its_index(entry: Any, reason: str) -> None:
    page: list[Any] = _page(5)
    page.insert(3, entry)
    with pytest.raises(FetchError, match=r"node\.example: entry 103\b") as info:
        decode_page("node.example", 100, page)
    assert reason in str(info.value)


def _strict(leaf: str) -> bytes | None:
    """The reference: binascii in strict mode (None: refused)."""
    try:
        return binascii.a2b_base64(leaf, strict_mode=True)
    except ValueError:
        return None


def _decoded(leaf: str) -> bytes | None:
    try:
        return decode_page("node.example", 0, [{"leaf": leaf, "content": None}])[0][0]
    except FetchError:
        return None


B64_TEXT = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \né",
    max_size=16,
)


@given(leaf=B64_TEXT | st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()))
def test_page_leaves_decode_as_binascii_strict_mode(leaf: str) -> None:
    """The leaves are decoded by pybase64 first: every leaf gives binascii's strict-mode
    bytes, and is refused exactly when binascii refuses it."""
    assert _decoded(leaf) == _strict(leaf)


@pytest.mark.parametrize("leaf", ["QUJD=", "QUJD====", "QQ==", "QR==", "QUI="])
def test_page_leaves_pybase64_refuses_take_the_reference_path(leaf: str) -> None:
    """pybase64 refuses padding past the last quantum where binascii's strict mode takes
    it: such a page is decoded the reference way, to the same bytes as before."""
    page = [{"leaf": "ZQ==", "content": None}, {"leaf": leaf, "content": {"a": 1}}]
    assert decode_page("node.example", 0, page) == [(b"e", None), (_strict(leaf), {"a": 1})]


PAGE_BYTES = orjson.dumps({"entries": [{"leaf": "eyJ9", "content": {"x": "y" * 600}}] * 1000})


async def _garbage_of_fetching() -> tuple[bytes, int, list[int]]:
    """Two pages fetched as the harvest fetches them, the client closed; then what a full
    collection finds unreachable: how many objects, and the sizes of page-sized buffers
    they hold (the loop still runs, so the server's side is not garbage)."""

    ended = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n" % len(PAGE_BYTES) + PAGE_BYTES
                )
                await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()
            ended.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient() as client:
            fetcher = NodeFetcher(client, f"http://127.0.0.1:{port}", max_bytes=10**7, timeout=10)
            await fetcher.get_bytes("/v1/log/entries")
            body = await fetcher.get_bytes("/v1/log/entries")
        await asyncio.wait_for(ended.wait(), 10)  # the server's side is closed, not garbage
        gc.collect()
        held = [
            len(x)
            for o in gc.garbage
            for x in gc.get_referents(o)
            if isinstance(x, bytes | bytearray | memoryview) and len(x) > 64 * 1024
        ]
        return body, len(gc.garbage), held
    finally:
        server.close()
        await server.wait_closed()


def test_response_cycle_does_not_hold_the_page() -> None:
    """What the garbage of fetching pages holds: no buffer of a page's size (so collecting
    it once a page, as the harvest did, freed no page; it now collects every 16 pages)."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # unreachable objects are kept in gc.garbage, not freed
    try:
        body, cycles, held = asyncio.run(_garbage_of_fetching())
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert body == PAGE_BYTES
    assert cycles > 0  # the cycles are there (the collection still runs, less often)
    assert held == []
