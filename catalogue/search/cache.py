"""The search index a server holds: the group cube as arrays, kept at the size of the
catalogue's own log, refreshed by reading only the combos changed since (`combos.changed`).

Every accepted harvest step marks the combos it changed with the own-log size it commits
(catalogue.ownlog.reserve), so one indexed query finds them; several servers sharing one
PostgreSQL database each keep their own copy this way (catalogue.cluster refreshes it on
NOTIFY, a search refreshes it too when it finds the log grown).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import Connection, select

from catalogue.models import combos, own_state
from catalogue.search.cube import Combo, load

if TYPE_CHECKING:  # numpy is imported on first use: a harvest worker never needs it
    from catalogue.search.tally_arrays import ArrayCube

__all__ = ["CubeCache", "Refresh"]

T = TypeVar("T")


@dataclass(frozen=True)
class Refresh:
    """What the last refresh did: the log sizes it went between, combos read, seconds."""

    since: int
    size: int
    combos: int
    seconds: float
    full: bool


class CubeCache:
    """The latest snapshot and the own-log size it reflects."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version = -1
        self._cube: ArrayCube | None = None
        self._snap: tuple[int, ArrayCube] | None = None  # (version, cube), set at once
        self._rows: list[Combo] = []  # row -> combo, as in the arrays
        self._pos: dict[int, int] = {}  # combo id -> row
        self._memo: dict[str, tuple[int, Any]] = {}
        self.last: Refresh | None = None

    @property
    def version(self) -> int:
        """The own-log size the snapshot reflects (-1: none loaded yet)."""
        return self._version

    def snapshot(self, conn: Connection) -> tuple[int, ArrayCube]:
        """The snapshot and the own-log size it reflects, first brought up to date."""
        self.arrays(conn)
        assert self._snap is not None
        return self._snap

    def memo(self, name: str, version: int, make: Callable[[], T]) -> T:
        """What `make` reads from the database, kept until the own log grows past `version`
        (the version of the snapshot the caller holds). Only what changes with the own log
        belongs here: every accepted harvest step and every retirement grow it."""
        got = self._memo.get(name)
        if got is not None and got[0] == version:
            return cast(T, got[1])
        value = make()
        got = self._memo.get(name)
        if got is None or got[0] <= version:  # never replace a newer one
            self._memo[name] = (version, value)
        return value

    @property
    def loaded(self) -> bool:
        """Whether a snapshot has been loaded (the catalogue's readiness)."""
        return self._version >= 0

    def arrays(self, conn: Connection) -> ArrayCube:
        """The snapshot, first brought up to the own log's size if it has grown."""
        if self._cube is None or _size(conn) > self._version:
            with self._lock:
                self._refresh(conn)
        assert self._cube is not None
        return self._cube

    def rows(self, conn: Connection) -> list[Combo]:
        """The combos counting some group (as `cube.load` reads them), up to date."""
        self.arrays(conn)
        with self._lock:
            return [r for r in self._rows if r.n_max > 0]

    def _refresh(self, conn: Connection) -> None:
        from catalogue.search.tally_arrays import build

        start = time.perf_counter()
        size = _size(conn)  # first: every change marked <= size is committed and read below
        if self._cube is not None and size <= self._version:
            return  # another thread was quicker
        since = self._version
        if self._cube is None:
            ids, rows = load(conn)
            self._rows = rows
            self._pos = {cid: i for i, cid in enumerate(ids)}
            self._cube = build(rows)
            read = len(rows)
        else:
            ids, rows = load(conn, combos.c.changed > self._version)
            self._cube = self._apply(self._cube, ids, rows)
            read = len(rows)
        self._version = size
        self._snap = (size, self._cube)
        self.last = Refresh(since, size, read, time.perf_counter() - start, since < 0)

    def _apply(self, cube: ArrayCube, ids: list[int], rows: list[Combo]) -> ArrayCube:
        from catalogue.search.tally_update import apply

        changed: list[tuple[int, Combo]] = []
        new: list[Combo] = []
        for cid, combo in zip(ids, rows, strict=True):
            at = self._pos.get(cid)
            if at is not None and _same(self._rows[at], combo):
                changed.append((at, combo))
                self._rows[at] = combo
                continue
            if at is not None:  # the id now names another combo (SQLite reuses a deleted id)
                gone = replace(self._rows[at], n_min=0, n_max=0, d_min=0, d_max=0)
                changed.append((at, gone))
                self._rows[at] = gone
            if combo.n_max > 0:
                self._pos[cid] = len(self._rows)
                self._rows.append(combo)
                new.append(combo)
            elif at is not None:
                del self._pos[cid]
        return apply(cube, changed, new) if changed or new else cube


def _same(old: Combo, new: Combo) -> bool:
    """The same combo: everything but the counts and the country (which steps change)."""
    return _key(old) == _key(new)


def _key(c: Combo) -> Combo:
    return replace(c, n_min=0, n_max=0, d_min=0, d_max=0, country=None)


def _size(conn: Connection) -> int:
    return int(conn.execute(select(own_state.c.size)).scalar() or 0)
