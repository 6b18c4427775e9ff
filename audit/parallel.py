"""Examining a large node log in worker processes, results handed back in log order.

Only the order-free work (fetching pages or decoding bundle lines, parsing leaves, hashing,
digests, schemas, group keys) runs in workers (`audit.examine.examine_task`); the caller
applies results one by one in log order (`audit.node_logs.stream_chunks`), so the report is
the same as a serial run's.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

from audit.examine import Chunk, Task, examine_task, prepare_worker, task_size

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
            self._pool.submit(examine_task, "", 0, [])

    def chunks(self, origin: str, tasks: Iterable[Task]) -> Iterator[Chunk]:
        """The examined chunks of `origin`'s leaves in log order (`Chunk`: the leaves at
        indexes start, start+1, ...). A chunk that comes back short (the mirror served fewer
        leaves, or a line or page failed: its `error`) is the last."""
        pending: deque[tuple[int, Future[Chunk]]] = deque()
        start = 0
        try:
            for task in tasks:
                size = task_size(task)
                pending.append((size, self._pool.submit(examine_task, origin, start, task)))
                start += size
                if len(pending) > 2 * self.workers:
                    size, future = pending.popleft()
                    chunk = future.result()
                    yield chunk
                    if chunk.error is not None or len(chunk.hashes) < 32 * size:
                        return
            while pending:
                size, future = pending.popleft()
                chunk = future.result()
                yield chunk
                if chunk.error is not None or len(chunk.hashes) < 32 * size:
                    return
        finally:
            for _, future in pending:
                future.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
