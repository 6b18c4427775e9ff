"""A lane never waits for SQLite's write lock to store a chunk (issue 19 item 4): between
its look at the lock (`Writer.lock_free`) and its store, another lane's final commit may take
the lock, and a store that then waited stopped the lane for that whole commit. Chunks are
stored with `write_tx(wait=False)` (`Writer.try_store`), which gives up at once and leaves
the chunk to the spill file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from catalogue.context import build_context
from catalogue.db import write_tx
from catalogue.errors import WriteLockBusy
from tests.catalogue.conftest import Catalogue, WriteLockHeld, make_settings


@pytest.fixture
def sqlite_catalogue(tmp_path: Path) -> Iterator[Catalogue]:
    ctx = build_context(make_settings(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "home"))
    yield Catalogue(ctx)
    ctx.engine.dispose()


def _busy_timeout(cat: Catalogue) -> int:
    with cat.engine.connect() as conn:
        return int(conn.execute(text("PRAGMA busy_timeout")).scalar())


def test_a_write_that_must_not_wait_gives_up_at_once_while_the_lock_is_held(
    sqlite_catalogue: Catalogue,
) -> None:
    cat = sqlite_catalogue
    waits = _busy_timeout(cat)
    assert waits >= 60_000  # a waiting write would sit there for a minute or more
    with WriteLockHeld(cat):
        started = time.monotonic()
        with pytest.raises(WriteLockBusy), write_tx(cat.engine, wait=False) as conn:
            conn.execute(text("CREATE TABLE never (x)"))
        assert time.monotonic() - started < 1.0
    assert _busy_timeout(cat) == waits  # the pooled connection waits again for others
    with write_tx(cat.engine, wait=False) as conn:  # free: it writes and commits
        conn.execute(text("CREATE TABLE now (x)"))
    with cat.engine.connect() as conn:
        tables = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master"))}
    assert "now" in tables and "never" not in tables
