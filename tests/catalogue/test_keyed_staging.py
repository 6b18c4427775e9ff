"""Sample groups keyed where they are verified (issue 19 item 4: a shorter final commit).

A chunk's groups are keyed as the verifier hands them over (`Chunk.add`, `key_group`) and
staged with the chunk (`harvest_keyed`); the final commit reads those instead of reading back
and parsing every group's content under the write lock. What it indexes must not depend on
where a group was keyed: a step staged by the previous version (no keyed rows) is indexed
from its stored leaves exactly as before, and a group version that a later leaf of the same
step replaces is no longer written (then deleted and recounted), with the same result."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, inspect, select, text, update

import catalogue.harvest.index
from catalogue.context import build_context
from catalogue.db import make_engine
from catalogue.harvest.harvester import guarded_final
from catalogue.harvest.index import (
    GROUP,
    combo_hash,
    combo_key,
    count_interval,
    group_problems,
    key_group,
    pack_keyed,
    prepare_step,
    unpack_keyed,
)
from catalogue.harvest.stream import Writer
from catalogue.models import combos, harvest_keyed, leaves, nodes, rejections, sample_groups
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from tests.catalogue.conftest import Catalogue, database, make_settings
from tests.catalogue.dbdump import dump
from tests.catalogue.simulator import NodeSimulator, group, varied_group
from tests.node.node_support import BIOBANK, COLLECTION, make_home
from tests.support import external_data

CHUNK = 40
BB, COLL = "bbmri-eric:ID:DE_SIM", "bbmri-eric:ID:DE_SIM:collection:main"


def _varied(n: int) -> dict[str, Any]:
    return varied_group(n, biobank=BB, collection=COLL)


def _node() -> NodeSimulator:
    """A step with varied groups, versions replaced in the same chunk and in later chunks,
    withdrawals (one republished after it) and groups sharing their combo."""
    sim = NodeSimulator()
    sim.populate(0)  # the biobank and the collection
    for n in range(60):
        sim.publish("sample-group", _varied(n))
    for n in range(0, 60, 4):  # new versions, chunks later
        sim.publish("sample-group", _varied(n + 1) | {"id": _varied(n)["id"]})
    for n in (3, 5, 9):
        sim.withdraw("sample-group", _varied(n)["id"])
    sim.publish("sample-group", _varied(7) | {"id": _varied(5)["id"]})  # back after withdraw
    for n in range(60, 70):  # replaced again within the same chunk
        sim.publish("sample-group", _varied(n))
        sim.publish("sample-group", _varied(n + 2) | {"id": _varied(n)["id"]})
    return sim


def _staged_then_final(
    sim: NodeSimulator, home: Path, url: str, *, drop_keyed: bool, before: bool = False
) -> tuple[dict[str, Any], int]:
    settings = make_settings(
        url, home / "home", page_size=25, harvest_chunk=CHUNK, harvest_chunk_growth=1
    )
    ctx = build_context(settings)
    try:
        cat = Catalogue(ctx)
        cat.enrol(sim, sim.url)
        staged = cat.stage_whole(sim.origin)
        assert staged.error is None and staged.final is not None
        with ctx.engine.begin() as conn:
            rows = conn.execute(select(func.count()).select_from(harvest_keyed)).scalar_one()
            if drop_keyed:  # as a step staged by the previous version would be
                conn.execute(harvest_keyed.delete())
            if before:  # as the version before staged them: without their record ids
                _restage_before(conn)
        done = asyncio.run(guarded_final(staged.final, Writer(ctx.engine, ctx.key), 20.0))
        assert done.error is None
        with ctx.engine.connect() as conn:  # consumed with the staging
            assert conn.execute(select(func.count()).select_from(harvest_keyed)).scalar_one() == 0
        return dump(ctx.engine), int(rows)
    finally:
        ctx.engine.dispose()


def test_final_commit_from_groups_keyed_where_verified_indexes_what_reading_back_indexes(
    db_url: str, tmp_path: Path, serve: Any, request: pytest.FixtureRequest
) -> None:
    sim = _node()
    serve(sim)
    kind = "postgres" if "postgresql" in db_url else "sqlite"
    results = []
    for drop in (False, True):
        home = tmp_path / f"drop{drop}"
        home.mkdir()
        with database(kind, home, request) as url:
            results.append(_staged_then_final(sim, home, url, drop_keyed=drop))
    (keyed, rows), (read_back, _) = results
    assert rows >= len(sim.leaves) // CHUNK  # every chunk with a group staged its keys
    assert keyed == read_back
    reasons = " ".join(r[3] for r in keyed["rejections"])
    # the k policy was asked of the staged keys too; a schema-invalid group is not keyed
    assert "below the node's k" in reasons and "fewer than its donors" in reasons
    assert "does not match" in reasons
    assert len(keyed["groups"]) > 40 and len(keyed["combos"]) > 10


def _restage_before(conn: Any) -> None:
    """Rewrite the staged keyed rows in the format before (`KEYED_FORMAT_BEFORE`: no ids)."""
    for lo, data in conn.execute(select(harvest_keyed.c.lo, harvest_keyed.c.data)).all():
        keyed = unpack_keyed(data)
        assert keyed is not None and all(kd[7] for kd in keyed)  # each with its record id
        conn.execute(
            update(harvest_keyed)
            .where(harvest_keyed.c.lo == lo)
            .values(data=pack_keyed(keyed, before=True))
        )
        back = unpack_keyed(pack_keyed(keyed, before=True))
        assert back is not None and [kd[:7] for kd in back] == [kd[:7] for kd in keyed]
        assert {kd[7] for kd in back} == {None}


def test_final_commit_of_groups_staged_without_record_ids_indexes_the_same(
    db_url: str, tmp_path: Path, serve: Any, request: pytest.FixtureRequest
) -> None:
    """Keyed rows staged by the version before (format `KEYED_FORMAT_BEFORE`, no record ids)
    are still used, their groups' leaves read back for their ids: the final commit indexes
    what it indexes from rows with the ids (and from none)."""
    sim = _node()
    serve(sim)
    kind = "postgres" if "postgresql" in db_url else "sqlite"
    results = []
    for name, drop, before in (("now", False, False), ("before", False, True)):
        home = tmp_path / name
        home.mkdir()
        with database(kind, home, request) as url:
            results.append(_staged_then_final(sim, home, url, drop_keyed=drop, before=before))
    (now, rows), (before_, rows_before) = results
    assert rows == rows_before > 0
    assert now == before_
    assert len(now["groups"]) > 40 and len(now["rejections"]) > 5


def _prepared_changes(conn: Any, node_id: int, size: int) -> list[Any]:
    prepared = prepare_step(conn, node_id, 0, size, budget=size)
    return [(b.changes, b.erase, b.refused) for b in prepared.batches]


@contextmanager
def _staged_whole(db_url: str, tmp_path: Path, serve: Any) -> Iterator[tuple[Any, int]]:
    """`_node()`'s whole log staged (verified, its chunks stored and keyed) and not accepted:
    the catalogue's context and the step's size."""
    sim = _node()
    serve(sim)
    ctx = build_context(make_settings(db_url, tmp_path / "home", page_size=25, harvest_chunk=CHUNK))
    try:
        cat = Catalogue(ctx)
        cat.enrol(sim, sim.url)
        staged = cat.stage_whole(sim.origin)
        assert staged.error is None and staged.final is not None
        yield ctx, len(sim.leaves)
    finally:
        ctx.engine.dispose()


def test_prepared_step_reads_back_only_the_leaves_not_keyed(
    db_url: str, tmp_path: Path, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every group of a batch keyed and staged with its record id, the step is made
    ready from the staged rows and the other leaves alone (other kinds, withdrawals,
    rejected groups): the same with the keyed groups' leaves gone from `leaves`. Rows of the
    format before have the leaves read back: without them, their groups are missing."""
    monkeypatch.setattr(catalogue.harvest.index, "BATCH", 30)  # batches across chunks
    with _staged_whole(db_url, tmp_path, serve) as (ctx, size), ctx.engine.begin() as conn:
        node_id = conn.execute(select(nodes.c.id)).scalar_one()
        rejected = conn.execute(select(func.count()).select_from(rejections)).scalar_one()
        assert rejected > 0  # rejected groups among the keyed ones
        expected = _prepared_changes(conn, node_id, size)
        keyed = [
            kd[0]
            for data in conn.execute(select(harvest_keyed.c.data)).scalars()
            for kd in unpack_keyed(data) or ()
        ]
        assert len(keyed) > size // 2
        conn.execute(leaves.delete().where(leaves.c.node_id == node_id, leaves.c.idx.in_(keyed)))
        assert _prepared_changes(conn, node_id, size) == expected
        _restage_before(conn)  # the format before: the leaves are read back (gone here)
        without = _prepared_changes(conn, node_id, size)
        assert sum(len(c[GROUP]) for c, _, _ in without) < sum(
            len(c[GROUP]) for c, _, _ in expected
        )


def test_prepared_step_reads_the_other_leaves_by_index_as_the_scan_reads_them(
    db_url: str, tmp_path: Path, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's leaves without a keyed group (other kinds, withdrawals, rejected groups) are
    looked up by index when few (`POINT_READS`), a few a statement, else found by a scan of
    the batch: the step is made ready the same either way."""
    index_module = catalogue.harvest.index
    monkeypatch.setattr(index_module, "BATCH", 30)  # batches across chunks
    monkeypatch.setattr(index_module, "_IN_LIST", 2)  # several statements a batch
    with _staged_whole(db_url, tmp_path, serve) as (ctx, size):
        made = []
        for point_reads, unused in ((10**6, "_UNKEYED_AT"), (0, "_UNKEYED")):
            with monkeypatch.context() as m:  # the other statement is never run
                m.setattr(index_module, "POINT_READS", point_reads)
                m.setattr(index_module, unused, "not SQL {mark}")
                with ctx.engine.connect() as conn:
                    node_id = conn.execute(select(nodes.c.id)).scalar_one()
                    made.append(_prepared_changes(conn, node_id, size))
        by_scan, by_index = made
        assert by_index == by_scan
        assert sum(len(erase) for _, erase, _ in by_index) >= 3  # the withdrawals were read
        assert sum(len(c["biobank"]) + len(c["collection"]) for c, _, _ in by_index) == 2


def _group_sums(conn: Any) -> dict[int, tuple[int, int, int, int]]:
    """The interval sums of the live groups counting in each combo, by SQL."""
    return {
        cid: (int(a), int(b), int(c), int(d))
        for cid, a, b, c, d in conn.execute(
            select(
                sample_groups.c.combo_id,
                func.sum(sample_groups.c.s_min),
                func.sum(sample_groups.c.s_max),
                func.max(sample_groups.c.d_min),
                func.sum(sample_groups.c.d_max),
            ).group_by(sample_groups.c.combo_id)
        )
    }


def test_replaced_group_versions_leave_the_counts_a_recount_finds(
    db_url: str, tmp_path: Path, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version a later batch of the step replaces is not written; every combo's counts are
    still its live groups' interval sums, and a combo only a replaced version used is kept
    (with zero counts) as when that version was written, then deleted and recounted."""
    monkeypatch.setattr(catalogue.harvest.index, "BATCH", 2)  # batches of two leaves
    sim = NodeSimulator(k=1)
    sim.populate(3)
    only_old = group(900, biobank=BB, collection=COLL, samples=5, donors=2, sex="male")
    sim.publish("sample-group", only_old)
    sim.publish("sample-group", group(901, biobank=BB, collection=COLL, samples=7, donors=3))
    sim.publish("sample-group", only_old | {"sex": "female", "samples": 9})  # replaces it
    serve(sim)
    ctx = build_context(make_settings(db_url, tmp_path / "home", page_size=2, harvest_chunk=2))
    try:
        cat = Catalogue(ctx)
        cat.enrol(sim, sim.url)
        assert cat.harvest()[sim.origin].ok
        with ctx.engine.connect() as conn:
            sums = _group_sums(conn)
            rows = conn.execute(
                select(combos.c.id, combos.c.sex, combos.c.n_min, combos.c.n_max, combos.c.d_min)
                .add_columns(combos.c.d_max)
                .order_by(combos.c.id)
            ).all()
            live = conn.execute(select(func.count()).select_from(sample_groups)).scalar_one()
    finally:
        ctx.engine.dispose()
    assert live == 5
    for cid, sex, *counts in rows:
        assert tuple(counts) == sums.get(cid, (0, 0, 0, 0)), sex
    assert [tuple(r[1:]) for r in rows if r.id not in sums] == [("male", 0, 0, 0, 0)]


def _combo_counts_and_group_sums(engine: Any) -> tuple[dict[Any, tuple[int, ...]], dict[Any, Any]]:
    """Each combo's counts (by its sex and lower age) and the interval sums of the groups
    counting in it."""
    with engine.connect() as conn:
        sums = _group_sums(conn)
        rows = conn.execute(
            select(combos.c.id, combos.c.sex, combos.c.age_min, combos.c.n_min, combos.c.n_max)
            .add_columns(combos.c.d_min, combos.c.d_max)
            .order_by(combos.c.id)
        ).all()
    counts = {(sex, age): tuple(counts) for _cid, sex, age, *counts in rows}
    assert len(counts) == len(rows)  # one combo a sex and age here
    return counts, {(sex, age): sums.get(cid, (0, 0, 0, 0)) for cid, sex, age, *_c in rows}


def test_a_recounted_combo_counts_the_groups_its_own_step_wrote_in_it(
    db_url: str, tmp_path: Path, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The groups a step writes are not held as the node's live groups (at 10M samples, about
    30 MB in a node's first step): a combo recounted in a step must still count the groups
    that step wrote in it, found among the node's groups.

    First step, in batches of two leaves and every new combo written ahead at once: group 2
    opens combo "male" (written ahead), then in a later batch a version of group 1 in it that
    a still later batch replaces, so "male" is recounted and must count group 2. Second step:
    group 3 is replaced in combo "other" (recounted), where group 4 is new: both count."""
    monkeypatch.setattr(catalogue.harvest.index, "BATCH", 2)
    monkeypatch.setattr(catalogue.harvest.index, "NEW_COMBO_BUDGET", 0)
    sim = NodeSimulator(k=1)
    sim.populate(0)  # leaves 0-1: the biobank and the collection
    g1, g2, g3, g4, g5, g6 = (
        group(n, biobank=BB, collection=COLL, samples=5, donors=2) for n in range(1, 7)
    )
    sim.publish("sample-group", g2 | {"sex": "male", "samples": 7})  # leaves 2-3
    sim.publish("sample-group", g5 | {"sex": "unknown"})
    sim.publish("sample-group", g1 | {"sex": "male"})  # leaves 4-5; replaced at 6
    sim.publish("sample-group", g6 | {"sex": "unknown", "age": {"min": 50, "max": 59}})
    sim.publish("sample-group", g1 | {"sex": "female", "samples": 9})
    serve(sim)
    ctx = build_context(make_settings(db_url, tmp_path / "home", page_size=2, harvest_chunk=2))
    male, other = ("male", 40), ("other", 40)
    try:
        cat = Catalogue(ctx)
        cat.enrol(sim, sim.url)
        assert cat.harvest()[sim.origin].ok
        counts, sums = _combo_counts_and_group_sums(ctx.engine)
        assert counts == sums
        assert counts[male] == (7, 7, 2, 2)  # group 2, written in the step that recounted it
        assert counts[("female", 40)] == (9, 9, 2, 2)
        assert len(counts) == 4
        sim.publish("sample-group", g3 | {"sex": "other", "samples": 4, "donors": 1})
        assert cat.harvest()[sim.origin].ok
        sim.publish("sample-group", g4 | {"sex": "other", "samples": 6, "donors": 1})  # new
        sim.publish("sample-group", g3 | {"sex": "other", "samples": 8, "donors": 1})
        assert cat.harvest()[sim.origin].ok
        counts, sums = _combo_counts_and_group_sums(ctx.engine)
    finally:
        ctx.engine.dispose()
    assert counts == sums
    assert counts[other] == (14, 14, 1, 2)  # groups 3 (its new version) and 4
    assert counts[male] == (7, 7, 2, 2)


def test_keyed_group_is_what_the_read_back_path_computes() -> None:
    """`key_group` (where the content is verified) against the read-back path's functions,
    with a chunk's shared parts (`memo`) and through the staged bytes."""
    memo: dict[Any, Any] = {}
    records = [_varied(n) for n in range(80)] + [_varied(n) for n in range(10)]  # repeats
    keyed = [key_group(i, r, memo, r["id"]) for i, r in enumerate(records)]
    back = unpack_keyed(pack_keyed([k for k in keyed if k is not None]))
    assert back is not None and len(back) == len(records)
    for i, (rec, item) in enumerate(zip(records, back, strict=True)):
        key = combo_key(rec)
        idx, chash, staged_key, s_iv, d_iv, s_exact, d_exact, rid = item
        assert (idx, chash, staged_key, rid) == (i, combo_hash(key), key, rec["id"])
        assert (s_iv, d_iv) == (count_interval(rec["samples"]), count_interval(rec["donors"]))
        assert group_problems({"samples": s_exact, "donors": d_exact}, 10) == group_problems(
            rec, 10
        )
    assert key_group(0, {"samples": 1, "donors": 1}, {}, "g") is None  # no key: read back instead
    assert unpack_keyed(b"k0" + pack_keyed([])[2:]) is None  # another format: read back


def _keyed_as_the_reference(records: list[dict[str, Any]], chunk: int) -> int:
    """Key `records` as chunks of `chunk` groups do (one memo a chunk) and compare each key
    and hash with `combo_key` / `combo_hash`, also through the staged bytes; how many."""
    done = 0
    for at in range(0, len(records), chunk):
        memo: dict[Any, Any] = {}
        part = records[at : at + chunk]
        keyed = [key_group(at + i, r, memo, f"g{at + i}") for i, r in enumerate(part)]
        assert all(k is not None for k in keyed)
        back = unpack_keyed(pack_keyed([k for k in keyed if k is not None]))
        assert back is not None and len(back) == len(part)
        for i, (rec, item) in enumerate(zip(part, back, strict=True)):
            key = combo_key(rec)
            assert item[:3] == (at + i, combo_hash(key), key)
            s, d = rec["samples"], rec["donors"]
            assert item[3:5] == (count_interval(s), count_interval(d))
            exact = (s if isinstance(s, int) else None, d if isinstance(d, int) else None)
            assert item[5:] == (*exact, f"g{at + i}")
            assert type(item[2][9]) is tuple and [type(x) for x in item[2]] == [
                type(x) for x in key
            ]
            done += 1
    return done


def test_keyed_group_lists_looked_up_as_published_keep_combo_key_and_hash_in_any_order() -> None:
    """The sorted tuples `key_group` keeps per chunk, looked up by a list as published: the
    same lists in other orders, repeated across a chunk, and lists of values that Python
    finds equal but JSON does not (1 and true: not kept, so never mistaken); likewise the
    count intervals it keeps per chunk, by counts Python finds equal."""
    rng = random.Random(19)
    records = []
    for n in range(400):
        rec = _varied(n)
        for name in ("use_conditions", "dataset_types", "diagnoses"):
            if rec.get(name):
                rng.shuffle(rec[name])
        records.append(rec)
    odd = [
        {"biobank": BB, "collection": COLL, "samples": 5, "donors": 5, "use_conditions": v}
        for v in ([1], [True], [1.0], ["1"], [True, 1], [1, True])
    ]
    # counts Python finds equal (one interval tuple per value of a chunk is kept)
    counts: list[Any] = [10, 10.0, True, 1, 1.0, {"lt": 10}, {"lt": 10.0}, {"lt": True}]
    counts += [{"lt": 2}, {"lt": 1}, 3, {"lt": 3}]
    odd += [
        {"biobank": BB, "collection": COLL, "samples": s, "donors": d}
        for s in counts
        for d in counts[::-1]
    ]
    assert _keyed_as_the_reference(records + odd + records, 150) == 2 * len(records) + len(odd)
    keys = [key_group(i, r, {}, "g") for i, r in enumerate(odd[:6])]
    assert len({k[1] for k in keys if k is not None}) == 6  # six different hashes


def test_keyed_groups_of_a_real_imported_cohort_are_combo_key_and_combo_hash(
    tmp_path: Path,
) -> None:
    """The sample groups a node publishes from a real Beacon v2 cohort (the EGA test set,
    external data), keyed as a harvest's chunks key them, are the reference's keys."""
    ega = external_data() / "ega-beacon2-ri-tools-v2/output_docs/all-fields"
    home, _ = make_home(tmp_path)
    mapping = Mapping.from_dict(
        {
            "kind": "sample",
            "columns": {"local_id": "id"},
            "fixed": {"biobank": BIOBANK, "collection": COLLECTION},
        }
    )
    report = run_import(home, [ega / "biosamples.json", ega / "individuals.json"], mapping=mapping)
    assert report.problems == [] and report.published.get(GROUP, 0) >= 1
    conn = sqlite3.connect(home.db_path)
    try:
        rows = conn.execute(
            "SELECT c.content FROM contents c JOIN leaves l ON l.idx = c.idx"
            " WHERE l.kind = ? AND c.content IS NOT NULL ORDER BY c.idx",
            (GROUP,),
        ).fetchall()
    finally:
        conn.close()
    records = [orjson.loads(r[0]) for r in rows]
    assert len(records) == report.published[GROUP]
    assert _keyed_as_the_reference(records, 7) == len(records)
    assert _keyed_as_the_reference(records * 2, 5000) == 2 * len(records)


def test_database_without_the_keyed_staging_table_gets_it_when_opened(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE harvest_keyed"))  # as made by the previous version
    engine.dispose()
    engine = make_engine(url)
    try:
        assert "harvest_keyed" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
