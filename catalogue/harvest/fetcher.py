"""HTTP reads from one node with a timeout, a total deadline and a response size limit."""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

import httpcore
import httpx
import orjson
from pybase64 import b64decode as fast_b64decode

from catalogue.errors import FetchError

__all__ = ["READ_PIECE", "RETRIES", "NodeFetcher", "decode_page"]

KEEP_BUFFER = 4 << 20  # a larger body's buffer is not kept for the next response
RETRIES = 2  # more attempts for a GET whose connection the server closed without answering

# httpx reads a body through httpcore in pieces of at most READ_NUM_BYTES (64 KiB), while
# asyncio hands over what one recv() got (up to 256 KiB): anyio cuts such a piece into
# 64 KiB ones (copying the rest each time), and each goes through the whole stack (anyio,
# httpcore, h11, httpx). Taking what arrived whole: the client's CPU for a 1 MB page of
# stored bytes (everything but its JSON parse) 2.8-2.9 -> 2.3-2.4 µs an entry (node/README.md
# "Serving log pages"). The memory held is the same: the pieces exist either way.
READ_PIECE = 1 << 20
httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = READ_PIECE


class NodeFetcher:
    """Reads one node's descriptor, checkpoint and entries; every failure is a FetchError."""

    def __init__(
        self, client: httpx.AsyncClient, base_url: str, *, max_bytes: int, timeout: float
    ) -> None:
        self.client = client
        self.base = base_url.rstrip("/")
        self.max_bytes = max_bytes
        self.timeout = timeout
        # bodies parsed as JSON are read into buffers kept for the next response: a fresh
        # 1 MB buffer a page cost 0.3 ms of page faults in a harvest process (its mmap
        # threshold is fixed at 256 KB: harvester._bounded_malloc)
        self._buffers: list[bytearray] = []

    async def get_bytes(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        body = await self._get(path, params, None)
        assert isinstance(body, bytes)
        return body

    async def _get(
        self, path: str, params: dict[str, Any] | None, into: bytearray | None
    ) -> bytes | int:
        """The body (as bytes, or its length once read into `into`), with the retries."""
        url = self.base + path
        for attempt in range(1, RETRIES + 2):
            try:
                return await asyncio.wait_for(self._read(url, params, into), self.timeout)
            except TimeoutError as exc:
                raise FetchError(
                    f"GET {url}: no complete answer within {self.timeout:g} s"
                ) from exc
            except httpx.RemoteProtocolError as exc:
                # the server closed a kept-alive connection as the request went out (it idled
                # while this harvester waited for its database); a GET is safe to send again
                if attempt <= RETRIES:
                    continue
                raise FetchError(
                    f"GET {url}: {type(exc).__name__}: {exc} ({attempt} attempts)"
                ) from exc
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise FetchError(f"GET {url[:200]}: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read(
        self, url: str, params: dict[str, Any] | None, into: bytearray | None
    ) -> bytes | int:
        async with self.client.stream("GET", url, params=params) as resp:
            if resp.status_code != 200:
                raise FetchError(f"GET {url}: HTTP {resp.status_code}")
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise FetchError(
                    f"GET {url}: response of {declared} bytes exceeds the limit of {self.max_bytes}"
                )
            chunks: list[bytes] = []
            total = 0
            async for chunk in resp.aiter_bytes():
                end = total + len(chunk)
                if end > self.max_bytes:
                    raise FetchError(
                        f"GET {url}: response exceeds the limit of {self.max_bytes} bytes"
                    )
                if into is None:
                    chunks.append(chunk)
                else:  # overwrites what the buffer held, grows it past its end
                    into[total:end] = chunk
                total = end
            return b"".join(chunks) if into is None else total

    async def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        buffer = self._buffers.pop() if self._buffers else bytearray()
        try:
            size = await self._get(path, params, buffer)
            assert isinstance(size, int)
            with memoryview(buffer) as whole, whole[:size] as body:
                try:
                    return orjson.loads(body)  # strings and numbers are copies: no view kept
                except orjson.JSONDecodeError as exc:
                    raise FetchError(f"GET {self.base + path}: not JSON ({exc})") from exc
        finally:
            if len(buffer) <= KEEP_BUFFER:
                self._buffers.append(buffer)

    async def descriptor(self) -> dict[str, Any]:
        doc = await self.get_json("/.well-known/biobank-node")
        if not isinstance(doc, dict):
            raise FetchError(f"{self.base}/.well-known/biobank-node: not a JSON object")
        return doc

    async def checkpoint(self) -> str:
        data = await self.get_bytes("/v1/log/checkpoint")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FetchError(f"{self.base}/v1/log/checkpoint: not UTF-8 text") from exc

    async def consistency(self, first: int, second: int) -> list[bytes]:
        """The node's consistency proof between two tree sizes (RFC 9162)."""
        path = "/v1/log/proof/consistency"
        doc = await self.get_json(path, {"from": first, "to": second})
        proof = doc.get("proof") if isinstance(doc, dict) else None
        try:
            if not isinstance(proof, list):
                raise TypeError("no 'proof' list")
            return [base64.b64decode(h, validate=True) for h in proof]
        except (TypeError, ValueError) as exc:
            raise FetchError(f"{self.base}{path}?from={first}&to={second}: {exc}") from exc

    async def entries(self, start: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        """One page: the entries (as served) and `next`."""
        path = "/v1/log/entries"
        doc = await self.get_json(path, {"start": start, "limit": limit})
        if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
            raise FetchError(f"{self.base}{path}?start={start}: no 'entries' list")
        nxt = doc.get("next")
        if nxt is not None and (not isinstance(nxt, int) or nxt <= start):
            raise FetchError(f"{self.base}{path}?start={start}: bad 'next' {nxt!r}")
        return doc["entries"], nxt


def decode_page(origin: str, start: int, entries: list[Any]) -> list[tuple[bytes, Any]]:
    """The entries of a page starting at index `start` as (leaf bytes, content); a
    FetchError names the first entry that is not {"leaf": base64, "content": object or
    null}. The common page is decoded in one comprehension (a call per entry, as the
    refusals are made, cost 0.5 µs an entry), its leaves by pybase64 (SIMD; 0.55 µs an
    entry where binascii took 1.1): where it decodes a leaf, its bytes are binascii's in
    strict mode (tests/catalogue/test_harvest_pipe.py); a page with a leaf it refuses
    (it is the stricter: padding past the last quantum) goes the reference way, entry by
    entry with binascii's strict mode deciding."""
    a2b = fast_b64decode
    try:
        page = [(a2b(e["leaf"], validate=True), e.get("content")) for e in entries]
    except (TypeError, KeyError, AttributeError, ValueError):  # binascii.Error is a ValueError
        pass
    else:
        for _leaf, content in page:
            if content is not None and type(content) is not dict:
                break
        else:
            return page
    return [_decode_entry(origin, start + i, e) for i, e in enumerate(entries)]


def _decode_entry(origin: str, index: int, e: Any) -> tuple[bytes, Any]:
    if not isinstance(e, dict) or not isinstance(e.get("leaf"), str):
        raise FetchError(f"{origin}: entry {index} is not {{'leaf': base64, 'content': ...}}")
    try:  # strict: only the base64 alphabet, padding only at the end (as validate=True)
        leaf = binascii.a2b_base64(e["leaf"], strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise FetchError(f"{origin}: entry {index}: leaf is not base64") from exc
    content = e.get("content")
    if content is not None and not isinstance(content, dict):
        raise FetchError(f"{origin}: entry {index}: content is not a JSON object")
    return leaf, content
