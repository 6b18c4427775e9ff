"""SQLite lanes: a step whose end finds the write lock held (another lane's final commit) hands
its unstored tail (spilled chunks and the last chunk) to its final commit in a file of the
harvest's own `TailDir`, and the lane goes on at once. The final commit stores the tail first;
what it accepts is what a lane that waited would have stored; a failure there fails the final
commit with nothing indexed, and the next harvest resumes from what was staged; a tail file
that is not the step's own is never applied."""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import os
import time
from pathlib import Path
from typing import Any

import pytest

from catalogue.context import build_context
from catalogue.harvest import Harvester
from catalogue.harvest.harvester import guarded_final
from catalogue.harvest.stream import TailDir, Writer
from tests.catalogue.conftest import Catalogue, WriteLockHeld, make_settings
from tests.catalogue.dbdump import dump
from tests.catalogue.simulator import NodeSimulator
from tests.catalogue.test_streaming import facts

CHUNK = 100
SIZE = 1000


def _catalogue(where: Path, **overrides: Any) -> Catalogue:
    where.mkdir()
    settings = make_settings(
        f"sqlite:///{where / 'catalogue.db'}",
        where / "home",
        page_size=50,
        harvest_chunk=CHUNK,
        harvest_chunk_growth=1,
        **overrides,
    )
    return Catalogue(build_context(settings))


@pytest.fixture
def sim(serve: Any) -> NodeSimulator:
    node = NodeSimulator()
    node.populate(SIZE - 2)
    serve(node)
    return node


def _final(cat: Catalogue, final: Any) -> Any:
    return asyncio.run(guarded_final(final, Writer(cat.engine, cat.ctx.key), 20.0))


def _handed_over(cat: Catalogue, sim: NodeSimulator, tails: TailDir) -> Any:
    """Stage the node's step while the write lock stays held throughout: the lane returns
    without waiting for it (else this would time out), its whole step in a tail file."""
    cat.enrol(sim, sim.url)
    with WriteLockHeld(cat):
        staged = cat.stage_whole(sim.origin, tails.path)
    assert staged.error is None and staged.final is not None
    return staged.final


def test_deferred_step_whose_tail_was_handed_to_the_final_is_accepted_whole_and_identical_to_one_stored_by_waiting(  # noqa: E501
    tmp_path: Path, sim: NodeSimulator
) -> None:
    cat = _catalogue(tmp_path / "handed")
    tails = TailDir.beside(str(tmp_path / "handed" / "catalogue.db"))
    try:
        final = _handed_over(cat, sim, tails)
        tail = final.tail
        assert tail is not None and len(tail["chunks"]) == SIZE // CHUNK
        assert os.path.dirname(tail["path"]) == tails.path and os.path.exists(tail["path"])
        seen = facts(cat, sim.origin)  # nothing stored yet, nothing accepted
        assert (seen["tree_size"], seen["staged"], seen["stored"], seen["live"]) == (0, None, 0, 0)
        done = _final(cat, final)
        assert done.error is None and done.added == SIZE
        after = facts(cat, sim.origin)
        assert (after["tree_size"], after["staged"], after["live"]) == (SIZE, None, SIZE - 2)
        assert not os.path.exists(tail["path"])  # the tail file is gone with its final commit
        handed = dump(cat.engine)
    finally:
        tails.close()
        cat.engine.dispose()
    # the same step stored by a lane that waited for the lock (no tail directory)
    waited = _catalogue(tmp_path / "waited")
    try:
        waited.enrol(sim, sim.url)
        staged = waited.stage_whole(sim.origin)
        assert staged.final is not None and staged.final.tail is None
        assert facts(waited, sim.origin)["staged"] == SIZE
        assert _final(waited, staged.final).error is None
        assert dump(waited.engine) == handed
    finally:
        waited.engine.dispose()


def test_failed_final_with_a_handed_tail_leaves_the_node_at_its_accepted_state_and_resumes(
    tmp_path: Path, sim: NodeSimulator
) -> None:
    cat = _catalogue(tmp_path / "cat")
    tails = TailDir.beside(str(tmp_path / "cat" / "catalogue.db"))
    try:
        final = _handed_over(cat, sim, tails)
        assert final.tail is not None
        # the file ends after its first three chunks (say the disk filled): the final commit
        # stores those, then fails before indexing anything
        offset, _length, _mark = final.tail["chunks"][3]
        os.truncate(final.tail["path"], offset)
        done = _final(cat, final)
        assert done.error is not None and "unreadable" in done.error
        seen = facts(cat, sim.origin)
        assert (seen["tree_size"], seen["live"], seen["mirrored"]) == (0, 0, 0)
        assert seen["staged"] == 3 * CHUNK  # what was stored stays staged: a resume point
        assert not os.path.exists(final.tail["path"])
        # the next harvest resumes from the staged chunks and fetches only the rest
        sim.served.clear()
        out = cat.harvest()[sim.origin]
        assert out.ok and out.added == SIZE, out.error
        assert min(sim.served) == 3 * CHUNK
        resumed = dump(cat.engine)
    finally:
        tails.close()
        cat.engine.dispose()
    clean = _catalogue(tmp_path / "clean")
    try:
        clean.enrol(sim, sim.url)
        assert clean.harvest()[sim.origin].ok
        assert dump(clean.engine) == resumed
    finally:
        clean.engine.dispose()


def test_stale_tail_file_is_never_applied(tmp_path: Path, serve: Any) -> None:
    """A final commit applies only the file its own step wrote (name and first bytes carry
    the step's random token): not another step's file, nor one overwritten since."""
    sims = []
    for name in ("a", "b"):
        node = NodeSimulator(f"{name}.example/biobank-node")
        node.populate(SIZE - 2)
        serve(node)
        sims.append(node)
    cat = _catalogue(tmp_path / "cat")
    tails = TailDir.beside(str(tmp_path / "cat" / "catalogue.db"))
    try:
        a, b = (_handed_over(cat, node, tails) for node in sims)
        assert a.tail is not None and b.tail is not None
        before = dump(cat.engine)
        # a's final commit pointed at b's file: refused, and b's file is left alone
        wrong = _final(cat, dataclasses.replace(a, tail={**a.tail, "path": b.tail["path"]}))
        assert wrong.error is not None and "not this step's" in wrong.error
        assert dump(cat.engine) == before and os.path.exists(b.tail["path"])
        # b's own file, its token overwritten (another run's file at that name): refused
        with open(b.tail["path"], "r+b") as file:
            file.write(a.tail["token"].encode())
        stale = _final(cat, b)
        assert stale.error is not None and "not this step's" in stale.error
        assert dump(cat.engine) == before
        assert not os.path.exists(b.tail["path"])
        for node in sims:
            seen = facts(cat, node.origin)
            assert (seen["tree_size"], seen["staged"], seen["live"]) == (0, None, 0)
        # a's own file still is a's: accepted
        assert _final(cat, a).error is None
        assert facts(cat, sims[0].origin)["tree_size"] == SIZE
    finally:
        tails.close()
        cat.engine.dispose()


def test_tail_directories_of_ended_harvests_are_removed_and_a_running_harvests_kept(
    tmp_path: Path,
) -> None:
    database = str(tmp_path / "catalogue.db")
    running = TailDir.beside(database)
    parent = os.path.dirname(running.path)
    killed = os.path.join(parent, "run-killed")  # a harvest killed before removing its own
    os.mkdir(killed)
    with open(os.path.join(killed, "lock"), "wb"):
        pass
    Path(killed, "1-0123.tail").write_bytes(b"left behind")
    starting = os.path.join(parent, "new-starting")  # another harvest, making its own
    os.mkdir(starting)
    stuck = os.path.join(parent, "new-stuck")  # a harvest killed as it made its own
    os.mkdir(stuck)
    os.utime(stuck, (time.time() - 3600, time.time() - 3600))
    held = os.path.join(parent, "run-held")  # another harvest, running: its lock is held
    os.mkdir(held)
    with open(os.path.join(held, "lock"), "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fresh = TailDir.beside(database)  # a new harvest starts
        assert sorted(os.listdir(parent)) == sorted(
            os.path.basename(p) for p in (running.path, held, fresh.path, starting)
        )
    os.rmdir(starting)
    fresh.close()
    running.close()
    assert os.listdir(parent) == ["run-held"]  # its owner has ended: the next start removes it
    assert TailDir.sweep(parent) == [held] and os.listdir(parent) == []


def test_sqlite_lanes_leave_no_tail_directory_behind(tmp_path: Path, serve: Any) -> None:
    sims = [NodeSimulator(f"t{i}.example/biobank-node") for i in range(3)]
    for i, node in enumerate(sims):
        node.populate(300 + 50 * i)
        serve(node)
    cat = _catalogue(tmp_path / "cat", harvest_workers=2)
    try:
        for node in sims:
            cat.enrol(node, node.url)
        outcomes = Harvester(
            engine=cat.engine, settings=cat.ctx.settings, key=cat.ctx.key, inline=True
        ).run()
        assert [(o.ok, o.added) for o in outcomes] == [(True, 302 + 50 * i) for i in range(3)]
        assert os.listdir(tmp_path / "cat" / TailDir.PARENT) == []
    finally:
        cat.engine.dispose()
