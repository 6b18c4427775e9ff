"""Harvest every active node concurrently: fetch, verify (protocol.verify), store, accept.

Each node is isolated: its failures are recorded against it and never stop the others.
Each node's step runs in a worker process (CATALOGUE_HARVEST_WORKERS; 0 runs them in this
process) that fetches, verifies and stores it chunk by chunk (catalogue.harvest.stream), so memory
stays bounded, verification uses every core and nothing big crosses between processes.
Nothing of a step is visible before its final commit, which indexes it with the new
checkpoint and the catalogue-log leaf in ONE transaction; a harvest killed at any moment
resumes from the last stored chunk. Rollback and equivocation halt the node, keep both
signed checkpoints as evidence and raise an alert.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from sqlalchemy import Engine, select

from catalogue.db import WalCheckpointer, make_engine
from catalogue.errors import FetchError, WithholdingError
from catalogue.harvest.apply import Withholding, record_failure, record_halt, record_unchanged
from catalogue.harvest.fetcher import NodeFetcher
from catalogue.harvest.keys import load_history
from catalogue.harvest.stream import (
    FinalStep,
    NodeJob,
    TailDir,
    Writer,
    give_back,
    harvest_node,
    harvest_schemas,
    refuse_split,
    split_answer,
    steal_upper,
    trim_heap,
)
from catalogue.models import harvest_staging, nodes
from catalogue.ownlog import CatalogueKey
from protocol.errors import BiobankError, EquivocationError, RollbackError
from protocol.keys import KeyHistory
from protocol.tls import client_tls
from protocol.verify import TrustedState

if TYPE_CHECKING:  # a worker process never reads settings: pydantic stays out of it (12 MB)
    from catalogue.settings import Settings

__all__ = [
    "CALM_THRESHOLDS",
    "FRESH_WORKER_STEP",
    "Harvester",
    "KeptWorkers",
    "Outcome",
    "calm_collector",
    "guarded_final",
    "guarded_job",
    "lane_engine",
    "run_final_in_worker",
    "run_job_in_worker",
    "run_upper_in_worker",
    "warm_worker",
    "worker_pool",
]

log = logging.getLogger(__name__)
CA_SETTING = "CATALOGUE_CA_BUNDLE"


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
class WriteTarget:
    """Where a worker stores what it verified: the database and the catalogue key."""

    database_url: str
    home: str
    origin: str


@dataclass
class JobResult:
    """Accepted entries, an unchanged log, or a failure (as text: exceptions do not all pickle)."""

    remote_size: int | None = None
    added: int = 0
    error: str | None = None
    halt: str | None = None  # "rollback" | "equivocation"
    discard: bool = False  # drop the staged step (it may be what failed)
    withholding: bool = False  # a signed checkpoint whose leaves the node does not serve
    trusted_checkpoint: str | None = None
    new_checkpoint: str | None = None
    final: FinalStep | None = None  # verified and staged whole: its final commit is still due
    note: str | None = None  # what an upper-part job did (`steal_upper`)


def init_worker(parent: int, log_format: str = "text") -> None:
    """Worker initializer: log as the catalogue does (a JSON log stays JSON), and end this
    worker when the catalogue process is gone (even SIGKILL, after which nothing would ever
    send it work or a stop)."""
    if log_format != "text":  # text: the worker's default stderr output already is text
        from service.logs import configure

        configure(log_format)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


# The final commit of a step of at least this many entries runs in a fresh worker process,
# which ends after it. Such a commit (160,000 entries at 10M samples) grows a process by about
# 100 MB and leaves its heap fragmented: a lane that made one verified the next node at about
# 150-200 MB where a fresh process verifies at 105-160 (Python's arenas stay pinned by the few
# objects a commit keeps, bench/README.md "Memory"). A fresh process costs about 0.5 s of CPU
# (imports): at 10M samples about 3% more CPU for the harvest, for a peak (both lanes) about
# 20 MB lower and steadier (369-374 MB in three runs); no step of a 1M harvest is this big,
# and smaller steps keep their worker.
FRESH_WORKER_STEP = 100_000


def _big(staged: JobResult) -> bool:
    return staged.final is not None and staged.final.added >= FRESH_WORKER_STEP


async def _fresh_worker(
    pool: ProcessPoolExecutor, make: Callable[[], ProcessPoolExecutor], when: str
) -> ProcessPoolExecutor:
    """Retire a lane's worker process (its memory goes back whole when it exits) and give the
    lane a new pool (`make`), whose process is spawned when the lane's next job is submitted,
    or at once when the server keeps its workers (`KeptWorkers.fresh`). The old process has
    ended before this returns, so the two never hold memory at the same time."""
    await asyncio.to_thread(pool.shutdown, wait=True)
    log.info("harvest worker retired %s a big final commit; the next job gets a fresh one", when)
    return make()


def worker_pool(processes: int, log_format: str = "text") -> ProcessPoolExecutor:
    """The harvest's worker processes. Spawned, not forked: this process may run threads
    (uvicorn, to_thread); and a worker must die with its parent, which forkserver children
    do not on SIGKILL. A worker harvests node after node: a fresh one per node cost a second
    of CPU each (imports, schemas), a third of a 200k harvest's; each node's memory is handed
    back when its job ends (run_job_in_worker). What a worker imports is this module's
    imports (and the parent's main script, if it is one): every MB of them is paid once per
    process, so nothing here imports the API, numpy (the search engine) or pydantic."""
    return ProcessPoolExecutor(
        processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(os.getpid(), log_format),
        max_tasks_per_child=None,
    )


def warm_worker() -> None:
    """A kept worker's first task (`KeptWorkers`), so that its first job starts verifying at
    once: the harvest's imports are made by unpickling this call, and here the schemas'
    validators are compiled (as the floor compiles them before its clock starts)."""
    schemas = harvest_schemas()
    for sid in schemas.ids:
        schemas.verdict(sid)
        schemas.kind_of(sid)
        schemas.number_fields(sid)


class KeptWorkers:
    """The harvest's worker processes kept by the catalogue server between its harvests
    (CATALOGUE_HARVEST_KEEP_WORKERS): spawned and warmed (`warm_worker`) at its first harvest,
    or ahead of it by `start`, so every later scheduled or pushed harvest verifies from its
    first moment instead of after a process start, its imports and the schemas (0.3-0.5 s of
    each lane). One harvest holds them at a time (`take`); another harvest running meanwhile
    starts workers of its own, as a harvest without kept workers does."""

    def __init__(self, count: int, log_format: str = "text", *, recycle_mb: int = 120) -> None:
        self.count = count
        self.log_format = log_format
        # a worker handed back holding more than this (RSS) is replaced by a fresh warm one:
        # after a big step a worker keeps what its heap could not give back (about 160 MB
        # after a 1M node's step, against 75 MB warm and fresh), a small push's does not
        self.recycle_mb = recycle_mb
        self._idle: list[ProcessPoolExecutor] | None = None
        self._taken = False
        self._closed = False
        self._lock = threading.Lock()

    def fresh(self) -> ProcessPoolExecutor:
        """One lane's pool, its process spawned and warmed now (in the background)."""
        pool = worker_pool(1, self.log_format)
        pool.submit(warm_worker)
        return pool

    def start(self) -> KeptWorkers:
        """Spawn and warm the workers now, unless they are already."""
        with self._lock:
            if self._idle is None and not self._taken and not self._closed:
                self._idle = [self.fresh() for _ in range(self.count)]
        return self

    @property
    def idle(self) -> bool:
        """Whether workers are up and no harvest holds them (a harvest now gets them)."""
        with self._lock:
            return self._idle is not None and not self._taken

    def ready(self) -> None:
        """Wait until every idle worker is warm (the benchmark times what follows)."""
        with self._lock:
            idle = list(self._idle or [])
        for pool in idle:
            pool.submit(int).result()  # after the warm-up: one process, tasks in order

    def take(self) -> list[ProcessPoolExecutor] | None:
        """The workers for one harvest, or None while another harvest holds them."""
        with self._lock:
            if self._taken or self._closed:
                return None
            self._taken = True
            idle, self._idle = self._idle, None
        if idle is None:
            return [self.fresh() for _ in range(self.count)]
        # a worker that died while idle (killed, out of memory) is replaced, not handed out
        return [self._replace(p) if _broken(p) else p for p in idle]

    def give_back(self, pools: list[ProcessPoolExecutor] | None) -> None:
        """Keep the workers a harvest took (a broken one replaced); None: it could not hand
        them back whole (it failed), and fresh ones are started."""
        kept = None
        if pools is not None:
            kept = [self._replace(p) if self._spent(p) else p for p in pools]
        with self._lock:
            self._taken = False
            closed = self._closed
            if not closed:
                self._idle = kept
        if closed:
            for pool in kept or []:
                pool.shutdown(wait=True, cancel_futures=True)
        elif kept is None:
            self.start()

    def _spent(self, pool: ProcessPoolExecutor) -> bool:
        """Dead, or holding more than `recycle_mb` (Linux: its VmRSS; elsewhere never)."""
        if _broken(pool):
            return True
        for pid in list(pool._processes or {}):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            rss = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS:")), 0)
            if int(rss) > self.recycle_mb * 1024:
                log.info(
                    "harvest worker %d holds %d MB after its harvest: replaced",
                    pid,
                    int(rss) // 1024,
                )
                return True
        return False

    def _replace(self, pool: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """A fresh warm worker for this one, started once this one has ended (its memory is
        back before the new one takes any)."""
        pool.shutdown(wait=not _broken(pool), cancel_futures=True)
        return self.fresh()

    def close(self) -> None:
        """End the idle workers (the server stops); a harvest holding them ends them itself."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, None
        for pool in idle or []:
            pool.shutdown(wait=True, cancel_futures=True)


def _broken(pool: ProcessPoolExecutor) -> bool:
    """Whether the pool's process died (the executor has no public word for it)."""
    return bool(getattr(pool, "_broken", False))


@dataclass(frozen=True)
class LaneEvent:
    """One job of one harvest lane, as `Harvester(timeline=...)` records it: where a harvest's
    time went (which lane verified or indexed which node when, and where lanes idled).
    `kind`: "step" (fetch, verify and stage a node's new leaves), "final" (index and accept a
    staged step) or "upper" (verify the upper part of another lane's step)."""

    lane: int
    kind: str
    origin: str
    start: float  # time.monotonic()
    end: float
    error: str | None = None


class Harvester:
    """Harvests all active nodes; network via an injectable httpx transport.

    `inline`: this process is one of the CATALOGUE_HARVEST_WORKERS lanes, so one worker
    process fewer is started (a one-shot harvest, whose process has nothing else to do;
    never the API server, whose event loop must stay free for requests).
    `kept`: the server's kept worker processes (`KeptWorkers`), used when free.
    `timeline`: a list each lane's jobs are appended to as they end (`LaneEvent`).
    """

    def __init__(
        self,
        *,
        engine: Engine,
        settings: Settings,
        key: CatalogueKey,
        transport: httpx.AsyncBaseTransport | None = None,
        inline: bool = False,
        kept: KeptWorkers | None = None,
        timeline: list[LaneEvent] | None = None,
    ) -> None:
        self.engine = engine
        self.kept = kept
        self.timeline = timeline
        self.settings = settings
        self.key = key
        self.transport = transport
        self.inline = inline
        self._write_lock = threading.Lock()
        self._lane_writer: Writer | None = None  # while this process is a lane (`inline`)

    def run(self) -> list[Outcome]:
        """One-shot harvest of every active node (blocking)."""
        return asyncio.run(self.harvest_all())

    async def harvest_all(self, origins: Collection[str] | None = None) -> list[Outcome]:
        """Harvest every active node (or only those of ``origins``: a push, catalogue.notify)."""
        with self.engine.connect() as conn:
            query = select(nodes).where(nodes.c.state == "active").order_by(nodes.c.origin)
            if origins is not None:
                query = query.where(nodes.c.origin.in_(list(origins)))
            rows = conn.execute(query).all()
            staged = {r.node_id: r._asdict() for r in conn.execute(select(harvest_staging))}
            jobs = [self._job(r, staged.get(r.id), conn) for r in rows]
            expected = {r.id: (r.remote_size or 0) - (r.tree_size or 0) for r in rows}
        async with httpx.AsyncClient(
            transport=self.transport,
            timeout=self.settings.request_timeout,
            verify=client_tls(self.settings.ca_bundle, setting=CA_SETTING),
        ) as client:
            lanes = min(self.settings.harvest_workers, len(jobs))
            if lanes <= 0 or self.transport is not None:  # every node in this process
                with calm_collector():
                    return list(await asyncio.gather(*(self._one(client, None, j) for j in jobs)))
            # SQLite: a lane whose step ends while another lane's final commit holds the write
            # lock hands what it could not store yet to the step's final commit (in a file of
            # this harvest's `TailDir`) and goes on, instead of waiting for the lock
            database = self.engine.url.database or ""
            on_file = self.engine.dialect.name == "sqlite" and database not in ("", ":memory:")
            # this harvest's directory, swept by the next harvest if this one is killed: in
            # it an idle lane asks a running step for its upper part (`harvest_upper`), and
            # (SQLite) the step tails are handed over
            run = TailDir.beside(database) if on_file else TailDir(str(self.settings.home))
            tails = run if on_file else None
            splits = run.path
            lane_jobs = [
                replace(j, tail_dir=tails.path if tails else None, split_dir=splits) for j in jobs
            ]
            running: dict[int, NodeJob] = {}  # steps fetched and verified now, not split yet
            stepping: set[int] = set()  # all steps fetched and verified now
            # largest expected step first (as last seen), so no lane is left alone at the end
            queue = deque(sorted(lane_jobs, key=lambda j: -expected[j.node_id]))
            # steps verified and staged whole whose final commit (index, accept) is still
            # due. A lane takes one when no other lane is in a final commit (on SQLite they
            # would queue on its one write lock) or no node is left to fetch, else the next
            # node: so while one lane fetches and verifies the last node, the other indexes
            # the nodes before it, instead of idling at the end
            finals: deque[tuple[NodeJob, JobResult]] = deque()
            finalising = [0]
            done: dict[int, Outcome] = {}

            # A big step's final commit (`FRESH_WORKER_STEP` entries or more) runs in a worker
            # process that did nothing else before it and ends after it, so the heap it
            # leaves behind is handed back whole and never sits under another step's work;
            # this process, as a lane, leaves such commits to the worker lanes while one runs
            used: list[bool] = []  # a lane's worker process has run a job since it started
            workers = [0]  # worker lanes still running

            def takes(pool: ProcessPoolExecutor | None, staged: JobResult) -> bool:
                return pool is not None or not workers[0] or not _big(staged)

            async def lane(pools: list[ProcessPoolExecutor | None], at: int) -> None:
                try:
                    await lane_loop(pools, at)
                finally:
                    if pools[at] is not None:
                        workers[0] -= 1

            async def lane_loop(pools: list[ProcessPoolExecutor | None], at: int) -> None:
                while True:
                    pool = pools[at]
                    ready = next((i for i, (_, s) in enumerate(finals) if takes(pool, s)), None)
                    if ready is None and not queue:
                        if not running or lanes < 2:
                            return
                        # nothing left to take: ask the latest step for its upper part
                        owner = running.pop(next(reversed(running)))
                        began = time.monotonic()
                        await self._steal(client, pool, owner, splits, stepping)
                        self._lane_event(at, "upper", owner, began, None)
                        continue
                    if ready is not None and (not finalising[0] or not queue):
                        job, staged = finals[ready]
                        del finals[ready]
                        fresh = pool is not None and _big(staged)
                        if pool is not None and fresh and used[at]:
                            # not on the heap of a node this process verified
                            pool = await _fresh_worker(pool, self._new_pool, "before")
                            pools[at] = pool
                        finalising[0] += 1
                        began = time.monotonic()
                        try:
                            result = await self._final(pool, job, staged)
                        finally:
                            finalising[0] -= 1
                        self._lane_event(at, "final", job, began, result.error)
                        used[at] = True
                        if fresh and pool is not None:  # nor under the next node's
                            pools[at] = await _fresh_worker(pool, self._new_pool, "after")
                            used[at] = False
                    else:
                        job = queue.popleft()
                        running[job.node_id] = job
                        stepping.add(job.node_id)
                        began = time.monotonic()
                        try:
                            result = await self._run(client, pool, job, defer_final=True)
                        finally:
                            running.pop(job.node_id, None)
                            stepping.discard(job.node_id)
                        self._lane_event(at, "step", job, began, result.error)
                        used[at] = True
                    if result.final is not None:
                        finals.append((job, result))
                    else:
                        done[job.node_id] = await self._recorded(job, result)
                    if pool is None:  # what this node's step held is not kept for the next
                        if self._lane_writer is not None:  # and a fresh engine (`_release`)
                            self._lane_writer.engine.dispose()  # the page caches
                            self._lane_writer = Writer(
                                lane_engine(self._target()), self._lane_writer.key
                            )
                        gc.collect()
                        trim_heap()

            processes = lanes - 1 if self.inline else lanes
            # a pool of one process per lane: a lane can retire its worker (`_fresh_worker`)
            kept = self.kept.take() if self.kept is not None else None
            if kept is not None and len(kept) < processes:  # kept for fewer lanes: not these
                self.kept.give_back(kept)  # type: ignore[union-attr]
                kept = None
            pools: list[ProcessPoolExecutor | None] = (
                list(kept[:processes])
                if kept is not None
                else [worker_pool(1, self.settings.log_format) for _ in range(processes)]
            )
            if self.inline:
                pools.append(None)
            used.extend(False for _ in pools)
            workers[0] = processes
            thresholds = gc.get_threshold()
            if self.inline:
                _calm_gc()  # as a worker's: this process now verifies millions of entries
                self._lane_writer = Writer(lane_engine(self._target()), self.key)
            # the lanes' commits leave the log's checkpoints to this thread (`lane_engine`)
            checkpointer = WalCheckpointer(database).start() if tails and database else None
            finished = False
            try:
                await asyncio.gather(*(lane(pools, at) for at in range(len(pools))))
                finished = True
            finally:
                gc.set_threshold(*thresholds)
                if checkpointer is not None:
                    await asyncio.to_thread(checkpointer.stop)
                run.close()
                if self._lane_writer is not None:
                    self._lane_writer.engine.dispose()
                    self._lane_writer = None
                used_pools = [p for p in pools if p is not None]
                if self.kept is not None and kept is not None:
                    if finished:  # the lanes' workers (some maybe fresh ones), and the rest
                        # (a spent worker is replaced there: in a thread, as it waits)
                        await asyncio.to_thread(self.kept.give_back, used_pools + kept[processes:])
                    else:
                        for pool in used_pools + kept[processes:]:
                            pool.shutdown(wait=True, cancel_futures=True)
                        self.kept.give_back(None)
                else:
                    for pool in used_pools:
                        pool.shutdown(wait=True, cancel_futures=True)
            return [done[j.node_id] for j in jobs]

    def _new_pool(self) -> ProcessPoolExecutor:
        """A lane's new worker: warmed at once when the workers are kept, else at its job."""
        if self.kept is not None:
            return self.kept.fresh()
        return worker_pool(1, self.settings.log_format)

    def _job(self, row: Any, staged: dict[str, Any] | None, conn: Any) -> NodeJob:
        keys = load_history(conn, row, upto=int(staged["size"]) if staged else None)
        state = _trusted(row, keys)
        s = self.settings
        return NodeJob(
            node_id=row.id,
            origin=row.origin,
            url=row.url,
            country=row.country,
            state=state.to_json() if state else None,
            staged=staged,
            keys=keys.to_json(),
            request_timeout=s.request_timeout,
            max_bytes=s.max_response_bytes,
            page_size=s.page_size,
            max_step=s.max_step,
            chunk_size=s.harvest_chunk,
            chunk_growth=s.harvest_chunk_growth,
            ca_bundle=str(s.ca_bundle) if s.ca_bundle else None,
        )

    async def _one(
        self, client: httpx.AsyncClient, pool: ProcessPoolExecutor | None, job: NodeJob
    ) -> Outcome:
        return await self._recorded(job, await self._run(client, pool, job))

    def _writer(self) -> Writer:
        """Where this process stores what it verifies: as one of the lanes, through an engine
        like a worker's (`_lane_writer`: a small page cache; at 10M samples a 16 MiB cache per
        pooled connection adds to the peak); otherwise through the catalogue's engine."""
        return self._lane_writer or Writer(self.engine, self.key)

    def _lane_event(
        self, lane: int, kind: str, job: NodeJob, began: float, error: str | None
    ) -> None:
        if self.timeline is not None:
            self.timeline.append(LaneEvent(lane, kind, job.origin, began, time.monotonic(), error))

    def _target(self) -> WriteTarget:
        return WriteTarget(self.settings.database_url, str(self.settings.home), self.key.origin)

    async def _run(
        self,
        client: httpx.AsyncClient,
        pool: ProcessPoolExecutor | None,
        job: NodeJob,
        *,
        defer_final: bool = False,
    ) -> JobResult:
        deadline = self.settings.node_deadline
        return await self._guarded(
            job,
            JobResult(),
            pool,
            (run_job_in_worker, job, self._target(), deadline, defer_final),
            lambda: guarded_job(job, client, self._writer(), deadline, defer_final=defer_final),
        )

    async def _steal(
        self,
        client: httpx.AsyncClient,
        pool: ProcessPoolExecutor | None,
        job: NodeJob,
        splits: str,
        stepping: set[int],
    ) -> None:
        """Have this lane ask the running step of `job` for its upper part and, when
        offered, fetch, verify and key it (`steal_upper`: the request is made once the
        lane's job is set up, so the owner's split point is not chosen for a thief that
        is still starting); a failure of that job gives the part back. A step that ends
        unanswered is answered here (refused), so the job ends too."""
        started = time.monotonic()
        deadline = self.settings.node_deadline
        task = asyncio.ensure_future(
            self._guarded(
                job,
                JobResult(),
                pool,
                (run_upper_in_worker, job, deadline),
                lambda: guarded_upper(job, client, deadline),
            )
        )
        while not task.done():
            if job.node_id not in stepping and split_answer(splits, job.node_id) is None:
                refuse_split(splits, job.node_id)  # (the step ended first)
            await asyncio.wait({task}, timeout=0.01)
        done = task.result()
        offer = split_answer(splits, job.node_id)
        if done.error is not None and isinstance(offer, dict):  # the owner must not wait
            give_back(splits, job.node_id, str(offer["token"]), done.error)
        log.info(
            "harvest of %s, split: %s (%.2f s)",
            job.origin,
            done.error or done.note,
            time.monotonic() - started,
        )

    async def _final(
        self, pool: ProcessPoolExecutor | None, job: NodeJob, staged: JobResult
    ) -> JobResult:
        """The deferred final commit of a step verified and staged whole (`staged.final`)."""
        final = staged.final
        assert final is not None
        deadline = self.settings.node_deadline
        return await self._guarded(
            job,
            JobResult(remote_size=staged.remote_size),
            pool,
            (run_final_in_worker, final, self._target(), deadline),
            lambda: guarded_final(final, self._writer(), deadline),
        )

    async def _guarded(
        self,
        job: NodeJob,
        failed: JobResult,
        pool: ProcessPoolExecutor | None,
        in_worker: tuple[Any, ...],
        inline: Callable[[], Awaitable[JobResult]],
    ) -> JobResult:
        """Run a node's job in a worker process (`in_worker`: the function and its
        arguments) or in this process (`inline`), within the node's deadline; a timeout or
        a crash becomes `failed` with the error set, and never stops the other nodes."""
        deadline = self.settings.node_deadline
        try:
            if pool is not None:
                loop = asyncio.get_running_loop()
                return await asyncio.wait_for(loop.run_in_executor(pool, *in_worker), deadline + 5)
            return await inline()
        except TimeoutError:
            failed.error = f"harvest of {job.origin} did not finish within {deadline:g} s"
        except Exception as exc:  # a crashed worker must not stop the other nodes
            log.exception("harvest worker for %s failed", job.origin)
            failed.error = f"internal error: {type(exc).__name__}: {exc}"
        return failed

    async def _recorded(self, job: NodeJob, result: JobResult) -> Outcome:
        try:
            return await asyncio.to_thread(self._record, job, result)
        except Exception as exc:  # e.g. the database stayed locked: the others go on
            log.exception("recording the harvest of %s failed", job.origin)
            return Outcome(job.origin, ok=False, error=f"internal error: {_text(exc)}")

    def _record(self, job: NodeJob, r: JobResult) -> Outcome:
        with self._write_lock:
            if r.halt:
                record_halt(
                    self.engine,
                    job.node_id,
                    r.halt,
                    r.error or "",
                    r.trusted_checkpoint,
                    r.new_checkpoint,
                )
                return Outcome(job.origin, ok=False, error=r.error, halted=True)
            if r.error is not None:
                withholding = (
                    Withholding(
                        r.trusted_checkpoint, r.new_checkpoint or "", self.settings.withhold_after
                    )
                    if r.withholding
                    else None
                )
                record_failure(
                    self.engine,
                    job.node_id,
                    r.error,
                    r.remote_size,
                    discard=r.discard,
                    withholding=withholding,
                )
                return Outcome(job.origin, ok=False, error=r.error)
            size = r.remote_size or 0
            if r.added:
                return Outcome(job.origin, ok=True, added=r.added, size=size)
            record_unchanged(self.engine, job.node_id, size)
            return Outcome(job.origin, ok=True, size=size)


def lane_engine(target: WriteTarget) -> Engine:
    # a smaller page cache: a lane writes mostly in key order (leaves, combos, leaf_records)
    # and its random inserts (samples) miss a cache of any affordable size anyway
    # and leave the log's checkpoints to the harvest's `WalCheckpointer` (SQLite)
    return make_engine(
        target.database_url, create=False, busy_timeout=600, cache_mib=8, autocheckpoint=False
    )


@cache
def _worker_writer(target: WriteTarget) -> Writer:
    """One engine and catalogue key per worker process (the key is read from its file)."""
    return Writer(
        lane_engine(target), CatalogueKey.load_or_create(Path(target.home), target.origin)
    )


def run_job_in_worker(
    job: NodeJob, target: WriteTarget, deadline: float, defer_final: bool = False
) -> JobResult:
    """Worker-process entry point: harvest one node with a client of its own."""

    async def go() -> JobResult:
        verify = client_tls(job.ca_bundle, setting=CA_SETTING)
        async with httpx.AsyncClient(timeout=job.request_timeout, verify=verify) as client:
            writer = _worker_writer(target)
            return await guarded_job(job, client, writer, deadline, defer_final=defer_final)

    _calm_gc()
    try:
        return asyncio.run(go())
    finally:  # the next node's harvest starts from what this worker holds, not what it held
        _release(target)


def run_upper_in_worker(job: NodeJob, deadline: float) -> JobResult:
    """Worker-process entry point: ask for the upper part of a running step, and take it
    when offered (`steal_upper`)."""

    async def go() -> JobResult:
        verify = client_tls(job.ca_bundle, setting=CA_SETTING)
        async with httpx.AsyncClient(timeout=job.request_timeout, verify=verify) as client:
            return await guarded_upper(job, client, deadline)

    _calm_gc()
    try:
        return asyncio.run(go())
    finally:
        gc.collect()
        trim_heap()


async def guarded_upper(job: NodeJob, client: httpx.AsyncClient, deadline: float) -> JobResult:
    """`steal_upper`; it gives the part back on any failure of its own, so only a failure
    of the job itself (a timeout) is an error here."""
    fetcher = NodeFetcher(client, job.url, max_bytes=job.max_bytes, timeout=job.request_timeout)
    try:
        return JobResult(note=await asyncio.wait_for(steal_upper(job, fetcher), deadline))
    except TimeoutError:
        return JobResult(error=f"the upper part of {job.origin} took over {deadline:g} s")


def run_final_in_worker(final: FinalStep, target: WriteTarget, deadline: float) -> JobResult:
    """Worker-process entry point: the final commit of a step verified and staged whole."""
    _calm_gc()
    try:
        return asyncio.run(guarded_final(final, _worker_writer(target), deadline))
    finally:
        _release(target)


def _release(target: WriteTarget) -> None:
    """Hand a job's memory back: the connections' page caches (up to 8 MiB each; reopening
    costs a millisecond), the garbage, and the heap glibc keeps. The engine itself goes too:
    the statements it compiled and cached during a final commit are a few thousand small
    objects scattered over the arenas the step's millions used, and kept each of them (1 MiB)
    resident (at 10M samples, about 10 MB of a lane's memory after a final commit)."""
    _worker_writer(target).engine.dispose()
    _worker_writer.cache_clear()
    gc.collect()
    trim_heap()


async def guarded_final(final: FinalStep, writer: Writer, deadline: float) -> JobResult:
    """Make a deferred final commit, turning a failure into a JobResult naming it. The step
    stays staged on failure: the next harvest resumes straight to its final commit."""
    size = int(final.state["size"])
    try:
        await asyncio.wait_for(writer.final_staged(final), deadline)
        return JobResult(remote_size=size, added=final.added)
    except TimeoutError:
        error = f"harvest of {final.position['origin']} did not finish within {deadline:g} s"
    except BiobankError as exc:  # e.g. changed by another harvester meanwhile
        error = _text(exc)
    except Exception as exc:  # a bug must not stop the other nodes; it is recorded
        log.exception("harvest of %s failed", final.position["origin"])
        error = f"internal error: {type(exc).__name__}: {exc}"
    return JobResult(remote_size=size, error=error)


# the cyclic collector's thresholds while a process harvests: a young collection every
# 100,000 new containers instead of 700 (a parsed page holds about 10,000)
CALM_THRESHOLDS = (100_000, 50, 100)


def _calm_gc() -> None:
    """Make the cyclic GC of a worker cheap: a harvest allocates millions of short-lived
    containers, and the default thresholds rescan the long-lived ones (modules, schemas,
    compiled validators) over and over; a third of the CPU of a harvest went there.
    Reference counting still frees everything as it goes, so memory stays bounded."""
    gc.freeze()  # what exists now (imports) is never scanned again
    gc.set_threshold(*CALM_THRESHOLDS)
    _bounded_malloc()


@contextmanager
def calm_collector() -> Iterator[None]:
    """`CALM_THRESHOLDS` while a harvest runs in this process (`harvest_workers` 0, a pushed
    step in a thread of the server), the thresholds before restored after. Nothing is frozen
    (this may be a long-running server: what is alive now may become garbage later). At the
    default thresholds the collector ran about 1,000 times in one node's 57,000 entries and
    the harvest took a fifth more CPU (bench/README.md, tenth session)."""
    before = gc.get_threshold()
    gc.set_threshold(*CALM_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _bounded_malloc() -> None:
    """Keep glibc from holding on to freed memory in a worker (Linux with glibc only).

    Pages of about 1 MB are allocated and freed all the time; glibc's default raises its mmap
    threshold after such frees, so they come from the heap and fragment it, and every thread
    (the writer's included) gets an arena of its own. A fixed threshold and two arenas keep a
    worker's resident memory near what it uses."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD: fixed (no dynamic raise)
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return


async def guarded_job(
    job: NodeJob,
    client: httpx.AsyncClient,
    writer: Writer,
    deadline: float,
    *,
    defer_final: bool = False,
) -> JobResult:
    """Run one node's harvest, turning every failure into a JobResult naming it
    (`defer_final`: see `harvest_node`; the result then carries the final commit due)."""
    remote: list[int] = []
    fetcher = NodeFetcher(client, job.url, max_bytes=job.max_bytes, timeout=job.request_timeout)
    try:
        done = await asyncio.wait_for(
            harvest_node(job, fetcher, writer, remote, defer_final=defer_final), deadline
        )
        return JobResult(remote_size=done.remote_size, added=done.added, final=done.final)
    except (RollbackError, EquivocationError) as exc:
        if job.staged:  # not authoritative: the staged leaves may be the fault
            return JobResult(
                remote_size=remote[0] if remote else None, discard=True, error=_resumed(job, exc)
            )
        return JobResult(
            remote_size=remote[0] if remote else None,
            error=_text(exc),
            halt="rollback" if isinstance(exc, RollbackError) else "equivocation",
            trusted_checkpoint=exc.trusted_checkpoint,
            new_checkpoint=exc.new_checkpoint,
        )
    except WithholdingError as exc:  # what was stored stays staged: the next harvest continues
        return JobResult(
            remote_size=remote[0] if remote else None,
            error=exc.recorded or _text(exc),
            withholding=True,
            trusted_checkpoint=exc.trusted_checkpoint,
            new_checkpoint=exc.new_checkpoint,
        )
    except TimeoutError:  # what was stored stays staged: the next harvest continues
        error = f"harvest of {job.origin} did not finish within {deadline:g} s"
    except FetchError as exc:
        error = _text(exc)
    except BiobankError as exc:  # the leaves served do not verify: drop what was staged
        return JobResult(
            remote_size=remote[0] if remote else None,
            discard=True,
            error=_resumed(job, exc) if job.staged else _text(exc),
        )
    except Exception as exc:  # a bug must not stop the other nodes; it is recorded
        log.exception("harvest of %s failed", job.origin)
        error = f"internal error: {type(exc).__name__}: {exc}"
    return JobResult(remote_size=remote[0] if remote else None, error=error)


def _resumed(job: NodeJob, exc: BaseException) -> str:
    staged = int(job.staged["size"]) if job.staged else 0
    return (
        f"{_text(exc)} (resumed from {staged - job.committed} staged entries; they were "
        "discarded and the next harvest starts again from the accepted checkpoint)"
    )


def _trusted(row: Any, keys: KeyHistory) -> TrustedState | None:
    if not row.checkpoint:
        return None
    state = TrustedState.from_json(
        {
            "origin": row.origin,
            "size": int(row.tree_size),
            "root": row.root,
            "compact": orjson.loads(row.compact),
            "checkpoint": row.checkpoint,
        }
    )
    state.keys = keys
    return state


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
