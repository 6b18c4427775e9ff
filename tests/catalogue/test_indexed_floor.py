"""The benchmark's floor that does the harvest's work (`bench.floor.IndexedFloor`, issue 19
item 4) builds the same search index as the harvest from the same logs.

A ratio is only as honest as its reference: the floor a harvest that indexes is compared
with has to index too, and the same way. Two simulated nodes are harvested into a real
catalogue (SQLite) from loopback servers, their pages are saved as the benchmark saves them,
and the floor's index is compared with the catalogue's, table by table: combos (key, country,
counts), groups, `leaf_records`, live records, rejections and erased contents."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.floor import floor, save_pages
from catalogue.context import build_context
from tests.catalogue.conftest import Catalogue, make_settings
from tests.catalogue.dbdump import dump
from tests.catalogue.simulator import NodeSimulator, varied_group

DE_BB, DE_COLL = "bbmri-eric:ID:DE_SIM", "bbmri-eric:ID:DE_SIM:collection:main"
IE_BB, IE_COLL = "bbmri-eric:ID:IE_SIM", "bbmri-eric:ID:IE_SIM:collection:main"


def _varied(n: int, biobank: str, collection: str) -> dict[str, Any]:
    """Varied groups (`varied_group`), every one valid: the floor refuses what fails its
    schema, where the harvest rejects it and goes on (the benchmark's logs have none)."""
    return varied_group(n, biobank=biobank, collection=collection, schema_invalid=False)


def _de() -> NodeSimulator:
    """Replaced versions, withdrawals (a group republished after it, a collection gone) and
    a record whose latest publish comes without content."""
    sim = NodeSimulator("de.sim.example/biobank-node", country="DE")
    sim.populate(0, biobank=DE_BB, collection=DE_COLL)
    for n in range(80):
        sim.publish("sample-group", _varied(n, DE_BB, DE_COLL))
    for n in range(0, 80, 4):  # new versions of earlier groups
        sim.publish(
            "sample-group",
            _varied(n + 1, DE_BB, DE_COLL) | {"id": _varied(n, DE_BB, DE_COLL)["id"]},
        )
    served = list(sim.contents)
    for n in (3, 5, 9):
        sim.withdraw("sample-group", _varied(n, DE_BB, DE_COLL)["id"])
    nine = _varied(9, DE_BB, DE_COLL)["id"]
    for i, leaf in enumerate(sim.leaves):  # a node still serving a withdrawn group's content:
        if nine.encode() in leaf and i < len(served) and served[i]:  # the catalogue erases it
            sim.contents[i] = served[i]
    sim.publish(
        "sample-group", _varied(7, DE_BB, DE_COLL) | {"id": _varied(5, DE_BB, DE_COLL)["id"]}
    )
    other = f"{DE_COLL}-2"
    sim.publish("collection", {"id": other, "biobank": DE_BB, "name": "Second"})
    sim.withdraw("collection", other)
    lost = sim.publish("sample-group", _varied(90, DE_BB, DE_COLL))
    sim.contents[lost] = None  # its content no longer served: rejected as missing
    return sim


def _ie() -> NodeSimulator:
    """Groups of a biobank with no record at the node: their combos take the node's country."""
    sim = NodeSimulator("ie.sim.example/biobank-node", country="IE")
    sim.populate(0, biobank=IE_BB, collection=IE_COLL)
    for n in range(40):
        bb = IE_BB if n % 2 else "bbmri-eric:ID:IE_UNLISTED"
        sim.publish("sample-group", _varied(200 + n, bb, IE_COLL))
    return sim


def _floor_index(db: Path, origins: dict[int, str]) -> dict[str, Any]:
    """The floor's tables as `dbdump.dump` gives the catalogue's."""
    with sqlite3.connect(db) as conn:
        combo_of = {
            cid: (origins[node], bytes(khash))
            for cid, node, khash in conn.execute("SELECT id, node_id, khash FROM combos")
        }
        return {
            "combos": sorted(
                (origins[r[0]], bytes(r[1]), r[2], tuple(r[3:7]), tuple(r[7:10]))
                for r in conn.execute(
                    "SELECT node_id, khash, country, n_min, n_max, d_min, d_max, diagnoses,"
                    " use_conditions, dataset_types FROM combos"
                )
            ),
            "groups": sorted(
                (origins[r[0]], r[1], r[2], combo_of[r[3]], tuple(r[4:]))
                for r in conn.execute("SELECT * FROM sample_groups")
            ),
            "records": sorted(
                (origins[r[0]], r[1], r[2], r[3], r[4])
                for r in conn.execute("SELECT node_id, kind, record_id, idx, content FROM records")
            ),
            "rejections": sorted(
                (origins[r[0]], r[1], r[2], r[3])
                for r in conn.execute("SELECT node_id, idx, record_id, problems FROM rejections")
            ),
            "leaf_records": sorted(
                (origins[r[0]], *r[1:]) for r in conn.execute("SELECT * FROM leaf_records")
            ),
            "erased": sorted(
                (origins[key >> 40], key & (2**40 - 1))
                for (key,) in conn.execute("SELECT key FROM leaves WHERE content IS NULL")
            ),
        }


def test_the_floor_doing_the_same_work_builds_the_harvests_index(
    tmp_path: Path, serve: Any
) -> None:
    sims = [_de(), _ie()]
    for sim in sims:
        serve(sim)
    ctx = build_context(make_settings(f"sqlite:///{tmp_path / 'catalogue.db'}", tmp_path / "home"))
    try:
        cat = Catalogue(ctx)
        for sim in sims:
            cat.enrol(sim, sim.url)
        outcomes = cat.harvest()
        assert all(o.error is None for o in outcomes.values()), outcomes
        harvested = dump(ctx.engine)
        with sqlite3.connect(tmp_path / "catalogue.db") as conn:
            origin_of = dict(conn.execute("SELECT id, origin FROM nodes"))
            harvested["leaf_records"] = sorted(
                (origin_of[r[0]], *r[1:]) for r in conn.execute("SELECT * FROM leaf_records")
            )
    finally:
        ctx.engine.dispose()
    pages = tmp_path / "pages.jsonl"
    assert save_pages([sim.url for sim in sims], pages) == sum(len(s.leaves) for s in sims)
    out = floor(str(pages), str(tmp_path / "floor.db"), index=True)
    assert out["records"] == sum(len(s.leaves) for s in sims)
    built = _floor_index(tmp_path / "floor.db", {i + 1: s.origin for i, s in enumerate(sims)})

    # the catalogue may keep a combo whose groups all went (counts zero): it counts nothing
    live = [c for c in harvested["combos"] if c[3][1] > 0]
    assert built["combos"] == live and len(live) > 30
    assert {c[2] for c in built["combos"]} == {"DE", "IE"}  # the record's, else the node's
    assert built["groups"] == harvested["groups"]
    assert built["records"] == harvested["records"]
    assert built["leaf_records"] == harvested["leaf_records"]
    assert built["rejections"] == harvested["rejections"]
    reasons = " ".join(r[3] for r in built["rejections"])
    assert "below the node's k" in reasons and "fewer than its donors" in reasons
    assert "content" in reasons  # the group whose content went missing
    erased = sorted((o, i) for o, i, _leaf, content in harvested["leaves"] if content is None)
    assert built["erased"] == erased and len(erased) >= 4  # withdrawn contents, and the lost one
    with sqlite3.connect(pages.with_name("floor.db")) as conn:
        assert conn.execute("SELECT count(*) FROM leaves WHERE content IS NULL").fetchone()[0] > (
            sum(1 for c in sims[0].contents if c is None)  # more than the node left out
        )
    # the contents kept are the same records (the catalogue's text, the floor's bytes)
    with sqlite3.connect(tmp_path / "floor.db") as conn:
        kept = {
            key: orjson.loads(c)
            for key, c in conn.execute("SELECT key, content FROM leaves")
            if c is not None
        }
    assert len(kept) == sum(1 for *_, c in harvested["leaves"] if c is not None)


def test_the_indexed_floor_refuses_what_the_plain_floor_refuses(tmp_path: Path, serve: Any) -> None:
    """Indexing adds work, never a way around a check: a saved page whose leaves do not
    rebuild the signed root is refused by both."""
    sim = _ie()
    serve(sim)
    pages = tmp_path / "pages.jsonl"
    save_pages([sim.url], pages)
    lines = pages.read_bytes().splitlines()
    page = orjson.loads(lines[1])
    page["entries"].pop()
    lines[1] = orjson.dumps(page)
    pages.write_bytes(b"\n".join(lines) + b"\n")
    for index in (False, True):
        with pytest.raises(ValueError, match="signed root"):
            floor(str(pages), str(tmp_path / f"floor-{index}.db"), index=index)
