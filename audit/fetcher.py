"""Where published material comes from: a catalogue over HTTP, or a bundle saved by `fetch`.

Every source offers the same reads; the checks never know which one they use. A
`RecordingSource` wraps another source and saves everything read into a bundle, so a bundle
holds exactly what `verify` needs.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from binascii import a2b_base64
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol
from urllib.parse import quote

import httpx
import orjson
from pybase64 import b64decode as _fast_decode
from pybase64 import b64encode_as_string as _fast_encode

from protocol.errors import ConfigError, FetchError, NotServed
from protocol.tls import client_tls

PAGE = 1000
BUNDLE_FORMAT = "biobank-audit-bundle/2"  # 2: sample groups; a search answer per query
Entry = tuple[bytes, Any]  # (leaf bytes, content object or None)


class Source(Protocol):
    """The reads an audit needs."""

    label: str

    def descriptor(self) -> dict[str, Any]: ...
    def checkpoint(self) -> str: ...
    def entries(self, end: int) -> Iterator[Entry]: ...
    def node_checkpoint(self, origin: str) -> str: ...
    def node_entries(self, origin: str, end: int) -> Iterator[Entry]: ...
    def search(self, query: str = "") -> dict[str, Any]: ...
    def node_rejections(self, origin: str) -> list[dict[str, Any]]: ...
    def direct_checkpoint(self, origin: str, url: str) -> str: ...
    def direct_consistency(self, origin: str, url: str, first: int, second: int) -> list[bytes]: ...
    def direct_entries(self, origin: str, url: str, start: int, end: int) -> list[Entry]: ...
    def close(self) -> None: ...


def decode_line(line: bytes) -> Entry:
    """One bundle line: (leaf bytes, content or None)."""
    item = orjson.loads(line)
    return _leaf_bytes(item["leaf"]), item.get("content")


def _leaf_bytes(leaf: Any) -> bytes:
    """`base64.b64decode(leaf, validate=True)`; a str (always, from JSON) without its calls.

    pybase64 (SIMD) decodes first, and its bytes are taken only when they encode back to
    exactly `leaf` (canonical base64, which every decoder reads alike); anything else is
    decoded by binascii in strict mode (the reference's bytes or error)."""
    if type(leaf) is str:
        try:
            raw = _fast_decode(leaf, validate=True)
            if _fast_encode(raw) == leaf:
                return raw
        except ValueError:  # binascii.Error, or a str that is not ASCII
            pass
        return a2b_base64(leaf, strict_mode=True)
    return base64.b64decode(leaf, validate=True)


def _decode_page(raw: bytes, where: str) -> tuple[list[Entry], int | None]:
    try:
        page = orjson.loads(raw)
        items = [(_leaf_bytes(e["leaf"]), e.get("content")) for e in page["entries"]]
        nxt = page.get("next")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise FetchError(f"{where}: not an entries page: {exc}") from exc
    return items, nxt if isinstance(nxt, int) else None


# statuses by which a server says it has no such resource (a node without proof endpoints)
_NOT_SERVED = frozenset({404, 405, 501})


class PageTask(NamedTuple):
    """Leaves [start, stop) of a mirror's entries URL, for a worker process to fetch itself."""

    url: str
    start: int
    stop: int
    timeout: float
    ca_bundle: str | None = None  # --ca-bundle (None: the system store)


def fetch_range(client: httpx.Client, task: PageTask) -> list[Entry]:
    """The leaves of `task`; fewer only when the server has no more."""
    return list(_leaves(client, task.url, task.start, task.stop))


def _leaves(client: httpx.Client, url: str, start: int, stop: int) -> Iterator[Entry]:
    """Leaves [start, stop) of an entries URL, page by page; ends early when a page is empty."""
    while start < stop:
        items = _fetch_page(client, url, start, min(PAGE, stop - start))
        if not items:
            return  # the server has fewer entries than its checkpoint: the checks report it
        items = items[: stop - start]
        yield from items
        start += len(items)


def _fetch_page(client: httpx.Client, url: str, start: int, limit: int) -> list[Entry]:
    try:
        resp = client.get(url, params={"start": start, "limit": limit})
    except httpx.HTTPError as exc:
        raise FetchError(f"GET {url}: {exc}") from exc
    if resp.status_code != 200:
        raise FetchError(f"GET {resp.request.url}: HTTP {resp.status_code}")
    return _decode_page(resp.content, f"{url}?start={start}")[0]


class LineBlock(NamedTuple):
    """Bundle lines [offset, offset + length) of a file: `lines` whole lines (the last may
    lack its newline), for a worker process to read and examine itself."""

    path: str
    offset: int
    length: int
    lines: int


def line_ranges(
    fh: io.BufferedIOBase, end: int, size: int, read: int = 1 << 23
) -> Iterator[tuple[int, int, int]]:
    """(offset, length, lines) of consecutive blocks of whole lines covering the first `end`
    lines of `fh`, about `size` lines each: blocks of about `size` times the mean length of
    the first `size` lines, cut at a newline, their lines counted (`_newlines`) in one
    buffer read into (`read` bytes at a time, grown for a longer line). Lines are never
    copied."""
    buf = bytearray(max(read, 1))
    filled = pos = offset = budget = 0  # buf[pos:filled] is the file from `offset` on
    left, eof = end, False
    while left > 0:
        if not eof and (
            filled - pos < budget
            or buf.find(b"\n", pos, filled) < 0
            or (budget == 0 and buf.count(b"\n", pos, filled) < size)
        ):
            if pos:  # keep the unread tail at the front
                buf[: filled - pos] = buf[pos:filled]
                filled, pos = filled - pos, 0
            if filled == len(buf):
                buf.extend(bytes(len(buf)))
            got = fh.readinto(memoryview(buf)[filled:])
            eof = not got
            filled += got or 0
            continue
        if pos == filled:
            return
        if budget == 0:  # from the first lines: bytes per block
            cut, count = pos, 0
            while count < size and (found := buf.find(b"\n", cut, filled)) >= 0:
                cut, count = found + 1, count + 1
            budget = max(cut - pos, 1)
        stop = min(pos + budget, filled)
        cut = buf.rfind(b"\n", pos, stop) + 1 or buf.find(b"\n", pos, filled) + 1 or filled
        lines = _newlines(buf, pos, cut) + (buf[cut - 1] != 10)  # 10: a newline
        if lines > left:  # the last block: cut after line `left`
            cut, lines = pos, 0
            while lines < left and (found := buf.find(b"\n", cut, filled)) >= 0:
                cut, lines = found + 1, lines + 1
        yield offset, cut - pos, lines
        offset, left, pos = offset + cut - pos, left - lines, cut


def _newlines(buf: bytearray, start: int, stop: int) -> int:
    """`buf.count(b"\n", start, stop)`, by `find` (memchr) from newline to newline: for
    bundle lines (about 1 KB) twice as fast as `count`, which compares byte by byte."""
    find, count, at = buf.find, 0, start
    while (at := find(b"\n", at, stop) + 1) > 0:
        count += 1
    return count


def read_lines(block: LineBlock) -> list[bytes]:
    """The lines of a block (each without its newline)."""
    with open(block.path, "rb") as fh:
        fh.seek(block.offset)
        data = fh.read(block.length)
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    return lines


class HttpSource:
    """A live catalogue (and, for --node-direct, the nodes themselves)."""

    def __init__(
        self,
        *,
        catalogue: str,
        client: httpx.Client | None = None,
        ca_bundle: str | Path | None = None,
    ) -> None:
        self.base = catalogue.rstrip("/")
        self.label = self.base
        # certificates always verified: against --ca-bundle, else the system store
        self.ca_bundle = str(ca_bundle) if ca_bundle else None
        verify = client_tls(self.ca_bundle, setting="--ca-bundle")
        self.client = client or httpx.Client(timeout=30.0, follow_redirects=False, verify=verify)

    def _get(self, url: str, **params: Any) -> httpx.Response:
        try:
            resp = self.client.get(url, params=params or None)
        except httpx.HTTPError as exc:
            raise FetchError(f"GET {url}: {exc}") from exc
        if resp.status_code in _NOT_SERVED:
            raise NotServed(f"GET {resp.request.url}: HTTP {resp.status_code}")
        if resp.status_code != 200:
            raise FetchError(f"GET {resp.request.url}: HTTP {resp.status_code}")
        return resp

    def _json(self, url: str, **params: Any) -> Any:
        try:
            return orjson.loads(self._get(url, **params).content)
        except orjson.JSONDecodeError as exc:
            raise FetchError(f"GET {url}: not JSON: {exc}") from exc

    def _pages(self, prefix: str, end: int, start: int = 0) -> Iterator[Entry]:
        return _leaves(self.client, f"{prefix}/entries", start, end)

    def node_entry_tasks(self, origin: str, end: int, size: int) -> Iterator[PageTask]:
        """`node_entries` as tasks of `size` leaves that worker processes fetch and examine
        (`audit.examine.examine_task`); a short task means the mirror ended there."""
        timeout = self.client.timeout.read or 30.0
        for start in range(0, end, size):
            yield PageTask(
                f"{self._node(origin)}/entries",
                start,
                min(end, start + size),
                timeout,
                self.ca_bundle,
            )

    def _node(self, origin: str) -> str:
        return f"{self.base}/v1/nodes/{quote(origin, safe='/')}/log"

    def descriptor(self) -> dict[str, Any]:
        data = self._json(f"{self.base}/.well-known/biobank-catalogue")
        if not isinstance(data, dict):
            raise FetchError("/.well-known/biobank-catalogue: not a JSON object")
        return data

    def checkpoint(self) -> str:
        return self._get(f"{self.base}/v1/log/checkpoint").text

    def entries(self, end: int) -> Iterator[Entry]:
        return self._pages(f"{self.base}/v1/log", end)

    def node_checkpoint(self, origin: str) -> str:
        return self._get(f"{self._node(origin)}/checkpoint").text

    def node_entries(self, origin: str, end: int) -> Iterator[Entry]:
        return self._pages(self._node(origin), end)

    def search(self, query: str = "") -> dict[str, Any]:
        """The /v1/search answer for `query` (a query string; "" for the unfiltered search)."""
        data = self._json(f"{self.base}/v1/search" + (f"?{query}" if query else ""))
        if not isinstance(data, dict):
            raise FetchError(f"/v1/search?{query}: not a JSON object")
        return data

    def node_rejections(self, origin: str) -> list[dict[str, Any]]:
        """The catalogue's rejection report of a node (records it keeps out of its index)."""
        url = f"{self.base}/v1/nodes/{quote(origin, safe='/')}/rejections"
        data = self._json(url)
        found = data.get("rejections") if isinstance(data, dict) else None
        if not isinstance(found, list):
            raise FetchError(f"{url}: not {{'rejections': [...]}}")
        return [r for r in found if isinstance(r, dict)]

    def direct_checkpoint(self, origin: str, url: str) -> str:
        return self._get(f"{url.rstrip('/')}/v1/log/checkpoint").text

    def direct_consistency(self, origin: str, url: str, first: int, second: int) -> list[bytes]:
        data = self._json(
            f"{url.rstrip('/')}/v1/log/proof/consistency", to=second, **{"from": first}
        )
        try:
            return [base64.b64decode(h, validate=True) for h in data["proof"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise FetchError(f"{url}: consistency proof malformed: {exc}") from exc

    def direct_entries(self, origin: str, url: str, start: int, end: int) -> list[Entry]:
        """The node's own leaves [start, end) (a node ahead of its mirror: key rotations)."""
        return list(self._pages(f"{url.rstrip('/')}/v1/log", end, start))

    def close(self) -> None:
        self.client.close()


class BundleSource:
    """A bundle directory written by `biobank-audit fetch`; reads never touch the network."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.meta: dict[str, Any] = json.loads((path / "bundle.json").read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"bundle {path}: no readable bundle.json: {exc}") from exc
        if self.meta.get("format") != BUNDLE_FORMAT:
            raise ConfigError(
                f"bundle {path}: format {self.meta.get('format')!r} is not {BUNDLE_FORMAT!r}"
            )
        self.label = f"bundle {path} (of {self.meta.get('catalogue')})"

    def _need(self, *keys: str) -> Any:
        value: Any = self.meta
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                raise FetchError(f"bundle {self.path}: {'/'.join(keys)} was not saved")
            value = value[key]
        return value

    def _lines(self, name: str, end: int) -> Iterator[Entry]:
        with open(self.path / name, "rb") as fh:
            for count, line in enumerate(fh):
                if count >= end:
                    return
                yield decode_line(line)

    def node_entry_tasks(self, origin: str, end: int, size: int) -> Iterator[LineBlock]:
        """The lines `node_entries` decodes as blocks of about `size` lines, which worker
        processes read from the file themselves (`audit.examine.examine_task` decodes them as
        `node_entries` does)."""
        path = self.path / str(self._need("mirrors", origin, "file"))
        with open(path, "rb") as fh:
            for offset, length, lines in line_ranges(fh, end, size):
                yield LineBlock(str(path), offset, length, lines)

    def descriptor(self) -> dict[str, Any]:
        return dict(self._need("descriptor"))

    def checkpoint(self) -> str:
        return str(self._need("checkpoint"))

    def entries(self, end: int) -> Iterator[Entry]:
        return self._lines("catalogue-entries.jsonl", end)

    def node_checkpoint(self, origin: str) -> str:
        return str(self._need("mirrors", origin, "checkpoint"))

    def node_entries(self, origin: str, end: int) -> Iterator[Entry]:
        return self._lines(str(self._need("mirrors", origin, "file")), end)

    def search(self, query: str = "") -> dict[str, Any]:
        return dict(self._need("searches", query))

    def node_rejections(self, origin: str) -> list[dict[str, Any]]:
        return list(self._need("rejections", origin))

    def direct_checkpoint(self, origin: str, url: str) -> str:
        return str(self._need("direct", origin, "checkpoint"))

    def direct_consistency(self, origin: str, url: str, first: int, second: int) -> list[bytes]:
        proof = self._need("direct", origin, "proofs", f"{first}-{second}")
        if isinstance(proof, dict):  # the node answered that it serves no proofs
            raise NotServed(str(proof.get("not_served")))
        return [base64.b64decode(h) for h in proof]

    def direct_entries(self, origin: str, url: str, start: int, end: int) -> list[Entry]:
        saved = self._need("direct", origin, "entries", f"{start}-{end}")
        return [decode_line(orjson.dumps(item)) for item in saved]

    def close(self) -> None:
        return None


class RecordingSource:
    """Reads through another source and saves everything read into a bundle directory."""

    def __init__(self, inner: Source, path: Path) -> None:
        self.inner = inner
        self.path = path
        self.label = inner.label
        path.mkdir(parents=True, exist_ok=True)
        (path / "nodes").mkdir(exist_ok=True)
        self.meta: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "catalogue": inner.label,
            "fetched_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "mirrors": {},
            "direct": {},
            "searches": {},
        }

    def _tee(self, items: Iterator[Entry], name: str) -> Iterator[Entry]:
        with open(self.path / name, "wb") as fh:
            for leaf, content in items:
                _write_line(fh, leaf, content)
                yield leaf, content

    def descriptor(self) -> dict[str, Any]:
        self.meta["descriptor"] = self.inner.descriptor()
        return dict(self.meta["descriptor"])

    def checkpoint(self) -> str:
        self.meta["checkpoint"] = self.inner.checkpoint()
        return str(self.meta["checkpoint"])

    def entries(self, end: int) -> Iterator[Entry]:
        return self._tee(self.inner.entries(end), "catalogue-entries.jsonl")

    def _mirror(self, origin: str) -> dict[str, Any]:
        mirrors: dict[str, dict[str, Any]] = self.meta["mirrors"]
        return mirrors.setdefault(origin, {"file": f"nodes/{len(mirrors)}.jsonl"})

    def node_checkpoint(self, origin: str) -> str:
        text = self.inner.node_checkpoint(origin)
        self._mirror(origin)["checkpoint"] = text
        return text

    def node_entries(self, origin: str, end: int) -> Iterator[Entry]:
        return self._tee(self.inner.node_entries(origin, end), self._mirror(origin)["file"])

    def search(self, query: str = "") -> dict[str, Any]:
        answer = self.meta["searches"][query] = self.inner.search(query)
        return dict(answer)

    def node_rejections(self, origin: str) -> list[dict[str, Any]]:
        found = self.inner.node_rejections(origin)
        self.meta.setdefault("rejections", {})[origin] = found
        return list(found)

    def direct_checkpoint(self, origin: str, url: str) -> str:
        text = self.inner.direct_checkpoint(origin, url)
        self.meta["direct"].setdefault(origin, {"proofs": {}})["checkpoint"] = text
        return text

    def direct_consistency(self, origin: str, url: str, first: int, second: int) -> list[bytes]:
        entry = self.meta["direct"].setdefault(origin, {"proofs": {}})
        try:
            proof = self.inner.direct_consistency(origin, url, first, second)
        except NotServed as exc:  # kept, so that verifying the bundle says the same
            entry["proofs"][f"{first}-{second}"] = {"not_served": exc.message}
            raise
        entry["proofs"][f"{first}-{second}"] = [base64.b64encode(h).decode() for h in proof]
        return proof

    def direct_entries(self, origin: str, url: str, start: int, end: int) -> list[Entry]:
        items = self.inner.direct_entries(origin, url, start, end)
        entry = self.meta["direct"].setdefault(origin, {"proofs": {}})
        entry.setdefault("entries", {})[f"{start}-{end}"] = [
            {"leaf": base64.b64encode(leaf).decode(), "content": content} for leaf, content in items
        ]
        return items

    def close(self) -> None:
        (self.path / "bundle.json").write_text(json.dumps(self.meta, indent=1), "utf-8")
        self.inner.close()


def _write_line(fh: IO[bytes], leaf: bytes, content: Any) -> None:
    fh.write(orjson.dumps({"leaf": base64.b64encode(leaf).decode(), "content": content}))
    fh.write(b"\n")
