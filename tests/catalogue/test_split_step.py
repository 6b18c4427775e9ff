"""A step split over two lanes: an idle lane (the thief) fetches, verifies and keys the upper
part [m, end) of another lane's running step, which (the owner) verifies [.., m), joins the
thief's leaf hashes to its compact range before the root check, and stages the thief's chunks
after its own. What is accepted is what an unsplit step accepts; anything the thief does not
handle it gives back, and the owner verifies that part itself, with today's refusals; a split
file that is not the step's own is never applied; none is left behind."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from catalogue.context import build_context
from catalogue.harvest import Harvester
from catalogue.harvest.fetcher import NodeFetcher
from catalogue.harvest.harvester import JobResult, guarded_final, guarded_job
from catalogue.harvest.stream import (
    NodeJob,
    TailDir,
    Writer,
    harvest_upper,
    request_split,
    split_answer,
)
from protocol.canonical import canonical
from protocol.entries import make_entry
from protocol.note import Checkpoint, Signer, generate_key, sign_checkpoint
from tests.catalogue.conftest import DB_PARAMS, Catalogue, WriteLockHeld, database, make_settings
from tests.catalogue.dbdump import dump
from tests.catalogue.simulator import TIME, NodeSimulator, group_id
from tests.catalogue.test_streaming import facts

CHUNK = 100
SIZE = 1000
PAGE = 50


@pytest.fixture(params=DB_PARAMS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Place:
    """A fresh catalogue of one kind, with its split directory (SQLite: the harvest's
    `TailDir`, as the lanes use; PostgreSQL: a directory of the test's)."""

    def __init__(self, kind: str, where: Path, request: pytest.FixtureRequest) -> None:
        where.mkdir()
        self._db = database(kind, where, request)
        url = self._db.__enter__()
        settings = make_settings(
            url, where / "home", page_size=PAGE, harvest_chunk=CHUNK, harvest_chunk_growth=1
        )
        self.cat = Catalogue(build_context(settings))
        self.tails = TailDir.beside(str(where / "catalogue.db")) if kind == "sqlite" else None
        self.split_dir = self.tails.path if self.tails else str(where / "split")
        self.said = ""  # what the thief of `stage_split` did
        os.makedirs(self.split_dir, exist_ok=True)

    def close(self) -> None:
        self.cat.engine.dispose()
        if self.tails is not None:
            self.tails.close()
        self._db.__exit__(None, None, None)

    def split_files(self) -> list[str]:
        """What the split left in its directory (the tail directory's lock apart)."""
        return sorted(n for n in os.listdir(self.split_dir) if n != "lock")

    def job(self, origin: str) -> NodeJob:
        return self.cat.first_job(
            origin, tail_dir=self.tails.path if self.tails else None, split_dir=self.split_dir
        )

    def stage_split(self, origin: str, thief: Any = None) -> tuple[JobResult, dict[str, Any]]:
        """The owner stages the node's whole step, asked for a split before its first page;
        `thief(job, client, offer)` plays the other lane (default: `guarded_upper`)."""
        job = self.job(origin)

        async def go() -> tuple[JobResult, dict[str, Any]]:
            async with httpx.AsyncClient() as client:
                request_split(self.split_dir, job.node_id)
                writer = Writer(self.cat.engine, self.cat.ctx.key)
                owner = asyncio.ensure_future(
                    guarded_job(job, client, writer, 20.0, defer_final=True)
                )
                offer = None
                while offer is None and not owner.done():
                    offer = split_answer(self.split_dir, job.node_id)
                    await asyncio.sleep(0.002)
                assert isinstance(offer, dict), offer
                if thief is None:
                    fetcher = NodeFetcher(client, job.url, max_bytes=job.max_bytes, timeout=5.0)
                    self.said = await harvest_upper(job, fetcher, offer)
                else:
                    await thief(job, client, offer)
                return await owner, offer

        return asyncio.run(go())

    def final(self, staged: JobResult) -> JobResult:
        assert staged.error is None and staged.final is not None, staged.error
        writer = Writer(self.cat.engine, self.cat.ctx.key)
        return asyncio.run(guarded_final(staged.final, writer, 20.0))


@pytest.fixture
def places(tmp_path: Path, request: pytest.FixtureRequest, kind: str) -> Iterator[Any]:
    made: list[Place] = []

    def make(name: str) -> Place:
        place = Place(kind, tmp_path / name, request)
        made.append(place)
        return place

    try:
        yield make
    finally:
        for place in made:
            place.close()


@pytest.fixture
def sim(serve: Any) -> NodeSimulator:
    node = NodeSimulator()
    node.populate(SIZE - 2)
    serve(node)
    return node


def _unsplit(place: Place, sim: NodeSimulator) -> tuple[JobResult, dict[str, Any]]:
    """The same step harvested by one lane (a plain harvest, no split)."""
    place.cat.enrol(sim, sim.url)
    out = place.cat.harvest()[sim.origin]
    return JobResult(error=out.error, added=out.added), dump(place.cat.engine)


def test_split_step_is_accepted_identical_to_an_unsplit_one_and_leaves_no_split_file(
    places: Any, sim: NodeSimulator
) -> None:
    split = places("split")
    split.cat.enrol(sim, sim.url)
    staged, offer = split.stage_split(sim.origin)
    m = int(offer["m"])
    assert PAGE < m < SIZE - 2 * CHUNK and offer["end"] == SIZE
    assert split.said == f"verified {SIZE - m} leaves from {m}"
    # the upper part was fetched once, by the thief; the owner stopped at m
    above = [s for s in sim.served if s >= m]
    assert sorted(above) == list(range(m, SIZE, PAGE))
    assert max(s for s in sim.served if s < m) < m
    seen = facts(split.cat, sim.origin)
    assert (seen["tree_size"], seen["live"]) == (0, 0)  # nothing accepted before the final
    done = split.final(staged)
    assert done.error is None and done.added == SIZE
    assert split.split_files() == []  # no split file (nor tail) left behind
    after = facts(split.cat, sim.origin)
    assert (after["tree_size"], after["staged"], after["live"]) == (SIZE, None, SIZE - 2)
    plain = places("plain")
    result, expected = _unsplit(plain, sim)
    assert result.error is None and result.added == SIZE
    assert dump(split.cat.engine) == expected


def _tamper_group(sim: NodeSimulator, n: int) -> None:
    """The node serves group n's content changed (its digest no longer matches)."""

    def hook(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for e in entries:
            content = e["content"]
            if content and content.get("id") == group_id(n):
                e["content"] = {**content, "name": "tampered"}
        return entries

    sim.entries_hook = hook


def test_tampered_content_above_the_split_is_refused_as_without_a_split_and_nothing_accepted(
    places: Any, sim: NodeSimulator
) -> None:
    _tamper_group(sim, 900)  # leaf 902: far above any split point
    split = places("split")
    split.cat.enrol(sim, sim.url)
    staged, offer = split.stage_split(sim.origin)
    assert int(offer["m"]) < 902
    assert split.said.startswith("gave back (DigestMismatch") and "leaf 902" in split.said
    assert staged.error is not None and staged.final is None
    assert "leaf 902" in staged.error and "digest" in staged.error
    seen = facts(split.cat, sim.origin)
    assert (seen["tree_size"], seen["live"], seen["mirrored"]) == (0, 0, 0)
    plain = places("plain")
    result, _ = _unsplit(plain, sim)
    assert result.error == staged.error  # today's refusal, word for word


def test_wrong_leaf_above_the_split_fails_the_owners_root_check_as_without_a_split(
    places: Any, sim: NodeSimulator
) -> None:
    """A leaf the thief accepts on its own (well formed, its content's digest) but not the
    signed one: the owner's root check over the thief's leaf hashes refuses the step."""
    sim.note = sim.sign()
    sim.rewrite_leaf(950, time="2020-01-01T00:00:00Z")
    split = places("split")
    split.cat.enrol(sim, sim.url)
    staged, offer = split.stage_split(sim.origin)
    assert int(offer["m"]) < 950 and offer["end"] == SIZE
    assert sorted(s for s in sim.served if s >= int(offer["m"])) == list(
        range(int(offer["m"]), SIZE, PAGE)
    )  # the thief's leaves were used, not fetched again
    assert staged.error is not None and "rebuild root" in staged.error
    seen = facts(split.cat, sim.origin)
    assert (seen["tree_size"], seen["live"], seen["mirrored"]) == (0, 0, 0)
    assert split.split_files() == []
    plain = places("plain")
    result, _ = _unsplit(plain, sim)
    assert result.error == staged.error


def test_thief_gives_back_at_a_rotate_key_leaf_and_the_owner_verifies_the_part_itself(
    places: Any, serve: Any
) -> None:
    sim = NodeSimulator()
    sim.populate(900)
    new_key, new_vkey = generate_key(sim.origin)
    at = len(sim.leaves)
    rotation = make_entry(log=sim.origin, index=at, op="rotate-key", time=TIME, key=new_vkey)
    sim.append_leaf(canonical(rotation), None)
    sim.populate(SIZE - at - 1, start=900)
    new_signer = Signer.from_key(new_key)
    sim.note = sign_checkpoint(
        Checkpoint(sim.origin, len(sim.leaves), sim.root()), [sim.signer, new_signer]
    )
    serve(sim)
    said: list[str] = []

    async def thief(job: NodeJob, client: httpx.AsyncClient, offer: dict[str, Any]) -> None:
        fetcher = NodeFetcher(client, job.url, max_bytes=job.max_bytes, timeout=5.0)
        said.append(await harvest_upper(job, fetcher, offer))

    split = places("split")
    split.cat.enrol(sim, sim.url)
    staged, offer = split.stage_split(sim.origin, thief)
    m = int(offer["m"])
    assert m < at
    assert said and said[0].startswith("gave back") and f"rotate-key leaf at {at}" in said[0]
    # the owner took the thief's chunks below the rotation, then fetched the rest again and
    # verified it, the rotation included
    joined = m + CHUNK * ((at - m) // CHUNK)
    assert sim.served.count(m) == 1 and sim.served.count(joined) == 2
    done = split.final(staged)
    assert done.error is None and done.added == SIZE
    assert split.split_files() == []
    plain = places("plain")
    result, expected = _unsplit(plain, sim)
    assert result.error is None and result.added == SIZE
    assert dump(split.cat.engine) == expected


def test_harvest_killed_before_the_final_commit_of_a_split_step_resumes_and_ends_identical(
    places: Any, sim: NodeSimulator
) -> None:
    split = places("split")
    split.cat.enrol(sim, sim.url)
    staged, _offer = split.stage_split(sim.origin)
    assert staged.error is None and staged.final is not None
    # killed here: the final commit never ran; what was staged is the resume point
    assert facts(split.cat, sim.origin)["staged"] == SIZE
    sim.served.clear()
    out = split.cat.harvest()[sim.origin]
    assert out.ok and out.added == SIZE, out.error
    assert sim.served == []  # staged whole: straight to the final commit
    plain = places("plain")
    result, expected = _unsplit(plain, sim)
    assert result.error is None
    assert dump(split.cat.engine) == expected


@pytest.mark.parametrize("kind", ["sqlite"], indirect=True)
def test_split_step_whose_final_fails_within_the_thiefs_chunks_resumes_from_their_marks(
    places: Any, sim: NodeSimulator
) -> None:
    """SQLite, the write lock held all along: the owner's and the thief's chunks are handed
    to the final commit; it fails after storing some of the thief's chunks (the file ends
    there), and the next harvest resumes from the staged mark of a thief's chunk."""
    split = places("split")
    split.cat.enrol(sim, sim.url)
    with WriteLockHeld(split.cat):
        staged, offer = split.stage_split(sim.origin)
    assert staged.final is not None and staged.final.tail is not None
    chunks = staged.final.tail["chunks"]
    marks = [int(mark["size"]) for _o, _n, mark in chunks]
    m = int(offer["m"])
    assert m in marks and marks[-1] == SIZE
    cut = marks.index(m) + 2  # stores up to the thief's second chunk, then fails
    os.truncate(staged.final.tail["path"], chunks[cut][0])
    done = split.final(staged)
    assert done.error is not None and "unreadable" in done.error
    seen = facts(split.cat, sim.origin)
    assert (seen["tree_size"], seen["staged"]) == (0, marks[cut - 1])
    assert marks[cut - 1] > m
    sim.served.clear()
    out = split.cat.harvest()[sim.origin]
    assert out.ok and out.added == SIZE, out.error
    assert min(sim.served) == marks[cut - 1]  # the rest fetched again, nothing before
    plain = places("plain")
    result, expected = _unsplit(plain, sim)
    assert result.error is None
    assert dump(split.cat.engine) == expected


@pytest.mark.parametrize("forgery", ["token-bytes", "meta-token", "other-split"])
@pytest.mark.parametrize("kind", ["sqlite"], indirect=True)
def test_stale_or_foreign_split_file_is_never_applied(
    places: Any, sim: NodeSimulator, forgery: str
) -> None:
    """The owner reads only the files named with its offer's token, whose first bytes and
    description carry that token and its split: anything else is ignored and the owner
    verifies the upper part itself."""

    async def forger(job: NodeJob, client: httpx.AsyncClient, offer: dict[str, Any]) -> None:
        # a real thief's output for another split (another token, or another m), moved to
        # the names of this offer's
        other = {**offer, "token": "f" * 32}
        if forgery == "other-split":
            other["m"] = int(offer["m"]) + PAGE
        fetcher = NodeFetcher(client, job.url, max_bytes=job.max_bytes, timeout=5.0)
        await harvest_upper(job, fetcher, other)
        theirs = f"{job.node_id}-{other['token']}"
        ours = f"{job.node_id}-{offer['token']}"
        names = sorted(n for n in os.listdir(split.split_dir) if n.startswith(theirs + "."))
        assert names and theirs + ".split" in names
        # the file first, then the parts that say where their chunks are in it
        for name in sorted(names, key=lambda n: not n.endswith(".split")):
            data = Path(split.split_dir, name).read_bytes()
            if name.endswith(".split") and forgery != "token-bytes":  # its bytes like ours
                data = str(offer["token"]).encode() + data[32:]
            if not name.endswith(".split") and forgery != "meta-token":  # its parts too
                data = data.replace(other["token"].encode(), str(offer["token"]).encode())
            os.unlink(os.path.join(split.split_dir, name))
            Path(split.split_dir, ours + name[len(theirs) :]).write_bytes(data)

    split = places("split")
    split.cat.enrol(sim, sim.url)
    staged, offer = split.stage_split(sim.origin, forger)
    m = int(offer["m"])
    # the owner fetched and verified the upper part itself (the forger fetched from m too,
    # but for its other split)
    assert sim.served.count(m) == (1 if forgery == "other-split" else 2)
    done = split.final(staged)
    assert done.error is None and done.added == SIZE
    assert split.split_files() == []
    plain = places("plain")
    result, expected = _unsplit(plain, sim)
    assert result.error is None
    assert dump(split.cat.engine) == expected


def test_idle_lane_splits_the_last_running_step_and_the_harvest_is_identical(
    kind: str,
    tmp_path: Path,
    serve: Any,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two lanes, a small node and a slow big one: the lane done with the small node takes
    the upper part of the big one's step; the harvest is the one-lane harvest's, and no split
    directory or file is left."""
    # the first lane (the worker process) takes the first node, the big one; this process's
    # lane the small one, and then, idle, asks the big one's step for its upper part
    big = NodeSimulator("a.example/biobank-node")
    big.populate(SIZE - 2, biobank="bbmri-eric:ID:DE_A", collection="ca")
    small = NodeSimulator("b.example/biobank-node")
    small.populate(8, biobank="bbmri-eric:ID:DE_B", collection="cb")
    big.page_delay = 0.3  # ~2 s of pages: the other lane is idle well before its end
    made: list[str] = []
    real = tempfile.mkdtemp

    def mkdtemp(*args: Any, **kwargs: Any) -> str:  # which directories the harvest made
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    for node in (big, small):
        serve(node)
    dumps = []
    for lanes in (2, 0):
        where = tmp_path / f"lanes-{lanes}"
        where.mkdir()
        with database(kind, where, request) as url:
            settings = make_settings(
                url,
                where / "home",
                page_size=PAGE,
                harvest_chunk=CHUNK,
                harvest_workers=lanes,
            )
            ctx = build_context(settings)
            try:
                cat = Catalogue(ctx)
                for node in (big, small):
                    cat.enrol(node, node.url)
                big.served.clear()
                with caplog.at_level(logging.INFO, "catalogue.harvest.harvester"):
                    outcomes = Harvester(
                        engine=ctx.engine, settings=settings, key=ctx.key, inline=True
                    ).run()
                assert [(o.ok, o.added, o.error) for o in outcomes] == [
                    (True, SIZE, None),
                    (True, 10, None),
                ]
                dumps.append(dump(ctx.engine))
            finally:
                ctx.engine.dispose()
            if lanes:
                splits = [r.getMessage() for r in caplog.records if "split:" in r.getMessage()]
                assert len(splits) == 1 and "split: at " in splits[0], splits
                assert ": verified " in splits[0], splits
                assert len(big.served) == len(set(big.served))  # every page fetched once
                # the harvest's directory: beside the SQLite database, else in the home
                # (not the system's temporary directory, where a killed harvest's stayed)
                tails = (where if kind == "sqlite" else where / "home") / TailDir.PARENT
                assert made and all(Path(d).parent == tails for d in made), made
                assert not [n for n in os.listdir(tails) if n.startswith("run-")]
    assert dumps[0] == dumps[1]
    assert made and not any(os.path.exists(d) for d in made)  # split directories removed
