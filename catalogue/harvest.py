"""Harvest every active node concurrently: fetch, verify (protocol.verify), apply atomically.

Each node is isolated: its failures are recorded against it and never stop the others.
Fetching and verifying run per node in worker processes (CATALOGUE_HARVEST_WORKERS; 0 runs
them in this process), so verification uses every core and never blocks the API. Rollback
and equivocation halt the node, keep both signed checkpoints as evidence and raise an
alert. Everything of one verified step (leaves, content, index, rejections, the new
checkpoint and the catalogue-log leaf) is committed in ONE transaction by this process, so
a harvest killed at any moment leaves the database as it was before that step.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gc
import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

import httpx
import orjson
from sqlalchemy import Engine, select

from catalogue.apply import StepData, apply_step, record_failure, record_halt, record_unchanged
from catalogue.errors import FetchError
from catalogue.fetcher import NodeFetcher
from catalogue.keyhistory import load_history
from catalogue.models import nodes
from catalogue.ownlog import CatalogueKey
from catalogue.settings import Settings
from protocol.errors import BiobankError, EquivocationError, RollbackError, SignatureError
from protocol.keys import KeyHistory, MissingSignatureError, RevokedKeyError, rotation_hint
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


@dataclass(frozen=True)
class NodeJob:
    """Everything needed to fetch and verify one node (picklable, for worker processes)."""

    node_id: int
    origin: str
    url: str
    key: str  # the enrolled key
    country: str | None
    state: dict[str, Any] | None  # TrustedState.to_json()
    keys: dict[str, Any]  # KeyHistory.to_json(): enrolled key, rotations, revocations
    request_timeout: float
    max_bytes: int
    page_size: int
    max_step: int


@dataclass(repr=False)
class JobResult:
    """A verified step, an unchanged log, or a failure (as text: exceptions do not all pickle)."""

    remote_size: int | None = None
    step: StepData | None = None
    step_blob: bytes | None = None  # the step pickled by a worker, unpickled with GC paused
    error: str | None = None
    halt: str | None = None  # "rollback" | "equivocation"
    trusted_checkpoint: str | None = None
    new_checkpoint: str | None = None


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when the catalogue process is gone (even SIGKILL,
    after which nothing would ever send it work or a stop)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


@cache
def _schemas() -> SchemaSet:
    return SchemaSet.default()


class Harvester:
    """Harvests all active nodes; network via an injectable httpx transport."""

    def __init__(self, *, engine: Engine, settings: Settings, key: CatalogueKey,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.key = key
        self.transport = transport
        self._write_lock = threading.Lock()

    def run(self) -> list[Outcome]:
        """One-shot harvest of every active node (blocking)."""
        return asyncio.run(self.harvest_all())

    async def harvest_all(self) -> list[Outcome]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(nodes).where(nodes.c.state == "active")
                                .order_by(nodes.c.origin)).all()
            jobs = [self._job(r, load_history(conn, r)) for r in rows]
        workers = min(self.settings.harvest_workers, len(jobs))
        pool = None
        if workers > 0 and self.transport is None:
            # spawn, not fork: this process may run threads (uvicorn, to_thread); and a worker
            # must die with its parent, which forkserver children do not on SIGKILL.
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_exit_with_parent, initargs=(os.getpid(),))
        try:
            async with httpx.AsyncClient(transport=self.transport,
                                         timeout=self.settings.request_timeout) as client:
                return list(await asyncio.gather(*(self._one(client, pool, j) for j in jobs)))
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _job(self, row: Any, keys: KeyHistory) -> NodeJob:
        state = _trusted(row, keys)
        s = self.settings
        return NodeJob(node_id=row.id, origin=row.origin, url=row.url, key=row.key,
                       country=row.country, state=state.to_json() if state else None,
                       keys=keys.to_json(),
                       request_timeout=s.request_timeout, max_bytes=s.max_response_bytes,
                       page_size=s.page_size, max_step=s.max_step)

    async def _one(self, client: httpx.AsyncClient, pool: ProcessPoolExecutor | None,
                   job: NodeJob) -> Outcome:
        deadline = self.settings.node_deadline
        try:
            if pool is not None:
                loop = asyncio.get_running_loop()
                result = await asyncio.wait_for(
                    loop.run_in_executor(pool, run_job_in_worker, job, deadline), deadline + 5)
            else:
                result = await guarded_job(job, client, deadline)
        except TimeoutError:
            result = JobResult(error=f"harvest of {job.origin} did not finish within "
                               f"{deadline:g} s")
        except Exception as exc:  # a crashed worker must not stop the other nodes
            log.exception("harvest worker for %s failed", job.origin)
            result = JobResult(error=f"internal error: {type(exc).__name__}: {exc}")
        return await asyncio.to_thread(self._record, job, result)

    def _record(self, job: NodeJob, r: JobResult) -> Outcome:
        with self._write_lock:
            if r.halt:
                record_halt(self.engine, job.node_id, r.halt, r.error or "",
                            r.trusted_checkpoint, r.new_checkpoint)
                return Outcome(job.origin, ok=False, error=r.error, halted=True)
            step = r.step
            if r.step_blob is not None:
                with paused_gc():
                    # our own worker process pickled it (as ProcessPoolExecutor does anyway)
                    step = pickle.loads(r.step_blob)  # noqa: S301
            if step is not None:
                try:
                    with paused_gc():
                        apply_step(self.engine, self.key, step)
                except BiobankError as exc:
                    r = JobResult(remote_size=r.remote_size, error=_text(exc))
                else:
                    return Outcome(job.origin, ok=True, added=step.new_size - step.old_size,
                                   size=step.new_size)
            if r.error is not None:
                record_failure(self.engine, job.node_id, r.error, r.remote_size)
                return Outcome(job.origin, ok=False, error=r.error)
            size = r.remote_size or 0
            record_unchanged(self.engine, job.node_id, size)
            return Outcome(job.origin, ok=True, size=size)


def run_job_in_worker(job: NodeJob, deadline: float) -> JobResult:
    """Worker-process entry point: fetch and verify one node with a client of its own."""

    async def go() -> JobResult:
        async with httpx.AsyncClient(timeout=job.request_timeout) as client:
            return await guarded_job(job, client, deadline)

    with paused_gc():
        result = asyncio.run(go())
        if result.step is not None:
            result.step_blob = pickle.dumps(result.step, protocol=pickle.HIGHEST_PROTOCOL)
            result.step = None
    return result


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector around building or loading a big step.

    A step holds hundreds of thousands of small containers that all survive; the collector
    would rescan them again and again (a third of the harvest time) and find no cycles.
    Reference counting still frees everything as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def guarded_job(job: NodeJob, client: httpx.AsyncClient, deadline: float) -> JobResult:
    """Run one node's job, turning every failure into a JobResult naming it."""
    remote: list[int] = []
    try:
        return await asyncio.wait_for(verify_node(job, client, remote), deadline)
    except (RollbackError, EquivocationError) as exc:
        return JobResult(remote_size=remote[0] if remote else None, error=_text(exc),
                         halt="rollback" if isinstance(exc, RollbackError) else "equivocation",
                         trusted_checkpoint=exc.trusted_checkpoint,
                         new_checkpoint=exc.new_checkpoint)
    except TimeoutError:
        error = f"harvest of {job.origin} did not finish within {deadline:g} s"
    except BiobankError as exc:
        error = _text(exc)
    except Exception as exc:  # a bug must not stop the other nodes; it is recorded
        log.exception("harvest of %s failed", job.origin)
        error = f"internal error: {type(exc).__name__}: {exc}"
    return JobResult(remote_size=remote[0] if remote else None, error=error)


async def verify_node(job: NodeJob, client: httpx.AsyncClient, remote: list[int]) -> JobResult:
    """Fetch and verify one node's new entries page by page; the step to apply, or nothing."""
    fetcher = NodeFetcher(client, job.url, max_bytes=job.max_bytes, timeout=job.request_timeout)
    note = await fetcher.checkpoint()
    state = TrustedState.from_json(job.state) if job.state else None
    keys = KeyHistory.from_json(job.origin, job.keys)
    # Checks signature (keys in force, revocations), origin, rollback and same-size
    # equivocation before any entry; a rotate-key entry is checked when it is fed.
    try:
        verifier = StepVerifier(state, note, [], _schemas(), origin=job.origin, keys=keys)
    except (MissingSignatureError, RevokedKeyError):
        raise
    except SignatureError as exc:
        raise await _explained(fetcher, keys, note, state, exc) from exc
    size = verifier.checkpoint.size
    remote.append(size)
    if size == verifier.old_size:
        return JobResult(remote_size=size)
    if size - verifier.old_size > job.max_step:
        raise FetchError(f"{job.origin}: {size - verifier.old_size} new entries exceed the "
                         f"step limit of {job.max_step} (CATALOGUE_MAX_STEP)")
    step = StepData(node_id=job.node_id, origin=job.origin, country=job.country,
                    old_size=verifier.old_size)
    async for page in _pages(fetcher, job.origin, verifier.old_size, size, job.page_size):
        for leaf, content in page:
            step.add(verifier.feed(leaf, content))
    step.finish(verifier.finish())
    return JobResult(remote_size=size, step=step)


async def _explained(fetcher: NodeFetcher, keys: KeyHistory, note: str,
                     state: TrustedState | None, exc: SignatureError) -> SignatureError:
    """A refused signature, explained when the node now announces another key (rotation)."""
    try:
        announced = (await fetcher.descriptor()).get("verifier_key")
    except BiobankError:  # the descriptor only explains; the refusal stands without it
        return exc
    hint = rotation_hint(keys, note, previous_size=state.size if state else 0,
                         announced_key=announced if isinstance(announced, str) else None)
    return hint or exc


def _trusted(row: Any, keys: KeyHistory) -> TrustedState | None:
    if not row.checkpoint:
        return None
    state = TrustedState.from_json({"origin": row.origin, "size": int(row.tree_size),
                                    "root": row.root, "compact": orjson.loads(row.compact),
                                    "checkpoint": row.checkpoint})
    state.keys = keys
    return state


async def _pages(fetcher: NodeFetcher, origin: str, start: int, end: int,
                 page_size: int) -> AsyncIterator[list[tuple[bytes, Any]]]:
    """Entries [start, end) as pages of (leaf bytes, content); entries past `end` are ignored.

    The next page is requested while the current one is verified.
    """
    pos = start
    pending: asyncio.Future[Any] | None = asyncio.ensure_future(
        fetcher.entries(pos, min(page_size, end - pos)))
    try:
        while pos < end and pending is not None:
            entries, nxt = await pending
            pending = None
            entries = entries[: end - pos]
            if not entries:
                return  # fewer leaves than the checkpoint claims: finish() names what is missing
            page = [_decode(origin, pos + i, e) for i, e in enumerate(entries)]
            pos += len(entries)
            if nxt is not None and pos < end:
                pending = asyncio.ensure_future(fetcher.entries(pos, min(page_size, end - pos)))
            yield page
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


