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
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
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
        # workers number a log's group keys once per session (`examine_task`)
        self.session = secrets.token_hex(8)

    def warm_up(self) -> None:
        """Start the workers now, while the caller still reads checkpoints and the search."""
        for _ in range(self.workers):
            self._pool.submit(examine_task, "", 0, [])

    def chunks(self, origin: str, tasks: Iterable[Task]) -> Iterator[Chunk]:
        """The examined chunks of `origin`'s leaves in log order (`Chunk`: the leaves at
        indexes start, start+1, ...). A chunk that comes back short (the mirror served fewer
        leaves, or a line or page failed: its `error`) is the last."""
        return self.feed([(origin, lambda: tasks)]).node(0)

    def feed(self, jobs: list[tuple[str, Callable[[], Iterable[Task]]]]) -> Feed:
        """Several node logs in one stream of tasks (`Feed.node(k)`: the chunks of the k-th,
        as `chunks` gives them): the next log's tasks are submitted while the caller still
        applies the last chunks of this one, so the workers never wait at a log's end."""
        return Feed(self, jobs)

    def _submit(self, origin: str, start: int, task: Task) -> Future[Chunk]:
        return self._pool.submit(examine_task, origin, start, task, self.session)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class Feed:
    """The tasks of several node logs submitted in order, at most `2 * workers + 1` ahead of
    the caller, across log boundaries (`ExaminePool.feed`)."""

    def __init__(
        self, pool: ExaminePool, jobs: list[tuple[str, Callable[[], Iterable[Task]]]]
    ) -> None:
        self._pool = pool
        self._ahead = 2 * pool.workers + 1
        # (log number, leaves, future) in submission order; an error making a log's tasks
        # is kept as (log number, 0, exception) and raised when that log is read
        self._pending: deque[tuple[int, int, Future[Chunk] | BaseException]] = deque()
        self._stopped: set[int] = set()  # logs that ended early: their later tasks dropped
        self._tasks = self._all(jobs)

    def _all(
        self, jobs: list[tuple[str, Callable[[], Iterable[Task]]]]
    ) -> Iterator[tuple[int, int, Future[Chunk] | BaseException]]:
        for number, (origin, make) in enumerate(jobs):
            start = 0
            try:
                for task in make():
                    if number in self._stopped:
                        break
                    size = task_size(task)
                    yield number, size, self._pool._submit(origin, start, task)
                    start += size
            except Exception as exc:  # noqa: BLE001 - raised when the caller reads this log
                yield number, 0, exc

    def fill(self) -> None:
        """Submit tasks until `2 * workers + 1` are pending (the first: at once)."""
        while len(self._pending) < self._ahead:
            item = next(self._tasks, None)
            if item is None:
                return
            self._pending.append(item)

    def node(self, number: int) -> Iterator[Chunk]:
        """The chunks of log `number` in order; logs must be read in order, each to its end
        (or abandoned: its remaining tasks are then dropped when the next log is read)."""
        try:
            while True:
                self.fill()
                while self._pending and self._pending[0][0] < number:  # an abandoned log
                    _n, _size, left = self._pending.popleft()
                    if isinstance(left, Future):
                        left.cancel()
                    self.fill()
                if not self._pending or self._pending[0][0] != number:
                    return
                _n, size, future = self._pending.popleft()
                if not isinstance(future, Future):
                    raise future
                chunk = future.result()
                yield chunk
                if chunk.error is not None or len(chunk.hashes) < 32 * size:
                    return
        finally:
            self._stopped.add(number)
            for n, _size, left in self._pending:
                if n == number and isinstance(left, Future):
                    left.cancel()
