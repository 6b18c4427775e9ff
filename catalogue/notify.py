"""Push, then pull: a node's notification is a hint to harvest it now, never trusted data.

``POST /v1/notify`` carries a node's signed checkpoint, verbatim. :meth:`PushHarvests.accept`
takes it only from an enrolled, active node, verifies its signature with the key(s) the
catalogue holds for that node (``protocol.keys.KeyHistory``, as the harvest does), ignores a
checkpoint no larger than the one already verified, and rate-limits each node
(CATALOGUE_NOTIFY_MIN_INTERVAL). An accepted hint queues the node for an immediate harvest
through the normal verified path (``Harvester.harvest_all`` for that node alone), which
fetches the node's checkpoint itself: nothing of the notification is stored or believed.
A harvest goes to the server's kept worker processes when they are up and idle
(``KeptWorkers``, CATALOGUE_HARVEST_KEEP_WORKERS), so verification stays off the API's
event loop; otherwise a small step (at most CATALOGUE_NOTIFY_INLINE_MAX entries) runs in a
thread of this process, sparing a worker process's start, and a larger one starts workers.
The scheduled harvest stays the backstop; both take :attr:`PushHarvests.lock`, so a node
is never harvested twice at once by this server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from catalogue.cluster import HarvestLeader
from catalogue.context import Context
from catalogue.errors import NodeHalted, NotificationRefused, Throttled, UnknownNode
from catalogue.harvest import Harvester
from catalogue.harvest.keys import load_history
from catalogue.models import nodes
from protocol.errors import BiobankError, InputError, SignatureError
from protocol.note import Checkpoint
from protocol.tls import client_tls

__all__ = ["MAX_NOTE", "Hint", "PushHarvests", "register_with_node"]

log = logging.getLogger(__name__)
MAX_NOTE = 16 * 1024  # a checkpoint note is a few hundred bytes; a rotation's has two lines more


@dataclass(frozen=True)
class Hint:
    """What the catalogue made of one notification."""

    origin: str
    size: int
    status: str  # "queued" | "known"
    tree_size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "size": self.size,
            "status": self.status,
            "verified_size": self.tree_size,
        }


class PushHarvests:
    """Checks notifications and harvests the nodes they name, one batch at a time."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.lock = asyncio.Lock()  # one harvest at a time on this server (schedule or push)
        self.leader = HarvestLeader(ctx.settings.database_url)
        self._last: dict[str, float] = {}  # origin -> monotonic time of its last accepted hint
        self._queued: dict[str, int] = {}  # origin -> notified size, waiting for the worker
        self._wake = asyncio.Event()
        self.harvests = 0  # push harvests run (for tests and metrics)

    async def accept(self, note: str) -> Hint:
        """Check one notification; queue its node's harvest. Raises what the API answers."""
        if len(note) > MAX_NOTE:
            raise InputError(f"a checkpoint note is at most {MAX_NOTE} bytes")
        hint = await asyncio.to_thread(self._check, note)
        if hint.status == "known":
            return hint
        now = time.monotonic()
        interval = self.ctx.settings.notify_min_interval
        last = self._last.get(hint.origin)
        if last is not None and now - last < interval and hint.origin not in self._queued:
            raise Throttled(
                f"{hint.origin}: at most one notification every {interval:g} s is acted on; "
                "this one was not (the node retries)",
                retry_after=interval - (now - last),
            )
        self._last[hint.origin] = now
        self._queued[hint.origin] = max(hint.size, self._queued.get(hint.origin, 0))
        self._wake.set()
        return hint

    def _check(self, note: str) -> Hint:
        body, sep, _ = note.partition("\n\n")
        if not sep:
            raise InputError("the body is not a signed checkpoint note (text/plain)")
        try:
            claimed = Checkpoint.from_text(body + "\n")
        except BiobankError as exc:
            raise InputError(f"the body is not a checkpoint: {exc}") from exc
        with self.ctx.engine.connect() as conn:
            row = conn.execute(select(nodes).where(nodes.c.origin == claimed.origin)).first()
            if row is None or row.state == "retired":
                raise UnknownNode(f"no enrolled node with origin {claimed.origin!r}")
            if row.state == "halted":
                raise NodeHalted(
                    f"{row.origin} is halted (rollback or equivocation); a notification does "
                    "not resume it: the catalogue operator clears it after investigation"
                )
            keys = load_history(conn, row)
        tree_size = int(row.tree_size or 0)
        try:
            checkpoint = keys.verify(note, previous_size=tree_size)
        except SignatureError as exc:
            raise NotificationRefused(
                f"checkpoint signature does not verify with the key enrolled for "
                f"{row.origin}: {exc}"
            ) from exc
        status = "known" if checkpoint.size <= tree_size else "queued"
        return Hint(row.origin, checkpoint.size, status, tree_size)

    async def run(self) -> None:
        """The worker: harvest every queued node as soon as the lock is free."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._harvest_queued()
            except Exception:  # keep the worker alive; each node's failure is recorded
                log.exception("push harvest failed")

    async def _harvest_queued(self) -> None:
        async with self.lock:
            queued, self._queued = self._queued, {}
            if not queued:
                return
            if not await asyncio.to_thread(self.leader.ensure):
                return  # another server harvests: its schedule finds the change
            settings = self.ctx.settings
            step = await asyncio.to_thread(self._largest_step, queued)
            warm = self.ctx.workers is not None and self.ctx.workers.idle
            # a small step in a thread, when no kept worker waits: no worker process to start
            if step <= settings.notify_inline_max and not warm:
                harvester = Harvester(
                    engine=self.ctx.engine,
                    settings=settings.model_copy(update={"harvest_workers": 0}),
                    key=self.ctx.key,
                )
                outcomes = await asyncio.to_thread(
                    asyncio.run, harvester.harvest_all(origins=sorted(queued))
                )
            else:
                harvester = Harvester(
                    engine=self.ctx.engine,
                    settings=settings,
                    key=self.ctx.key,
                    kept=self.ctx.workers,
                )
                outcomes = await harvester.harvest_all(origins=sorted(queued))
            self.harvests += 1
            for outcome in outcomes:
                if not outcome.ok:
                    log.warning("push harvest of %s: %s", outcome.origin, outcome.error)
            await asyncio.to_thread(self._refresh)

    def _largest_step(self, queued: dict[str, int]) -> int:
        with self.ctx.engine.connect() as conn:
            rows = conn.execute(
                select(nodes.c.origin, nodes.c.tree_size).where(nodes.c.origin.in_(queued))
            ).all()
        return max((queued[o] - int(s or 0) for o, s in rows), default=0)

    def _refresh(self) -> None:
        with self.ctx.engine.connect() as conn:
            self.ctx.cube.arrays(conn)  # the next search finds the change at once


async def register_with_node(
    node_url: str, public_url: str | None, *, timeout: float = 10.0, ca_bundle: Path | None = None
) -> str:
    """Ask an enrolled node to notify this catalogue (CATALOGUE_PUBLIC_URL); what happened,
    in words. A refusal or failure never undoes the enrolment: the schedule still harvests."""
    if public_url is None:
        return "not asked (CATALOGUE_PUBLIC_URL unset; the node operator may add this catalogue)"
    verify = client_tls(ca_bundle, setting="CATALOGUE_CA_BUNDLE")
    try:
        async with httpx.AsyncClient(timeout=timeout, verify=verify) as client:
            resp = await client.post(
                f"{node_url.rstrip('/')}/v1/notify/targets", json={"url": public_url}
            )
    except httpx.HTTPError as exc:
        return f"not registered: {type(exc).__name__}: {exc}"
    if resp.is_success:
        return f"registered: the node notifies {public_url}/v1/notify"
    try:
        detail = str(resp.json().get("detail"))
    except (ValueError, AttributeError):
        detail = resp.text[:200]
    return f"not registered: HTTP {resp.status_code}: {detail}"
