"""Examining a large bundle log in worker processes, results handed back in log order.

Only the order-free work (decoding lines, parsing leaves, hashing, digests, schemas) runs in
workers (`audit.examine.examine_lines`); the caller applies results one by one in log order
(`audit.node_logs.stream_examined`), so the report is the same as a serial run's.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

from audit.examine import Chunk, Examined, examine_lines, expand, prepare_worker

CHUNK = 2_000  # lines per task: large enough that pickling and scheduling stay small


def auto_workers() -> int:
    """Two workers on a machine with at least two cores, else none (serial)."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1


class ExaminePool:
    """A pool of worker processes.

    Forked when this process runs a single thread (workers start at once, with the schemas
    already compiled), else spawned, so that no lock held by another thread is inherited.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        context: multiprocessing.context.BaseContext
        if threading.active_count() == 1:
            prepare_worker()
            context = multiprocessing.get_context("fork")
        else:
            context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)

    def warm_up(self) -> None:
        """Start the workers now, while the caller still reads checkpoints and the search."""
        for _ in range(self.workers):
            self._pool.submit(examine_lines, "", 0, [])

    def examined(self, origin: str, chunks: Iterable[list[bytes]]) -> Iterator[Examined]:
        """Examined leaves of `origin` in log order; a worker's exception is raised in turn,
        after the leaves before it (as a serial run would)."""
        pending: deque[Future[Chunk]] = deque()
        start = 0
        try:
            for lines in chunks:
                pending.append(self._pool.submit(examine_lines, origin, start, lines))
                start += len(lines)
                if len(pending) > 2 * self.workers:
                    yield from _results(pending.popleft())
            while pending:
                yield from _results(pending.popleft())
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _results(future: Future[Chunk]) -> Iterator[Examined]:
    done, error = expand(future.result())
    yield from done
    if error is not None:
        raise error
