"""Streaming harvest: a step is stored chunk by chunk (bounded memory), stays invisible until
its root verifies, and an interrupted step resumes from the last stored chunk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

import catalogue.harvest.stream
from catalogue.context import build_context
from catalogue.mirror import node_entries
from catalogue.models import (
    alerts,
    combos,
    harvest_staging,
    leaves,
    nodes,
    sample_groups,
)
from protocol.canonical import canonical
from protocol.entries import make_entry
from protocol.note import Checkpoint, sign_checkpoint
from tests.catalogue.conftest import Catalogue, database, make_settings
from tests.catalogue.dbdump import dump
from tests.catalogue.simulator import TIME, NodeSimulator, other_signer

CHUNK = 100


@pytest.fixture
def chunked(db_url: str, tmp_path: Path) -> Iterator[Catalogue]:
    settings = make_settings(
        db_url, tmp_path / "home", page_size=50, harvest_chunk=CHUNK, harvest_chunk_growth=1
    )  # chunks of exactly CHUNK entries (growth: test_chunk_growth.py)
    ctx = build_context(settings)
    try:
        yield Catalogue(ctx)
    finally:
        ctx.engine.dispose()


def facts(cat: Catalogue, origin: str) -> dict[str, Any]:
    """What the database holds for one node: accepted size, staged size, stored, indexed."""
    with cat.engine.connect() as conn:
        row = conn.execute(select(nodes).where(nodes.c.origin == origin)).one()
        staged = conn.execute(
            select(harvest_staging.c.size).where(harvest_staging.c.node_id == row.id)
        ).scalar()
        stored = conn.execute(
            select(func.count()).select_from(leaves).where(leaves.c.node_id == row.id)
        ).scalar_one()
        live = conn.execute(
            select(func.count()).select_from(sample_groups).where(sample_groups.c.node_id == row.id)
        ).scalar_one()
        mirrored = len(orjson.loads(node_entries(conn, origin, 0, 1000))["entries"])
        halts = conn.execute(
            select(func.count()).select_from(alerts).where(alerts.c.node_id == row.id)
        ).scalar_one()
    return {
        "tree_size": int(row.tree_size),
        "staged": staged,
        "stored": int(stored),
        "live": int(live),
        "mirrored": mirrored,
        "state": row.state,
        "alerts": int(halts),
        "error": row.last_error,
    }


def combos_of(cat: Catalogue) -> list[tuple[bytes, int]]:
    """Every combo the database holds (the hash of its key, samples at most)."""
    with cat.engine.connect() as conn:
        return sorted((bytes(r.khash), int(r.n_max)) for r in conn.execute(select(combos)))


def fail_from(sim: NodeSimulator, start: int) -> None:
    """The node breaks down (HTTP 500) when asked for entries from `start` on."""

    def hook(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if sim.served[-1] >= start:
            raise RuntimeError("node down")
        return out

    sim.entries_hook = hook


def test_step_is_stored_in_chunks_and_invisible_until_verified(
    chunked: Catalogue, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = NodeSimulator()
    sim.populate(3 * CHUNK + 48)  # 350 entries: 3 stored chunks, then the final commit
    serve(sim)
    chunked.enrol(sim, sim.url)
    seen: list[dict[str, Any]] = []
    commit_chunk = catalogue.harvest.stream.commit_chunk

    def spy(*args: Any, **kwargs: Any) -> Any:
        pos = commit_chunk(*args, **kwargs)
        seen.append(facts(chunked, sim.origin))  # what a reader sees between chunks
        return pos

    monkeypatch.setattr(catalogue.harvest.stream, "commit_chunk", spy)
    out = chunked.harvest()[sim.origin]
    assert out.ok and out.added == 350
    assert [s["staged"] for s in seen] == [100, 200, 300]
    assert [s["stored"] for s in seen] == [100, 200, 300]
    # nothing of an unfinished step is accepted, indexed or served by the mirror
    assert all(s["tree_size"] == 0 and s["live"] == 0 and s["mirrored"] == 0 for s in seen)
    done = facts(chunked, sim.origin)
    assert done["tree_size"] == 350 and done["staged"] is None and done["live"] == 348
    assert done["mirrored"] == 350


def test_interrupted_step_resumes_from_last_stored_chunk(
    chunked: Catalogue, serve: Any, db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    sim = NodeSimulator()
    sim.populate(3 * CHUNK + 48)
    sim.withdraw("sample-group", sim.contents[7]["id"])  # type: ignore[index]
    serve(sim)
    chunked.enrol(sim, sim.url)
    fail_from(sim, 250)
    out = chunked.harvest()[sim.origin]
    assert not out.ok and "HTTP 500" in (out.error or "")
    assert facts(chunked, sim.origin) | {"error": None} == {
        "tree_size": 0,
        "staged": 200,
        "stored": 200,
        "live": 0,
        "mirrored": 0,
        "state": "active",
        "alerts": 0,
        "error": None,
    }
    sim.entries_hook = None
    sim.served.clear()
    out = chunked.harvest()[sim.origin]
    assert out.ok and out.size == 351
    assert min(sim.served) == 200  # resumed, not started again
    resumed = dump(chunked.engine)

    kind = "postgres" if "postgresql" in db_url else "sqlite"
    (tmp_path / "clean").mkdir()
    with database(kind, tmp_path / "clean", request) as clean_url:
        ctx = build_context(
            make_settings(clean_url, tmp_path / "home", page_size=50, harvest_chunk=CHUNK)
        )
        try:
            clean = Catalogue(ctx)
            clean.enrol(sim, sim.url)
            assert clean.harvest()[sim.origin].ok
            assert dump(clean.engine) == resumed
        finally:
            ctx.engine.dispose()


def test_staged_leaves_are_never_trusted_on_resume(chunked: Catalogue, serve: Any) -> None:
    sim = NodeSimulator()
    sim.populate(48)
    serve(sim)
    chunked.enrol(sim, sim.url)
    assert chunked.harvest()[sim.origin].size == 50
    accepted = combos_of(chunked)
    sim.populate(150, start=48, sample_type="Serum")
    sim.populate(150, start=198, sex="male")
    fail_from(sim, 300)
    assert not chunked.harvest()[sim.origin].ok
    assert facts(chunked, sim.origin)["staged"] == 250
    # the stored chunks touch no combo: only the final commit indexes a step
    assert combos_of(chunked) == accepted
    # the node now serves another history inside the staged range (and signs it)
    sim.entries_hook = None
    sim.rewrite_leaf(120, time="2027-01-01T00:00:00Z")
    out = chunked.harvest()[sim.origin]
    # the root check over the staged leaves fails; a resumed run does not halt: it drops
    # the staged leaves, and the next run verifies from the accepted checkpoint
    assert not out.ok and not out.halted and "discarded" in (out.error or "")
    assert facts(chunked, sim.origin)["staged"] is None
    assert facts(chunked, sim.origin)["stored"] == 50
    assert combos_of(chunked) == accepted  # the discarded step's combos went with it
    out = chunked.harvest()[sim.origin]
    assert out.ok and out.size == 350
    with chunked.engine.connect() as conn:
        leaf = conn.execute(select(leaves.c.leaf).where(leaves.c.idx == 120)).scalar_one()
    assert bytes(leaf) == sim.leaves[120]


def test_equivocation_found_on_resume_halts_on_the_next_run(chunked: Catalogue, serve: Any) -> None:
    sim = NodeSimulator()
    sim.populate(48)
    serve(sim)
    chunked.enrol(sim, sim.url)
    chunked.harvest()
    accepted = sim.checkpoint()
    sim.populate(300, start=48)
    fail_from(sim, 300)
    chunked.harvest()
    sim.entries_hook = None
    sim.rewrite_leaf(10, time="2027-01-01T00:00:00Z")  # a leaf the catalogue accepted
    first = chunked.harvest()[sim.origin]
    assert not first.halted and "discarded" in (first.error or "")
    second = chunked.harvest()[sim.origin]
    assert second.halted and "EquivocationError" in (second.error or "")
    state = facts(chunked, sim.origin)
    assert state["state"] == "halted" and state["alerts"] == 1 and state["tree_size"] == 50
    assert state["staged"] is None and state["stored"] == 50
    with chunked.engine.connect() as conn:
        alert = conn.execute(select(alerts)).one()
    assert alert.old_checkpoint == accepted and alert.new_checkpoint == sim.checkpoint()


def test_rotation_among_staged_leaves_still_needs_the_co_signature(
    chunked: Catalogue, serve: Any
) -> None:
    sim = NodeSimulator()
    sim.populate(48)
    serve(sim)
    chunked.enrol(sim, sim.url)
    chunked.harvest()
    new = other_signer(sim.origin)
    sim.append_leaf(
        canonical(make_entry(log=sim.origin, index=50, op="rotate-key", time=TIME, key=new.vkey)),
        None,
    )
    sim.populate(300, start=48)
    both = sign_checkpoint(Checkpoint(sim.origin, len(sim.leaves), sim.root()), [sim.signer, new])
    sim.note = both
    fail_from(sim, 300)
    chunked.harvest()
    assert facts(chunked, sim.origin)["staged"] == 250  # with the rotate-key leaf (50)
    # the resumed run sees a checkpoint signed by the new key only: as for a run that
    # verifies the rotation itself, the old key's co-signature is required
    sim.entries_hook = None
    sim.note = sim.sign(signer=new)
    out = chunked.harvest()[sim.origin]
    assert not out.ok and "MissingSignatureError" in (out.error or "")
    assert facts(chunked, sim.origin)["tree_size"] == 50
    sim.note = both
    out = chunked.harvest()[sim.origin]
    assert out.ok and out.size == 351
