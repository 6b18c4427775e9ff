"""Helpers of an import: the schema gate for one record, and a helper process that checks
the rows of big sample files.

:class:`ImportHelper` checks batches of a big CSV/TSV export's rows
(:class:`node.importing.sources.tabular.SampleRows`) in a helper process while the
importer's own process parses and stages the batch before: the two halves take about the
same time, and a 2-core machine does them side by side. Batches are checked and consumed
in order, so the staged rows and problems are those of the inline check
(``tests/node/test_sample_rows.py``).
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
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from protocol.canonical import bytes_digest, canonical
from protocol.errors import Problem

if TYPE_CHECKING:
    from node.importing.mapping import Mapping
    from node.importing.sources.tabular import Checked, SampleRows

__all__ = ["HELPER_MIN_BYTES", "ImportHelper", "Validate", "encode_content"]

Validate = Callable[[str, dict[str, Any], str], list[Problem]]
#: imports with at least this many bytes of files to read use a helper process (spawning
#: one costs about a third of a second, which a smaller import would not win back)
HELPER_MIN_BYTES = 4 << 20


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


class ImportHelper:
    """One helper process for a big import, fed batches in order over a pipe.

    It checks the rows of big sample files (:class:`node.importing.sources.tabular.SampleRows`)
    while the importer's process stages the batch before. Started before it is needed, so its
    start-up overlaps the importer's own work. A helper that dies (or raises) fails the
    import, which then rolls back; a helper whose importer dies ends too.

    The importer's side is one thread that pickles and sends batches and reads results
    when it needs them: no executor threads that would wait for the importer's GIL at
    every hand-over. The helper's side reads requests and sends results on threads of
    its own, so neither side ever waits on the other's pipe.
    """

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, theirs = ctx.Pipe()
        self._process = ctx.Process(
            target=_serve, args=(theirs,), daemon=True, name="import-helper"
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


def _serve(conn: Connection) -> None:
    """The helper's main loop: requests in, results out, each on its own thread."""
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
    # waited for the checker to be preempted, and the importer waited on a full pipe
    sys.setswitchinterval(0.0001)
    threading.Thread(target=read, daemon=True, name="requests").start()
    threading.Thread(target=write, daemon=True, name="results").start()
    while True:
        # from the importer that started this process, over their private pipe
        request = pickle.loads(requests.get())  # noqa: S301
        try:
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
