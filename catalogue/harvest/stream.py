"""One node's harvest step, streamed: fetch pages, verify leaf by leaf, store chunk by chunk.

Memory stays bounded by CATALOGUE_HARVEST_CHUNK whatever the step size: every chunk of
verified leaves is stored as staging (catalogue.harvest.apply) and dropped from memory. The step is
accepted only when `StepVerifier.finish()` matches the signed root over the trusted tree plus
EVERY new leaf, staged or not; only then does anything of it reach search or the mirror.

A harvest that finds staging from an earlier, interrupted run resumes from it: the trusted
tree is extended from the staged compact range, and the key rules are applied as if the
whole step had been verified at once (rotations in staged leaves need the co-signature).
A resumed run's verification failure is not authoritative (the staged leaves could be the
fault): the staging is discarded and the next run, starting from the accepted state,
decides (and halts the node on rollback or equivocation).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import gc
import hmac
import marshal
import os
import secrets
import shutil
import sqlite3
import struct
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from functools import cache
from typing import IO, Any

import orjson
from sqlalchemy import Engine

from catalogue.errors import FetchError, WithholdingError, WriteLockBusy
from catalogue.harvest.apply import Chunk, Position, commit_chunk, commit_final
from catalogue.harvest.fetcher import NodeFetcher, decode_page
from catalogue.harvest.index import pack_keyed
from catalogue.ownlog import CatalogueKey
from catalogue.subtrees import TappedRange
from protocol.errors import (
    BiobankError,
    EquivocationError,
    MissingSignatureError,
    ProofError,
    RevokedKeyError,
    SignatureError,
)
from protocol.keys import KeyHistory, rotation_hint
from protocol.merkle import CompactRange, verify_consistency
from protocol.schema import SchemaSet
from protocol.verify import StepVerifier, TrustedState

__all__ = [
    "SPLIT_AT",
    "SPLIT_MIN_CHUNKS",
    "FinalStep",
    "NodeJob",
    "StepOutcome",
    "SplitOwner",
    "TailDir",
    "UpperPart",
    "Writer",
    "harvest_node",
    "harvest_schemas",
    "harvest_upper",
    "refuse_split",
    "request_split",
    "split_answer",
    "steal_upper",
    "store_tail",
    "trim_heap",
]

PAGES_AHEAD = 3  # entry pages in flight while one is verified
# a step is split for an idle lane only when at least this many chunks are left above the
# split point (`SplitOwner`); the lower part is the owner's, which also stores the upper
# part's chunks: SPLIT_AT of what is left (a third: verifying is about three quarters of a
# lane's work on a leaf, storing the rest)
SPLIT_MIN_CHUNKS = 1
SPLIT_AT = 0.4
COLLECT_EVERY = 16  # pages between collections of the young generation (see harvest_node)


@dataclass(frozen=True)
class NodeJob:
    """Everything needed to harvest one node (picklable, for worker processes)."""

    node_id: int
    origin: str
    url: str
    country: str | None
    state: dict[str, Any] | None  # TrustedState.to_json() of the accepted checkpoint
    staged: dict[str, Any] | None  # harvest_staging row: size, compact (JSON), checkpoint
    keys: dict[str, Any]  # KeyHistory.to_json(), rotations in staged leaves included
    request_timeout: float
    max_bytes: int
    page_size: int
    max_step: int
    chunk_size: int
    ca_bundle: str | None = None  # CATALOGUE_CA_BUNDLE (None: the system store)
    # while a chunk is stored (on SQLite it may wait for the write lock another lane's final
    # commit holds), the next one keeps filling up to chunk_growth * chunk_size entries, so
    # the lane goes on verifying; CATALOGUE_HARVEST_CHUNK_GROWTH
    chunk_growth: int = 1
    # SQLite, deferred final commits: where a step's unstored tail (spilled chunks and the
    # last chunk) goes when the write lock is held at its end, for the final commit to store
    # (`TailDir`, `store_tail`); None: the lane waits for the lock and stores it itself
    tail_dir: str | None = None
    # lanes: a directory where another lane may ask this step to split (`SplitOwner`); None:
    # the step is never split
    split_dir: str | None = None

    @property
    def committed(self) -> int:
        return int(self.state["size"]) if self.state else 0


@dataclass(frozen=True)
class FinalStep:
    """A step verified whole (its root is the signed one) and staged whole: what its final
    commit needs, picklable, so that any free lane can make it (`Writer.final_staged`)."""

    position: dict[str, Any]  # Position fields, `staged` == the new size unless `tail`
    state: dict[str, Any]  # TrustedState.to_json() of the verified checkpoint
    # verified chunks not stored yet (SQLite's write lock was held when the step ended): a
    # file of this step's own (`_Spill.handoff`) that the final commit stores first
    tail: dict[str, Any] | None = None

    @property
    def added(self) -> int:
        return int(self.state["size"]) - int(self.position["committed"])


@dataclass
class StepOutcome:
    """What `harvest_node` did: the node's size, how many entries were accepted, and the
    final commit still to make when it was deferred (`final`)."""

    remote_size: int
    added: int = 0
    final: FinalStep | None = None


class Writer:
    """Stores chunks and the final commit.

    On PostgreSQL a chunk is stored in a thread while the next one is verified (the server
    does the work). On SQLite it is stored on the calling thread (`store_now`) and only when
    the database's one write lock is free (`lock_free`): a store in a thread of a process
    whose other thread verifies waits for the GIL after every row (about 5,000 hand-overs a
    chunk), and so held the write lock 3 to 10 times as long as its CPU time, holding up the
    other lanes' stores and final commits."""

    def __init__(self, engine: Engine, key: CatalogueKey) -> None:
        self.engine = engine
        self.key = key
        url = engine.url
        self.sqlite: str | None = (
            url.database if url.get_backend_name() == "sqlite" and url.database else None
        )
        self._probe: sqlite3.Connection | None = None

    def lock_free(self) -> bool:
        """Whether the write lock can be taken now (SQLite; always True elsewhere). Another
        lane's final commit may hold it for seconds: meanwhile this lane keeps verifying."""
        if self.sqlite is None:
            return True
        if self._probe is None:
            self._probe = sqlite3.connect(self.sqlite, timeout=0, isolation_level=None)
        try:
            self._probe.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # "database is locked"
            return False
        self._probe.execute("ROLLBACK")
        return True

    def store_now(
        self,
        pos: Position,
        chunk: Chunk,
        *,
        size: int,
        compact: dict[str, Any],
        checkpoint: str,
    ) -> Position:
        """Store a chunk on this thread (SQLite: see the class)."""
        return commit_chunk(
            self.engine, pos, chunk, size=size, compact=compact, checkpoint=checkpoint
        )

    def try_store(
        self,
        pos: Position,
        chunk: Chunk,
        *,
        size: int,
        compact: dict[str, Any],
        checkpoint: str,
    ) -> Position | None:
        """`store_now`, unless another writer holds the lock at this moment: then None at
        once, and nothing stored (the caller spills the chunk). `lock_free` answered for a
        moment before; another lane's final commit may have begun since, and a lane that
        stored then would wait for that whole commit instead of verifying on."""
        try:
            return commit_chunk(
                self.engine,
                pos,
                chunk,
                size=size,
                compact=compact,
                checkpoint=checkpoint,
                wait=False,
            )
        except WriteLockBusy:
            return None

    async def chunk(
        self,
        pos: Position,
        chunk: Chunk,
        *,
        size: int,
        compact: dict[str, Any],
        checkpoint: str,
    ) -> Position:
        return await asyncio.to_thread(
            commit_chunk,
            self.engine,
            pos,
            chunk,
            size=size,
            compact=compact,
            checkpoint=checkpoint,
        )

    async def final(self, pos: Position, chunk: Chunk, state: TrustedState) -> None:
        await asyncio.to_thread(commit_final, self.engine, self.key, pos, chunk, state)

    async def final_staged(self, step: FinalStep) -> None:
        """The final commit of a step `harvest_node` verified and staged whole, or whole but
        for a tail handed over in a file (`FinalStep.tail`), stored here first, in order, as
        the verifying lane would have: a failure there fails the final commit (nothing is
        indexed; what was stored stays staged and the next harvest resumes from it)."""
        pos = Position(**step.position)
        if step.tail is not None:
            pos = await asyncio.to_thread(store_tail, self, pos, step.tail)
        await self.final(pos, Chunk(pos.node_id), TrustedState.from_json(step.state))


@cache
def harvest_schemas() -> SchemaSet:
    """The schemas a harvesting process checks records with (compiled once per process)."""
    return SchemaSet.default()


async def harvest_node(
    job: NodeJob,
    fetcher: NodeFetcher,
    writer: Writer,
    remote: list[int],
    *,
    defer_final: bool = False,
) -> StepOutcome:
    """Fetch, verify and store one node's new entries; raises what refused them.

    `defer_final`: once every leaf is verified and the root matches the signed one, stage
    the last chunk too and return the final commit (`StepOutcome.final`) instead of making
    it, so that a free lane can (the harvester's lanes then never idle while one of them
    still indexes; a step staged whole resumes straight to its final commit)."""
    note = await fetcher.checkpoint()
    keys = KeyHistory.from_json(job.origin, job.keys)
    accepted = TrustedState.from_json(job.state) if job.state else None
    start = _staged_state(job, keys) or accepted
    # signature by the key(s) in force, revocations, origin, rollback and same-size
    # equivocation before any entry; a rotate-key entry is checked when it is fed
    try:
        verifier = StepVerifier(start, note, [], harvest_schemas(), origin=job.origin, keys=keys)
        if job.staged:  # rotations in staged leaves need this checkpoint's co-signature too
            keys.verify(note, previous_size=job.committed)
    except (MissingSignatureError, RevokedKeyError):
        raise
    except SignatureError as exc:
        raise await _explained(fetcher, keys, note, accepted, exc) from exc
    size = verifier.checkpoint.size
    remote.append(size)
    if size == job.committed:
        return StepOutcome(size)
    if size - job.committed > job.max_step:
        raise FetchError(
            f"{job.origin}: {size - job.committed} new entries exceed the "
            f"step limit of {job.max_step} (CATALOGUE_MAX_STEP)"
        )
    pos = Position(job.node_id, job.origin, job.country, job.committed, verifier.old_size)
    # the verifier keeps the subtree hashes its appends compute, for the chunk stores
    tap = verifier.compact = TappedRange.of(verifier.compact)
    chunk = Chunk(job.node_id, tap=tap)
    storing: asyncio.Future[Position] | None = None  # one chunk is stored while the next fills
    bound = _Bound(size)  # lowered to where the step is split, if it is
    served = _Served(_pages(fetcher, job.origin, verifier.old_size, bound, job.page_size))
    pages = 0
    spill = _Spill(
        os.path.dirname(os.path.abspath(writer.sqlite)) if writer.sqlite else None,
        named=job.tail_dir if writer.sqlite and defer_final else None,
        node_id=job.node_id,
    )
    split = SplitOwner(job.split_dir, job.node_id) if job.split_dir and defer_final else None

    async def stage(full: Chunk) -> Position:
        """Store a chunk ending at the verifier's position now, in order, as a full chunk
        of the page loop is (spilled in the spill's own format while the lock is held)."""
        nonlocal storing
        mark = _Mark(verifier.next_index, tap.to_json(), verifier.note)
        at = pos
        if writer.sqlite is not None:
            free = writer.lock_free()
            if free:
                at = spill.drain(writer, at, wait=False)
            stored = writer.try_store(at, full, **asdict(mark)) if free and not spill else None
            if stored is not None:
                at = stored
            else:
                spill.put(full, mark)
                tap.take(0, mark.size)
            trim_heap()
            return at
        if storing is not None:
            at = await storing
            trim_heap()
        storing = asyncio.ensure_future(writer.chunk(at, full, **asdict(mark)))
        return at

    try:
        while True:  # once more only when a split's upper part is given back
            async for page in served:
                add, feed = chunk.add, verifier.feed  # (the chunk changes between pages only)
                for leaf, content in page:
                    add(feed(leaf, content))
                if split is not None and split.asked():  # another lane is idle: offer it the top
                    split.answer(bound, verifier, min_left=SPLIT_MIN_CHUNKS * job.chunk_size)
                # each httpx response is a reference cycle (response <-> stream, 17 objects; the
                # page's bytes are not in it: `NodeFetcher` reads them itself) and a harvest worker
                # raises the GC thresholds (harvest._calm_gc): collect the young generation every
                # COLLECT_EVERY pages. Each collection walks the pages parsed ahead (about 1 ms a
                # page here), so collecting once a page cost 1-1.5 µs an entry for 17 objects
                pages += 1
                if pages % COLLECT_EVERY == 0:
                    gc.collect(0)
                if len(chunk) >= job.chunk_size and verifier.remaining:
                    room = len(chunk) < job.chunk_growth * job.chunk_size
                    if writer.sqlite is not None:  # stored here, once the write lock is free
                        free = writer.lock_free()
                        if not free and room:
                            continue  # another lane's final commit holds it: keep verifying
                        mark = _Mark(verifier.next_index, verifier.compact.to_json(), verifier.note)
                        if free:
                            pos = spill.drain(writer, pos, wait=False)
                        stored = (
                            writer.try_store(pos, chunk, **asdict(mark))
                            if free and not spill
                            else None
                        )
                        if stored is not None:
                            pos = stored
                        else:  # still held, and the chunk is full: on disk until it is free
                            spill.put(chunk, mark)
                            tap.take(0, mark.size)  # stored without them (computed): let go
                        trim_heap()
                        chunk = Chunk(job.node_id, tap=tap)
                        continue
                    if storing is not None and not storing.done() and room:
                        continue  # the previous chunk is still being stored: keep verifying
                    if storing is not None:
                        pos = await storing
                        trim_heap()
                    storing = asyncio.ensure_future(
                        writer.chunk(
                            pos,
                            chunk,
                            size=verifier.next_index,
                            compact=verifier.compact.to_json(),
                            checkpoint=verifier.note,
                        )
                    )
                    chunk = Chunk(job.node_id, tap=tap)
            if split is not None and split.offered:
                lower = verifier.next_index == split.m  # the lower part is verified
                if lower:
                    # ends at the split: staged before the upper part's chunks
                    pos = await stage(chunk) if len(chunk) else pos
                    chunk = Chunk(job.node_id, tap=tap)
                    async for part in split.parts():  # the thief's chunks, as they come
                        data, leaves = part.read()
                        append = tap.append
                        for i in range(0, len(leaves), 32):
                            append(leaves[i : i + 32])
                        verifier.next_index = part.hi
                        pos = await stage(_read_chunk_bytes(data, pos, tap))
                if verifier.remaining:  # the rest is verified here: the thief stops
                    split.withdraw()
                split.offered = False
                if lower and verifier.remaining:  # given back: from where the thief's end
                    bound.end = size
                    at = verifier.next_index
                    served = _Served(_pages(fetcher, job.origin, at, bound, job.page_size))
                    continue
            break
        if verifier.remaining:  # the node signs more leaves than it serves
            raise await _withheld(fetcher, job, verifier, accepted, "")
        state = verifier.finish()
        if storing is not None:
            pos, storing = await storing, None
        if defer_final and spill.named and (spill or len(chunk)):
            # SQLite: what is not stored yet is stored now if the write lock is free, else
            # handed to the final commit in the spill's file, so this lane goes on at once
            # instead of waiting for another lane's final commit to end
            mark = _Mark(state.size, state.compact.to_json(), state.checkpoint)
            pos = spill.drain(writer, pos, wait=False)
            stored = (
                writer.try_store(pos, chunk, **asdict(mark))
                if len(chunk) and not spill and writer.lock_free()
                else None
            )
            if stored is not None:
                pos = stored
            elif len(chunk):
                spill.put(chunk, mark)
            chunk = Chunk(job.node_id)
            tail = spill.handoff() if spill else None
            trim_heap()
            final = FinalStep(asdict(pos), state.to_json(), tail)
            return StepOutcome(size, size - job.committed, final)
        if spill:  # in order, before the last chunk; waiting in a thread keeps the loop free
            pos = await asyncio.to_thread(spill.drain, writer, pos, wait=True)
        trim_heap()
        if defer_final:
            if len(chunk):
                pos = await writer.chunk(
                    pos,
                    chunk,
                    size=state.size,
                    compact=state.compact.to_json(),
                    checkpoint=state.checkpoint,
                )
            final = FinalStep(asdict(pos), state.to_json())
            return StepOutcome(size, size - job.committed, final)
        await writer.final(pos, chunk, state)
    except FetchError as exc:
        if exc is not served.error:  # not the reading of the leaves (e.g. the writer)
            raise
        found = await _withheld(fetcher, job, verifier, accepted, str(exc))
        if isinstance(found, WithholdingError):  # recorded as the page error it is
            found.recorded = f"{type(exc).__name__}: {exc}"
        raise found from exc
    finally:
        if split is not None:
            split.close()
        spill.close()  # chunks still on disk are in flight: lost, like a chunk in memory
        if storing is not None:  # a failure while a chunk is stored: let it end cleanly
            await asyncio.gather(storing, return_exceptions=True)
    return StepOutcome(size, size - job.committed)


# Splitting a step over two lanes. When a lane has nothing left to take while another lane
# still fetches and verifies a node's step, it asks for the upper part of that step: files in
# a directory of this harvest's (`NodeJob.split_dir`; SQLite: its `TailDir`):
#   N.request                 the idle lane asks (`request_split`)
#   N.offer / N.refused       the owner answers (`SplitOwner.answer`): {token, m, end, note}
#   N-TOKEN.split             the thief's verified chunks and their leaf hashes
#                             (`harvest_upper`), chunk by chunk
#   N-TOKEN.K                 where its chunk K is in it, written once the chunk is
#   N-TOKEN.giveback          it gave the rest back
# The owner takes its offer back (removes N.offer) when it no longer waits for the thief;
# the thief, seeing it gone, stops and removes what it wrote.
# Only the owner chooses m. The thief never writes to the database: the owner, past m, takes
# its chunks as they come, joins their leaf hashes to the compact range (the root check over
# the whole step is the owner's, as always) and stores them after its own, in order, each
# with the mark it would have had. Whatever the thief meets beyond the common leaf (a
# rotate-key leaf, a refusal, a page error) it gives back, and the owner verifies the rest
# itself from where the thief's chunks end, so every refusal is made, and worded, as
# without a split.


def _write_atomic(path: str, data: bytes) -> None:
    part = path + ".part"
    with open(part, "wb") as file:
        file.write(data)
    os.rename(part, path)


def request_split(directory: str, node_id: int) -> None:
    """Ask the step of node `node_id` for its upper part (the owner looks once a page)."""
    _write_atomic(os.path.join(directory, f"{node_id}.request"), b"")


def refuse_split(directory: str, node_id: int) -> None:
    """Answer a request no step will answer (the step ended first)."""
    _write_atomic(os.path.join(directory, f"{node_id}.refused"), b"")


async def steal_upper(job: NodeJob, fetcher: NodeFetcher) -> str:
    """An idle lane's job: ask the running step of `job` for its upper part, wait for the
    answer (the owner looks once a page) and take the part when offered (`harvest_upper`).
    Returns what it did."""
    assert job.split_dir is not None
    asked = time.monotonic()
    request_split(job.split_dir, job.node_id)
    while True:
        answer = split_answer(job.split_dir, job.node_id)
        if answer is False:
            return "not split (too little left, or the step ended first)"
        if isinstance(answer, dict):
            break
        await asyncio.sleep(0.002)
    waited = time.monotonic() - asked
    did = await harvest_upper(job, fetcher, answer)
    return f"at {answer['m']} of {answer['end']}, offered in {waited:.3f} s: {did}"


def split_answer(directory: str, node_id: int) -> dict[str, Any] | bool | None:
    """The owner's answer: its offer, False (refused) or None (not yet)."""
    try:
        with open(os.path.join(directory, f"{node_id}.offer"), "rb") as file:
            offer: dict[str, Any] = orjson.loads(file.read())
            return offer
    except FileNotFoundError:
        pass
    if os.path.exists(os.path.join(directory, f"{node_id}.refused")):
        return False
    return None


def give_back(directory: str, node_id: int, token: str, why: str) -> None:
    """The thief (or its lane, when its job failed) hands the upper part back to the owner."""
    base = os.path.join(directory, f"{node_id}-{token}")
    if os.path.exists(os.path.join(directory, f"{node_id}.offer")):  # (else: nobody waits)
        _write_atomic(base + ".giveback", why.encode())


class UpperPart:
    """One chunk of a split step's upper part as the thief verified it (`harvest_upper`):
    where its rows and its leaf hashes are in the thief's file, which starts with the token."""

    def __init__(self, path: str, token: str, meta: dict[str, Any]) -> None:
        self.path, self.token, self.meta = path, token, meta

    def check(self, k: int, lo: int, end: int) -> str | None:
        """What is wrong with it (None: it is this split's part `k`, from `lo`, whole in
        the file), before any of it is used."""
        meta = self.meta
        try:
            if meta.get("token") != self.token:
                return "not this step's"
            if (int(meta["k"]), int(meta["lo"]), int(meta["end"])) != (k, lo, end):
                return "of another split"
            hi = int(meta["hi"])
            spans = [tuple(int(x) for x in meta["data"]), tuple(int(x) for x in meta["hashes"])]
            if not lo < hi <= end or spans[1][1] != 32 * (hi - lo):
                return "out of order"
            with open(self.path, "rb") as file:
                if not hmac.compare_digest(file.read(len(self.token)), self.token.encode()):
                    return "not this step's"
                size = os.fstat(file.fileno()).st_size
        except FileNotFoundError:
            return "gone"
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            return f"unreadable ({exc})"
        if any(o < len(self.token) or n < 0 or o + n > size for o, n in spans):
            return "short"
        return None

    @property
    def hi(self) -> int:
        return int(self.meta["hi"])

    def read(self) -> tuple[bytes, bytes]:
        """The chunk (as `_Spill` writes one) and its leaf hashes (`check` first)."""
        with open(self.path, "rb") as file:
            out = []
            for key in ("data", "hashes"):
                offset, length = (int(x) for x in self.meta[key])
                file.seek(offset)
                out.append(file.read(length))
            return out[0], out[1]


class SplitOwner:
    """A step's side of a split (see above): looks for a request once a page, answers it
    once, and at the split point waits for the upper part or takes it back."""

    def __init__(self, directory: str, node_id: int) -> None:
        self.directory = directory
        self.node_id = node_id
        self.request = os.path.join(directory, f"{node_id}.request")
        self.answered = False
        self.offered = False
        self.token = ""
        self.m = self.end = 0
        self.offered_at = 0.0

    def _base(self) -> str:
        return os.path.join(self.directory, f"{self.node_id}-{self.token}")

    def asked(self) -> bool:
        return not self.answered and os.path.exists(self.request)

    def answer(self, bound: _Bound, verifier: StepVerifier, *, min_left: int) -> None:
        self.answered = True
        end, n = bound.end, verifier.next_index
        m = max(bound.asked, n + int((end - n) * SPLIT_AT))
        if end - m < max(min_left, 1):
            _write_atomic(os.path.join(self.directory, f"{self.node_id}.refused"), b"")
            return
        self.token = secrets.token_hex(16)
        offer = {"token": self.token, "m": m, "end": end, "note": verifier.note}
        bound.end, self.m, self.end, self.offered = m, m, end, True
        self.offered_at = time.monotonic()
        _write_atomic(os.path.join(self.directory, f"{self.node_id}.offer"), orjson.dumps(offer))

    async def parts(self, limit: float = 60.0) -> AsyncIterator[UpperPart]:
        """The thief's chunks, in order, as it publishes them; ends at the step's end, or
        early when it gives the rest back, a part is not this split's, or none comes within
        `limit` seconds (the owner then verifies the rest itself)."""
        base = self._base()
        lo, k = self.m, 0
        while lo < self.end:
            until = time.monotonic() + limit
            while True:
                try:
                    with open(f"{base}.{k}", "rb") as file:
                        meta = orjson.loads(file.read())
                    break
                except FileNotFoundError:
                    if os.path.exists(base + ".giveback") or time.monotonic() > until:
                        return
                    await asyncio.sleep(0.002)
            part = UpperPart(base + ".split", self.token, meta if isinstance(meta, dict) else {})
            if part.check(k, lo, self.end) is not None:
                return
            _unlink(f"{base}.{k}")
            yield part
            lo, k = part.hi, k + 1

    def withdraw(self) -> None:
        """Verify the rest here after all: the offer is taken back, and the thief, seeing it
        gone, stops and removes what it wrote."""
        _unlink(os.path.join(self.directory, f"{self.node_id}.offer"))
        self.offered = False

    def close(self) -> None:
        if self.offered:
            self.withdraw()
        for name in (f"{self.node_id}.request", f"{self.node_id}.offer", f"{self.node_id}.refused"):
            _unlink(os.path.join(self.directory, name))
        if self.token:
            base = self._base()
            for suffix in (".split", ".giveback"):
                _unlink(base + suffix)
            prefix = os.path.basename(base) + "."
            for name in os.listdir(self.directory):  # parts not taken
                if name.startswith(prefix) and name[len(prefix) :].isdigit():
                    _unlink(os.path.join(self.directory, name))


class _Collected(CompactRange):
    """A thief's stand-in for the compact range: it keeps the leaf hashes, in order (the
    owner joins them to the real range)."""

    __slots__ = ("leaves",)

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.leaves: list[bytes] = []

    def append(self, leaf_hash: bytes) -> None:
        self.leaves.append(leaf_hash)
        self.size += 1


class _GiveBack(Exception):
    pass


class _Withdrawn(Exception):
    pass


async def harvest_upper(job: NodeJob, fetcher: NodeFetcher, offer: dict[str, Any]) -> str:
    """The thief's side of a split: fetch, verify and key the leaves [m, end) of the offered
    step exactly as its owner would, into the split file (nothing reaches the database), or
    give the part back at anything but the common leaf. Returns what it did."""
    assert job.split_dir is not None
    token, m, end = str(offer["token"]), int(offer["m"]), int(offer["end"])
    base = os.path.join(job.split_dir, f"{job.node_id}-{token}")
    offered = os.path.join(job.split_dir, f"{job.node_id}.offer")  # gone: withdrawn
    published: list[int] = []  # where each published part ends
    try:
        with open(base + ".split", "xb") as out:
            out.write(token.encode())
            keys = KeyHistory.from_json(job.origin, job.keys)
            note = str(offer["note"])
            fake = TrustedState(job.origin, m, bytes(32), CompactRange(), note, keys)
            verifier = StepVerifier(fake, note, [], harvest_schemas(), origin=job.origin, keys=keys)
            hashes = verifier.compact = _Collected(m)
            chunk = Chunk(job.node_id)
            pages = 0

            def publish(chunk: Chunk) -> None:
                """Part k: the chunk, then its leaf hashes, then where they are (the owner
                takes it from there, while this lane verifies the next)."""
                data = marshal.dumps((chunk.rows, chunk.rejected, chunk.keyed))
                lo, hi = chunk.rows[0][1], chunk.rows[-1][1] + 1
                leaves = b"".join(hashes.leaves)
                hashes.leaves.clear()
                at = out.tell()
                out.write(data)
                out.write(leaves)
                out.flush()
                meta = {
                    "token": token,
                    "k": len(published),
                    "lo": lo,
                    "hi": hi,
                    "end": end,
                    "data": (at, len(data)),
                    "hashes": (at + len(data), len(leaves)),
                }
                _write_atomic(f"{base}.{len(published)}", orjson.dumps(meta))
                published.append(hi)

            async for page in _pages(fetcher, job.origin, m, end, job.page_size):
                add, feed = chunk.add, verifier.feed
                for leaf, content in page:
                    v = feed(leaf, content)
                    if v.entry["op"] == "rotate-key":
                        raise _GiveBack(f"a rotate-key leaf at {v.index}")
                    add(v)
                pages += 1
                if pages % COLLECT_EVERY == 0:
                    gc.collect(0)
                if not os.path.exists(offered):
                    raise _Withdrawn
                if len(chunk) >= job.chunk_size:
                    publish(chunk)
                    chunk = Chunk(job.node_id)
            if verifier.next_index != end:
                raise _GiveBack(f"served up to {verifier.next_index - 1}")
            if len(chunk):
                publish(chunk)
            if not os.path.exists(offered):
                raise _Withdrawn
        return f"verified {end - m} leaves from {m}"
    except _Withdrawn:  # the owner verifies the rest itself: nothing of this is read
        for path in [base + ".split"] + [f"{base}.{k}" for k in range(len(published))]:
            _unlink(path)
        return "withdrawn by the owner"
    except Exception as exc:  # anything at all: the owner verifies the part itself
        why = f"{type(exc).__name__}: {exc}"
        give_back(job.split_dir, job.node_id, token, why)
        return f"gave back ({why})"
    except BaseException:  # cancelled: the owner must not wait for it
        give_back(job.split_dir, job.node_id, token, "cancelled")
        raise


@dataclass(frozen=True)
class _Mark:
    """Where a chunk ends: the staged size, compact range and checkpoint stored with it."""

    size: int
    compact: dict[str, Any]
    checkpoint: str


class _Spill:
    """Verified chunks that could not be stored yet (SQLite's write lock held by another
    lane's final commit for longer than a grown chunk takes to fill), kept on disk next to
    the database (at most the step: CATALOGUE_MAX_STEP), in order, so the lane goes on
    verifying in bounded memory.
    They are in flight like a chunk in memory: staged only once stored (`drain`), or, when
    `named` (a `TailDir` of this harvest), handed with what is left of the step to its final
    commit (`handoff`, `store_tail`). Otherwise the file is unnamed."""

    def __init__(
        self, directory: str | None, *, named: str | None = None, node_id: int = 0
    ) -> None:
        self.directory = directory  # next to the database: the same disk, not a small /tmp
        self.named = named
        self.node_id = node_id
        self.file: IO[bytes] | None = None
        self.path: str | None = None  # the named file's
        self.token = ""
        self.base = 0  # where the chunks start (after the token)
        self.end = 0  # where the next chunk goes
        self.chunks: deque[tuple[int, int, _Mark]] = deque()  # offset, length, mark

    def __bool__(self) -> bool:
        return bool(self.chunks)

    def _open(self) -> IO[bytes]:
        if self.named is None:
            return tempfile.TemporaryFile(dir=self.directory)  # noqa: SIM115 - close()
        self.token = secrets.token_hex(16)
        self.path = os.path.join(self.named, f"{self.node_id}-{self.token}.tail")
        file = open(self.path, "x+b")  # noqa: SIM115 - close() or handoff()
        file.write(self.token.encode())
        self.base = file.tell()
        return file

    def put(self, chunk: Chunk, mark: _Mark) -> None:
        """Append a chunk as pieces (`_pieces`) where the last one ended."""
        if self.file is None:
            self.file = self._open()
            self.end = self.base
        file = self.file
        file.seek(self.end)
        length = 0
        for piece in _pieces(chunk):
            file.write(_PIECE_HEAD.pack(len(piece)))
            file.write(piece)
            length += _PIECE_HEAD.size + len(piece)
        self.chunks.append((self.end, length, mark))
        self.end += length

    def drain(self, writer: Writer, pos: Position, *, wait: bool) -> Position:
        """Store the spilled chunks in order, while the lock is free (`wait`: all of them)."""
        while self.chunks and (wait or writer.lock_free()):
            assert self.file is not None
            offset, length, mark = self.chunks[0]
            chunk = _read_chunk(self.file, pos, offset, length)
            if wait:
                pos = writer.store_now(pos, chunk, **asdict(mark))
            else:  # taken meanwhile: the rest waits on disk, in order
                stored = writer.try_store(pos, chunk, **asdict(mark))
                if stored is None:
                    break
                pos = stored
            self.chunks.popleft()
        if not self.chunks:
            # written over from its start, not truncated: pages the file has are written
            # again, where new ones cost the kernel more than the write (a 20,000-entry
            # chunk's first write 3.9, a later one 0.25 µs an entry)
            self.end = self.base
        return pos

    def handoff(self) -> dict[str, Any]:
        """The chunks left, for the final commit to store (`FinalStep.tail`): the named file
        is closed and no longer this step's to remove."""
        assert self.file is not None and self.path is not None
        self.file.close()
        tail = {
            "path": self.path,
            "token": self.token,
            "chunks": [(offset, length, asdict(mark)) for offset, length, mark in self.chunks],
        }
        self.file, self.path = None, None
        self.chunks.clear()
        return tail

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.path is not None:
            _unlink(self.path)
            self.path = None
        self.chunks.clear()


# a spilled chunk is a run of pieces, each its length (4 bytes, little-endian) and a marshal
# string: the rejections, the keyed groups packed as stored (`index.pack_keyed`; empty: none),
# then the rows, SPILL_ROWS at a time. In pieces, not one marshal of the chunk: a 20 MB buffer
# (a 20,000-entry chunk) is a fresh mapping each time (the harvest's mmap threshold is fixed
# at 256 KB: `harvester._bounded_malloc`), whose page faults cost more than marshal itself
# (dumps 5-7 µs an entry the first time, 1.2 once mapped); a piece of 64 rows is about 70 KB
_PIECE_HEAD = struct.Struct("<I")
SPILL_ROWS = 64


def _pieces(chunk: Chunk) -> Iterator[bytes]:
    """A chunk as the spill file's pieces (see `_PIECE_HEAD`)."""
    yield marshal.dumps(chunk.rejected)
    # the keyed groups in their stored form, marshalled once (not once here, once read back
    # and once more as they are stored)
    if chunk.packed is not None:
        yield chunk.packed
    else:
        yield pack_keyed(chunk.keyed) if chunk.keyed else b""
    rows = chunk.rows
    for i in range(0, len(rows), SPILL_ROWS):
        yield marshal.dumps(rows[i : i + SPILL_ROWS])


def _read_chunk(file: IO[bytes], pos: Position, offset: int, length: int) -> Chunk:
    file.seek(offset)
    read = file.read
    head = _PIECE_HEAD.size
    rows: list[tuple[Any, ...]] = []
    try:
        pieces: list[bytes] = []
        done = 0
        while done < length:
            size = _PIECE_HEAD.unpack(read(head))[0] if length - done >= head else -1
            data = read(size) if 0 <= size <= length - done - head else b""
            if len(data) != size:
                raise ValueError(f"a piece at {offset + done} is cut short")
            done += head + size
            if len(pieces) < 2:
                pieces.append(data)
            else:
                # our own file, written by this harvest (a named one is checked by its token)
                rows.extend(marshal.loads(data))  # noqa: S302
        if len(pieces) < 2:
            raise ValueError(f"{length} bytes, not a whole chunk")
        rejected = marshal.loads(pieces[0])  # noqa: S302
    except (EOFError, ValueError, TypeError, struct.error) as exc:
        raise FetchError(
            f"{pos.origin}: the verified chunk at {offset} of {file.name} is unreadable ({exc})"
        ) from exc
    return Chunk(pos.node_id, rows, rejected, packed=pieces[1] or None)


def _read_chunk_bytes(data: bytes, pos: Position, tap: TappedRange) -> Chunk:
    """A chunk of a split's upper part (`UpperPart.read`), with the owner's compact range,
    which kept the subtree hashes its leaves complete."""
    try:
        rows, rejected, keyed = marshal.loads(data)  # noqa: S302 - this harvest's own file
    except (EOFError, ValueError, TypeError) as exc:
        raise FetchError(f"{pos.origin}: the split's verified chunk is unreadable ({exc})") from exc
    return Chunk(pos.node_id, rows, rejected, keyed, tap=tap)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def store_tail(writer: Writer, pos: Position, tail: dict[str, Any]) -> Position:
    """Store a step's tail (`FinalStep.tail`) in order, each chunk in its own transaction as
    the verifying lane would have (a harvest killed meanwhile resumes from what is staged and
    fetches the rest again); the file is removed whatever happens. Only the file this step
    wrote is applied: its name and first bytes are the step's random token."""
    path, token = str(tail["path"]), str(tail["token"])
    if os.path.basename(path) != f"{pos.node_id}-{token}.tail":  # (left alone)
        raise FetchError(f"{pos.origin}: the tail file {path} is not this step's")
    try:
        with open(path, "rb") as file:
            if not hmac.compare_digest(file.read(len(token)), token.encode()):
                raise FetchError(f"{pos.origin}: the tail file {path} is not this step's")
            for offset, length, mark in tail["chunks"]:
                chunk = _read_chunk(file, pos, int(offset), int(length))
                pos = writer.store_now(pos, chunk, **mark)
                del chunk
                trim_heap()
    except FileNotFoundError as exc:
        raise FetchError(f"{pos.origin}: the tail file {path} is gone") from exc
    finally:
        _unlink(path)
    return pos


def _age(path: str) -> float:
    try:
        return time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return 0.0


class TailDir:
    """A directory of one harvest's step tails (`_Spill.handoff`) and split requests
    (`request_split`), in `.harvest-tails` of `directory` (the SQLite database's, else the
    catalogue's home), removed when the harvest ends. A harvest killed before that leaves it
    behind: the next harvest removes every such directory whose owner is gone (its lock file
    is not locked), so a tail is only ever read by the harvest that wrote it (and by its
    token)."""

    PARENT = ".harvest-tails"

    @classmethod
    def beside(cls, database: str) -> TailDir:
        """The run directory of a harvest of the SQLite database file `database`."""
        return cls(os.path.dirname(os.path.abspath(database)))

    def __init__(self, directory: str) -> None:
        parent = os.path.join(os.path.abspath(directory), self.PARENT)
        os.makedirs(parent, mode=0o700, exist_ok=True)
        self.sweep(parent)
        # made under another name and locked before it is a "run-" one, so that another
        # harvest's sweep never sees it unlocked
        made = tempfile.mkdtemp(prefix="new-", dir=parent)
        self._lock = open(os.path.join(made, "lock"), "wb")  # noqa: SIM115 - close()
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = os.path.join(parent, "run-" + os.path.basename(made)[len("new-") :])
        os.rename(made, self.path)

    @staticmethod
    def sweep(parent: str) -> list[str]:
        """Remove the tail directories of harvests that ended without removing theirs."""
        removed = []
        for name in sorted(os.listdir(parent)):
            path = os.path.join(parent, name)
            if name.startswith("new-") and _age(path) > 60:  # a harvest killed as it started
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            if not name.startswith("run-"):
                continue
            try:
                with open(os.path.join(path, "lock"), "rb") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the owner's is released
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
            except BlockingIOError:  # a running harvest's
                continue
            except (FileNotFoundError, NotADirectoryError):  # not a harvest's
                continue
        return removed

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self._lock.close()


class _Served:
    """The pages of a step as they are served; remembers the FetchError that ended them."""

    def __init__(self, pages: AsyncIterator[list[tuple[bytes, Any]]]) -> None:
        self.pages = pages
        self.error: FetchError | None = None

    def __aiter__(self) -> _Served:
        return self

    async def __anext__(self) -> list[tuple[bytes, Any]]:
        try:
            return await self.pages.__anext__()
        except FetchError as exc:
            self.error = exc
            raise


async def _withheld(
    fetcher: NodeFetcher,
    job: NodeJob,
    verifier: StepVerifier,
    accepted: TrustedState | None,
    why: str,
) -> BiobankError:
    """The node signs a checkpoint whose leaves it does not serve: ask it for a consistency
    proof from the last verified checkpoint. A proof that fails is a fork (EquivocationError,
    which halts the node with both checkpoints); otherwise the node withholds its leaves
    (WithholdingError: retried, and alerted on once it lasts CATALOGUE_WITHHOLD_AFTER)."""
    size, note = verifier.checkpoint.size, verifier.note
    message = (
        f"{job.origin}: signs a checkpoint of size {size} but serves its leaves only up to "
        f"{verifier.next_index - 1}" + (f" ({why})" if why else "")
    )
    if accepted is None or accepted.size == 0:
        return WithholdingError(
            message + "; no verified checkpoint yet to ask a consistency proof from",
            trusted=None,
            new=note,
        )
    try:
        proof = await fetcher.consistency(accepted.size, size)
    except FetchError as exc:
        return WithholdingError(
            message + f"; nor a consistency proof from the verified size {accepted.size}: {exc}",
            trusted=accepted.checkpoint,
            new=note,
        )
    try:
        verify_consistency(accepted.size, size, proof, accepted.root, verifier.checkpoint.root)
    except ProofError as exc:
        return EquivocationError(
            message + f"; its consistency proof from the verified size {accepted.size} fails "
            f"({exc}): the signed tree does not extend the verified one",
            trusted=accepted.checkpoint,
            new=note,
        )
    return WithholdingError(
        message + f"; its consistency proof from the verified size {accepted.size} holds, so "
        "the log is not forked: the node withholds the leaves",
        trusted=accepted.checkpoint,
        new=note,
    )


@cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc
        return None


def trim_heap() -> None:
    """Give the heap freed by stored chunks and verified pages back to the system (glibc
    keeps it otherwise), so that a worker's resident memory stays what it holds."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _staged_state(job: NodeJob, keys: KeyHistory) -> TrustedState | None:
    """The tree as far as an interrupted run stored it (checked later by the root)."""
    if not job.staged:
        return None
    compact = CompactRange.from_json(orjson.loads(job.staged["compact"]))
    return TrustedState(
        job.origin,
        int(job.staged["size"]),
        compact.root(),
        compact,
        str(job.staged["checkpoint"]),
        keys,
    )


async def _explained(
    fetcher: NodeFetcher,
    keys: KeyHistory,
    note: str,
    state: TrustedState | None,
    exc: SignatureError,
) -> SignatureError:
    """A refused signature, explained when the node now announces another key (rotation)."""
    try:
        announced = (await fetcher.descriptor()).get("verifier_key")
    except BiobankError:  # the descriptor only explains; the refusal stands without it
        return exc
    hint = rotation_hint(
        keys,
        note,
        previous_size=state.size if state else 0,
        announced_key=announced if isinstance(announced, str) else None,
    )
    return hint or exc


class _Bound:
    """Where a step's pages end (`_pages` reads it as it goes: a split lowers it) and how far
    they have been asked for."""

    __slots__ = ("end", "asked")

    def __init__(self, end: int) -> None:
        self.end = end
        self.asked = 0


async def _pages(
    fetcher: NodeFetcher, origin: str, start: int, bound: _Bound | int, page_size: int
) -> AsyncIterator[list[tuple[bytes, Any]]]:
    """Entries [start, end) as pages of (leaf bytes, content); entries past `end` are ignored.

    Up to PAGES_AHEAD pages are requested while the current one is verified (pages are
    stable, so they are asked for by position; a short page is followed up where it ends).
    `bound` (a `_Bound`) may be lowered meanwhile, never below what it says was asked for.
    """
    if isinstance(bound, int):
        bound = _Bound(bound)
    pos = start  # next entry to yield
    bound.asked = start  # next entry to ask for
    pending: deque[tuple[int, asyncio.Future[Any]]] = deque()
    try:
        while pos < bound.end:
            while len(pending) < PAGES_AHEAD and bound.asked < bound.end:
                asked = bound.asked
                limit = min(page_size, bound.end - asked)
                pending.append((asked, asyncio.ensure_future(fetcher.entries(asked, limit))))
                bound.asked = asked + limit
            at, future = pending.popleft()
            entries, _nxt = await future
            if at != pos:  # an earlier page was short: ask again from where it ended
                for _at, f in pending:
                    f.cancel()
                pending.clear()
                bound.asked = pos
                continue
            end = bound.end
            entries = entries[: end - pos]
            if not entries:
                return  # fewer leaves than the checkpoint claims: finish() names what is missing
            page = decode_page(origin, pos, entries)
            pos += len(entries)
            if pos < at + min(page_size, end - at):  # short page: re-plan the rest
                for _at, f in pending:
                    f.cancel()
                pending.clear()
                bound.asked = pos
            yield page
    finally:
        for _at, f in pending:
            f.cancel()
