"""The per-sample half of an import's diff: pseudonym, content, schema gate, canonical bytes.

:class:`SampleEncoder` turns staged sample rows (after privacy, joined with the published
state) into what the log needs: the published id, the canonical content bytes and their
digest, the nonce and the local donor hash. It reads no database, so a big import runs it
in a helper process (:class:`ImportHelper`) while the importer's own process writes the
previous batch to the log: the two halves take about the same time, and a 2-core machine
does them side by side.

The helper sees only what the importer's process would compute with anyway (the staged
rows and the pseudonym secret) and returns plain values; the importer still appends every
entry, builds every leaf and signs the checkpoint itself. Batches are encoded and consumed
in order, so the log, the problems and the counts are those of the inline encoder
(``tests/node/test_encode.py``).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from node.pseudonym import Pseudonymiser
from node.publish import entry_leaf
from protocol.canonical import bytes_digest, canonical
from protocol.errors import Problem
from protocol.merkle import leaf_hash

if TYPE_CHECKING:
    from node.importing.mapping import Mapping
    from node.importing.sources.tabular import Checked, SampleRows
    from protocol.schema import SchemaSet

__all__ = [
    "BATCH",
    "Built",
    "Bulk",
    "Encoded",
    "HELPER_MIN_BYTES",
    "HELPER_MIN_ROWS",
    "ImportHelper",
    "LeafPlan",
    "SampleEncoder",
    "Validate",
    "encode_content",
]

Validate = Callable[[str, dict[str, Any], str], list[Problem]]
BATCH = 5000
#: imports with at least this many samples to publish, or this many bytes of files to
#: read, use a helper process (spawning one costs about a third of a second, which a
#: smaller import would not win back)
HELPER_MIN_ROWS = 20_000
HELPER_MIN_BYTES = 4 << 20

#: A prebuilt log leaf: (the index it assumed, leaf bytes, leaf hash); see LogWriter.publish.
Built = tuple[int, bytes, bytes]
#: What :meth:`SampleEncoder.encode` returns per row: ``None`` (unchanged, nothing to
#: append), a list of problems (invalid, nothing to append) or
#: ``(id, canonical content bytes, digest, nonce, donor hash, Built or None, biobank,
#: local id)``.
Encoded = tuple[str, bytes, str, str, "str | None", "Built | None", str, str] | list[Problem] | None


class Bulk(NamedTuple):
    """A batch whose every row is published, as the importer stores it: the leaves
    (``LogWriter.append_built``), the contents, and the record-state upserts, all for the
    indexes from ``base`` on (what the batch's :class:`LeafPlan` assumed)."""

    base: int
    leaves: list[tuple[int, bytes, bytes, str, str, str, str]]
    contents: list[tuple[int, str | None]]
    upserts: list[tuple[object, ...]]


@dataclass(frozen=True)
class LeafPlan:
    """Build each published row's leaf too, assuming the rows that publish take the
    indexes ``base``, ``base + 1``, ... (true when none before them is unchanged or
    invalid; the log writer checks the index and builds the leaf itself when it differs)."""

    origin: str
    schema: str
    time: str
    base: int


def encode_content(
    validate: Validate, kind: str, content: dict[str, Any], location: str
) -> tuple[bytes, str] | list[Problem]:
    """Canonical bytes and digest of valid content, or its problems."""
    problems = validate(kind, content, location)
    if not problems:
        try:
            data = canonical(content)
        except ValueError as exc:  # e.g. a float: schema-valid JSON, but not canonical
            problems = [Problem(location, "/", None, str(exc))]
    if problems:
        return problems
    return data, bytes_digest(data)


class SampleEncoder:
    """Encodes staged sample rows; keeps the memos that make repeated values cheap.

    A row is the JSON array text (SQLite's ``json_array``) of ``(local_id, donor_id,
    biobank, collection, sample_type, storage_temperature, sex, age_min, age_max,
    period_from, period_to, diagnoses, use_conditions, dataset_types, row_location,
    old_id, old_digest, old_nonce, live)``, the last four from the published state (NULL
    for a sample never published). JSON keeps SQL types apart as the gate needs: text
    stays a string, an INTEGER an integer and a REAL a float (``40.5``, or ``40.0`` for a
    REAL that INTEGER affinity did not make an integer); the list columns are text.
    """

    def __init__(self, pseudonyms: Pseudonymiser, schemas: SchemaSet) -> None:
        self.pseudonyms = pseudonyms
        self.validate: Validate = schemas.problems
        # the schema memo's fast path, keyed by the row's columns (see encode())
        self._gate = schemas.field_memo("sample").column_gate(10)
        self._lists: dict[str, Any] = {}  # JSON list text -> parsed (shared, never mutated)
        self._nonces = _Nonces()

    def encode_batch(
        self, rows: Iterable[str], plan: LeafPlan | None = None
    ) -> list[Encoded] | Bulk:
        """:meth:`encode`; with a ``plan``, a batch whose every row is published (the
        common case) comes as a :class:`Bulk`, ready to store."""
        out = self.encode(rows, plan)
        if plan is None or not out or not all(type(r) is tuple and r[0].isascii() for r in out):
            return out
        done: list[Any] = out
        time = plan.time
        return Bulk(
            plan.base,
            [(b[0], b[1], b[2], "sample", r[0], "publish", time) for r in done for b in (r[5],)],
            [(r[5][0], r[1].decode("utf-8")) for r in done],
            [("sample", r[0], r[6], r[7], r[4], r[2], r[3], r[5][0]) for r in done],
        )

    def encode(self, rows: Iterable[str], plan: LeafPlan | None = None) -> list[Encoded]:
        """One :data:`Encoded` per row, in order; with leaves when there is a ``plan``."""
        index = plan.base if plan is not None else 0
        out: list[Encoded] = []
        append = out.append
        lists = self._lists
        known_bytes = self._gate.canonical_bytes
        sample_id = self.pseudonyms.sample_id
        donor_hash = self.pseudonyms.donor_hash
        nonces = self._nonces
        loads = orjson.loads
        for text in rows:
            (
                local_id,
                donor_id,
                biobank,
                collection,
                sample_type,
                storage,
                sex,
                age_min,
                age_max,
                period_from,
                period_to,
                diagnoses,
                use,
                datasets,
                location,
                old_id,
                old_digest,
                old_nonce,
                live,
            ) = loads(text)
            id = old_id or sample_id(local_id)
            content: dict[str, Any] = {"id": id, "biobank": biobank}
            if collection:
                content["collection"] = collection
            content["sample_type"] = sample_type
            if storage:
                content["storage_temperature"] = storage
            if sex:
                content["sex"] = sex
            if age_min is not None and age_max is not None:
                content["age"] = {"min": age_min, "max": age_max}
            if period_from is not None and period_to is not None:
                content["period"] = {"from": period_from, "to": period_to}
            # list fields: a few combinations repeat, so each JSON text is parsed once
            if diagnoses and diagnoses != "[]":
                content["diagnoses"] = lists.get(diagnoses) or _parse(lists, diagnoses)
            if use and use != "[]":
                content["use_conditions"] = lists.get(use) or _parse(lists, use)
            if datasets and datasets != "[]":
                content["dataset_types"] = lists.get(datasets) or _parse(lists, datasets)
            content["nonce"] = old_nonce or nonces.next()
            # The schema memo's gate (protocol.schema_memo.ColumnGate): a record whose key
            # set and every column already occurred in a record the memo found valid and
            # clean has orjson's bytes as its canonical bytes, checked by look-ups; only
            # records with something new take the memo's per-field check, and records it
            # does not accept the full path (schema problems, canonical()). Each field is
            # built from one column (age and period from a pair); list fields are keyed by
            # their JSON text, and the integer columns have INTEGER affinity (SQLite returns
            # int for every integral value; a non-integral float never equals a seen int).
            # The free fields are the node's own: the id a keyed hash (or the published id)
            # and the nonce random hex (or the published nonce), so they are vouched for.
            columns = (
                biobank,
                collection,
                sample_type,
                storage,
                sex,
                (age_min, age_max),
                (period_from, period_to),
                diagnoses,
                use,
                datasets,
            )
            data = known_bytes(content, columns, True)
            if data is None:
                encoded = encode_content(self.validate, "sample", content, location)
                if isinstance(encoded, list):
                    append(encoded)
                    continue
                data = encoded[0]
            digest = bytes_digest(data)
            if live and digest == old_digest:
                append(None)
                continue
            if old_digest is not None:
                # changed content gets a fresh nonce: old and new digests stay unlinkable
                content["nonce"] = nonces.next()
                data = known_bytes(content, columns, True) or canonical(content)
                digest = bytes_digest(data)
            built: Built | None = None
            if plan is not None:
                leaf = entry_leaf(plan.origin, index, "sample", id, plan.schema, plan.time, digest)
                built = (index, leaf, leaf_hash(leaf))
                index += 1
            append(
                (id, data, digest, content["nonce"], donor_hash(donor_id), built, biobank, local_id)
            )
        return out


class ImportHelper:
    """One helper process for a big import, fed batches in order over a pipe.

    It checks the rows of big sample files (:class:`node.importing.sources.tabular.SampleRows`) and
    encodes the samples to publish (:class:`SampleEncoder`), each while the importer's
    process stages or appends the batch before. Started before it is needed, so its
    start-up overlaps the importer's own work. A helper that dies (or raises) fails the
    import, which then rolls back; a helper whose importer dies ends too.

    The importer's side is one thread that pickles and sends batches and reads results
    when it needs them: no executor threads that would wait for the importer's GIL at
    every hand-over. The helper's side reads requests and sends results on threads of
    its own, so neither side ever waits on the other's pipe.
    """

    def __init__(self, secret: bytes) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, theirs = ctx.Pipe()
        self._process = ctx.Process(
            target=_serve, args=(theirs, secret), daemon=True, name="import-helper"
        )
        self._process.start()
        theirs.close()
        self._files = 0

    def check_samples(
        self,
        mapping: Mapping,
        header: list[str],
        batches: Iterable[list[Any]],
        in_helper: int = 2,
        held: int = 8,
    ) -> Iterator[list[Checked]]:
        """The checked rows of each batch of one sample file, in order.

        Up to ``in_helper`` batches wait in the helper; a batch that finds it that busy is
        checked here instead, so the two processes share the work by how fast each is
        going (this one also parses and stages every row). At most ``held`` checked
        batches wait here behind one of the helper's.
        """
        from node.importing.codes import Codes
        from node.importing.sources.tabular import SampleRows

        self._files += 1
        here = SampleRows(mapping, Codes.default(), header)
        pending: deque[list[Checked] | None] = deque()  # None: the helper's, in flight
        busy = 0
        for batch in batches:
            if busy < in_helper:
                self._send(("check", self._files, mapping, header, batch))
                pending.append(None)
                busy += 1
            else:
                pending.append(here.check(batch))
            while pending and (pending[0] is not None or len(pending) > held or self._conn.poll()):
                done = pending.popleft()
                if done is None:
                    done = self._receive()
                    busy -= 1
                yield done
        while pending:
            done = pending.popleft()
            yield self._receive() if done is None else done

    def encode(
        self,
        batches: Iterable[list[str]],
        ahead: int = 2,
        plan: Callable[[int], LeafPlan | None] = lambda _: None,
        here: SampleEncoder | None = None,
        held: int = 4,
    ) -> Iterator[tuple[list[str], list[Encoded] | Bulk]]:
        """(batch, its encodings) in order, keeping up to ``ahead`` + 1 batches in the helper.

        ``plan(rows)``: the leaf plan of the next batch, given how many rows were sent
        before it and not yet handed back (so the caller has not appended them yet).
        ``here``: the importer's own encoder; a batch that finds the helper that busy is
        encoded with it instead (the importer waits for the helper otherwise), so the two
        share the work by speed. At most ``held`` batches wait here behind the helper's
        (each encoded batch of 5,000 holds about 8 MB until it is handed back).
        """
        pending: deque[tuple[list[str], list[Encoded] | Bulk | None]] = deque()  # None: helper's
        busy = 0
        for batch in batches:
            waiting = sum(len(b) for b, _ in pending)
            if here is None or busy <= ahead:
                self._send(("encode", batch, plan(waiting)))
                pending.append((batch, None))
                busy += 1
            else:
                pending.append((batch, here.encode_batch(batch, plan(waiting))))
            while pending and (
                pending[0][1] is not None
                or len(pending) > held
                or (here is None and busy > ahead)
                or self._conn.poll()
            ):
                sent, done = pending.popleft()
                if done is None:
                    done = self._receive()
                    busy -= 1
                yield sent, done
        while pending:
            sent, done = pending.popleft()
            yield sent, self._receive() if done is None else done

    def _send(self, request: tuple[Any, ...]) -> None:
        try:
            self._conn.send(request)
        except OSError as exc:
            raise self._gone() from exc

    def _receive(self) -> Any:
        try:
            ok, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise self._gone() from exc
        if not ok:
            raise value
        return value

    def _gone(self) -> RuntimeError:
        self._process.join(timeout=5)
        return RuntimeError(
            f"the import's helper process ended unexpectedly (exit code "
            f"{self._process.exitcode}: killed, out of memory, or started from a script "
            "without an 'if __name__ == \"__main__\":' guard); nothing was imported"
        )

    def close(self) -> None:
        """End the helper (a batch in flight is dropped) and wait for it."""
        self._conn.close()  # the helper's reader sees the end and the process exits
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def _serve(conn: Connection, secret: bytes) -> None:
    """The helper's main loop: requests in, results out, each on its own thread."""
    from protocol.schema import SchemaSet

    encoder = SampleEncoder(Pseudonymiser(secret), SchemaSet.default())
    rows: tuple[int, SampleRows] | None = None  # the sample file being checked
    requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
    results: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def read() -> None:
        try:
            while True:
                requests.put(conn.recv_bytes())
        except (EOFError, OSError):  # the importer closed the pipe, or is gone
            os._exit(0)

    def write() -> None:
        try:
            while True:
                conn.send_bytes(results.get())
        except OSError:
            os._exit(0)

    # the reader and writer threads wait in system calls, but need the GIL between
    # them (every chunk of a message); at the default 5 ms switch interval each chunk
    # waited for the encoder to be preempted, and the importer waited on a full pipe
    sys.setswitchinterval(0.0001)
    threading.Thread(target=read, daemon=True, name="requests").start()
    threading.Thread(target=write, daemon=True, name="results").start()
    while True:
        # from the importer that started this process, over their private pipe
        request = pickle.loads(requests.get())  # noqa: S301
        try:
            if request[0] == "encode":
                value: Any = encoder.encode_batch(request[1], request[2])
            else:
                _, file, mapping, header, batch = request
                if rows is None or rows[0] != file:  # a new file: fresh memos
                    from node.importing.codes import Codes
                    from node.importing.sources.tabular import SampleRows

                    rows = (file, SampleRows(mapping, Codes.default(), header))
                value = rows[1].check(batch)
            reply = pickle.dumps((True, value), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - handed to the importer, which raises it
            try:
                reply = pickle.dumps((False, exc))
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                reply = pickle.dumps((False, RuntimeError(traceback.format_exc())))
        results.put(reply)


def _parse(memo: dict[str, Any], text: str) -> Any:
    """``orjson.loads(text)``, kept in ``memo`` (shared values: never mutated)."""
    if len(memo) >= BATCH * 10:
        memo.clear()
    parsed = memo[text] = orjson.loads(text)
    return parsed


class _Nonces:
    """Fresh random 128-bit nonces (hex), drawn from the OS in blocks, not one call each."""

    def __init__(self) -> None:
        self._block = ""
        self._at = 0

    def next(self) -> str:
        if self._at >= len(self._block):
            self._block = os.urandom(16 * BATCH).hex()
            self._at = 0
        self._at += 32
        return self._block[self._at - 32 : self._at]
