"""Harvest every active node concurrently: fetch, verify (protocol.verify), apply in one transaction.

Each node is isolated: its failures are recorded against it and never stop the others.
Rollback and equivocation halt the node, keep both signed checkpoints as evidence and raise
an alert. Everything of one verified step (leaves, content, index, rejections, the new
checkpoint and the catalogue-log leaf) is committed in ONE transaction, so a harvest killed
at any moment leaves the database as it was before that step.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from sqlalchemy import Engine, select

from catalogue.apply import StepData, apply_step, record_failure, record_halt, record_unchanged
from catalogue.errors import FetchError
from catalogue.fetcher import NodeFetcher
from catalogue.models import nodes
from catalogue.ownlog import CatalogueKey
from catalogue.settings import Settings
from protocol.errors import BiobankError, EquivocationError, RollbackError
from protocol.merkle import CompactRange
from protocol.note import Verifier
from protocol.schema import SchemaSet
from protocol.verify import StepVerifier, TrustedState

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one node's harvest did."""

    origin: str
    ok: bool
    added: int = 0
    size: int = 0
    error: str | None = None
    halted: bool = False


class Harvester:
    """Harvests all active nodes; network via an injectable httpx transport."""

    def __init__(self, *, engine: Engine, settings: Settings, key: CatalogueKey,
                 schemas: SchemaSet | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.key = key
        self.schemas = schemas or SchemaSet.default()
        self.transport = transport
        self._write_lock = threading.Lock()
        self._remote: dict[int, int] = {}  # node id -> size of its last verified checkpoint

    def run(self) -> list[Outcome]:
        """One-shot harvest of every active node (blocking)."""
        return asyncio.run(self.harvest_all())

    async def harvest_all(self) -> list[Outcome]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(nodes).where(nodes.c.state == "active")
                                .order_by(nodes.c.origin)).all()
        limits = httpx.Limits(max_connections=max(4, 2 * len(rows)))
        async with httpx.AsyncClient(transport=self.transport, limits=limits,
                                     timeout=self.settings.request_timeout) as client:
            return list(await asyncio.gather(*(self._guarded(client, r) for r in rows)))

    async def _guarded(self, client: httpx.AsyncClient, row: Any) -> Outcome:
        try:
            return await asyncio.wait_for(self.harvest_node(client, row),
                                          self.settings.node_deadline)
        except (RollbackError, EquivocationError) as exc:
            kind = "rollback" if isinstance(exc, RollbackError) else "equivocation"
            await asyncio.to_thread(self._locked, record_halt, self.engine, row.id, kind, exc)
            return Outcome(row.origin, ok=False, error=_text(exc), halted=True)
        except TimeoutError:
            error = (f"harvest of {row.origin} did not finish within "
                     f"{self.settings.node_deadline:g} s")
        except BiobankError as exc:
            error = _text(exc)
        except Exception as exc:  # a bug must not stop the other nodes; it is recorded
            log.exception("harvest of %s failed", row.origin)
            error = f"internal error: {type(exc).__name__}: {exc}"
        await asyncio.to_thread(self._locked, record_failure, self.engine, row.id, error,
                                self._remote.get(row.id))
        return Outcome(row.origin, ok=False, error=error)

    def _locked(self, fn: Any, *args: Any) -> Any:
        with self._write_lock:
            return fn(*args)

    async def harvest_node(self, client: httpx.AsyncClient, row: Any) -> Outcome:
        """Fetch and verify one node's new entries, page by page, and apply them as one step."""
        s = self.settings
        fetcher = NodeFetcher(client, row.url, max_bytes=s.max_response_bytes,
                              timeout=s.request_timeout)
        note = await fetcher.checkpoint()
        state = _trusted(row)
        # Checks signature, origin, rollback and same-size equivocation before any entry.
        verifier = StepVerifier(state, note, [Verifier.from_key(row.key)], self.schemas,
                                origin=row.origin)
        size = verifier.checkpoint.size
        self._remote[row.id] = size
        if size == verifier.old_size:
            await asyncio.to_thread(self._locked, record_unchanged, self.engine, row.id, size)
            return Outcome(row.origin, ok=True, size=size)
        if size - verifier.old_size > s.max_step:
            raise FetchError(f"{row.origin}: {size - verifier.old_size} new entries exceed the "
                             f"step limit of {s.max_step} (CATALOGUE_MAX_STEP)")
        step = StepData(node_id=row.id, origin=row.origin, country=row.country,
                        old_size=verifier.old_size)
        async for page in _pages(fetcher, row.origin, verifier.old_size, size, s.page_size):
            for leaf, content in page:
                step.add(verifier.feed(leaf, content))
        step.finish(verifier.finish())
        await asyncio.to_thread(self._locked, apply_step, self.engine, self.key, step)
        return Outcome(row.origin, ok=True, added=size - verifier.old_size, size=size)


def _trusted(row: Any) -> TrustedState | None:
    if not row.checkpoint:
        return None
    return TrustedState(origin=row.origin, size=int(row.tree_size),
                        root=base64.b64decode(row.root),
                        compact=CompactRange.from_json(orjson.loads(row.compact)),
                        checkpoint=row.checkpoint)


async def _pages(fetcher: NodeFetcher, origin: str, start: int, end: int,
                 page_size: int) -> AsyncIterator[list[tuple[bytes, Any]]]:
    """Entries [start, end) as pages of (leaf bytes, content); entries past `end` are ignored.

    The next page is requested while the current one is verified.
    """
    pos = start
    pending = asyncio.ensure_future(fetcher.entries(pos, min(page_size, end - pos)))
    try:
        while pos < end:
            entries, nxt = await pending
            entries = entries[: end - pos]
            if not entries:
                return  # fewer leaves than the checkpoint claims: finish() names what is missing
            page = [_decode(origin, pos + i, e) for i, e in enumerate(entries)]
            pos += len(entries)
            if nxt is not None and pos < end:
                pending = asyncio.ensure_future(fetcher.entries(pos, min(page_size, end - pos)))
            else:
                pending = None
            yield page
            if pending is None:
                return
    finally:
        if pending is not None and not pending.done():
            pending.cancel()


def _decode(origin: str, index: int, e: Any) -> tuple[bytes, Any]:
    if not isinstance(e, dict) or not isinstance(e.get("leaf"), str):
        raise FetchError(f"{origin}: entry {index} is not {{'leaf': base64, 'content': ...}}")
    try:
        leaf = base64.b64decode(e["leaf"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FetchError(f"{origin}: entry {index}: leaf is not base64") from exc
    content = e.get("content")
    if content is not None and not isinstance(content, dict):
        raise FetchError(f"{origin}: entry {index}: content is not a JSON object")
    return leaf, content


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
