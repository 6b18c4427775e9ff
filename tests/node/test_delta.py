"""Delta exports: a file of only new samples is judged with everything the node holds."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson

from node.home import Home
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from tests.node.node_support import make_home, sample_rows, write_csv, write_mapping

K = 5


def _full() -> list[list[str]]:
    """40 samples of 20 donors in two privacy classes (ages 45 and 62) of 10 donors each."""
    rows = sample_rows(40, donors=20)
    for row in rows:
        if int(row[1][1:]) % 2:
            row[5] = "62"
    return rows


def _delta(full: list[list[str]]) -> list[list[str]]:
    """Five new samples (new sample ids) of five published donors: 3 of one class, 2 of
    the other. Alone, each class has fewer than k donors."""
    by_donor: dict[str, list[str]] = {}
    for row in full:
        by_donor.setdefault(row[1], row)
    young = [r for r in by_donor.values() if r[5] == "45"][:3]
    old = [r for r in by_donor.values() if r[5] == "62"][:2]
    return [[f"NEW{i:03d}", *row[1:]] for i, row in enumerate(young + old)]


def _groups(home: Home) -> list[dict[str, Any]]:
    """The live published sample groups, without their keyed id and nonce."""
    conn = sqlite3.connect(home.db_path)
    latest: dict[str, dict[str, Any] | None] = {}
    for id, content in conn.execute(
        "SELECT l.id, c.content FROM leaves l JOIN contents c ON c.idx = l.idx "
        "WHERE l.kind = 'sample-group' ORDER BY l.idx"
    ):
        latest[id] = orjson.loads(content) if content else None
    conn.close()
    out = []
    for content in latest.values():
        if content is not None:
            out.append({k: v for k, v in content.items() if k not in ("id", "nonce")})
    return sorted(out, key=lambda c: orjson.dumps(c, option=orjson.OPT_SORT_KEYS))


def test_new_samples_of_published_donors_publish_when_imported_alone(tmp_path: Path) -> None:
    mapping = Mapping.load(write_mapping(tmp_path / "m.toml"))
    full = _full()
    delta = _delta(full)
    full_csv = write_csv(tmp_path / "full.csv", full)
    delta_csv = write_csv(tmp_path / "delta.csv", delta)

    # judged alone (a node that holds nothing yet) the classes are too small: every row
    # is generalised or held back
    alone, _ = make_home(tmp_path, k=K, name="alone")
    judged_alone = run_import(alone, [delta_csv], mapping=mapping)
    assert judged_alone.privacy.generalised + sum(judged_alone.privacy.held_back.values()) == 5

    # a node that published the full export judges the delta with its holding
    home, _ = make_home(tmp_path, k=K, name="delta")
    first = run_import(home, [full_csv], mapping=mapping)
    assert first.published == {"sample-group": 2}
    report = run_import(home, [delta_csv], mapping=mapping)
    assert report.applied and report.staged_samples == 5
    assert report.privacy.rows == 45 and report.privacy.held_back == {}
    assert report.privacy.published == 45
    assert report.pending is not None and report.pending.samples == 0
    assert report.published == {"sample-group": 2}

    # the same rows inside one full export publish the same groups
    together, _ = make_home(tmp_path, k=K, name="together")
    run_import(together, [write_csv(tmp_path / "both.csv", full + delta)], mapping=mapping)
    assert _groups(home) == _groups(together)
    assert sum(g["samples"] for g in _groups(home)) == 45

    # re-importing the delta appends nothing
    assert run_import(home, [delta_csv], mapping=mapping).appended == 0


def test_a_delta_of_fewer_than_k_donors_is_kept_and_waits_for_the_next_change(
    tmp_path: Path,
) -> None:
    """Not the policy but the change-set rule (docs/privacy.md): a publication involves at
    least k donors. The samples are in the holding, not held back, and go with the next."""
    mapping = Mapping.load(write_mapping(tmp_path / "m.toml"))
    full = _full()
    delta = _delta(full)
    home, _ = make_home(tmp_path, k=K)
    run_import(home, [write_csv(tmp_path / "full.csv", full)], mapping=mapping)
    small = run_import(home, [write_csv(tmp_path / "d1.csv", delta[:2])], mapping=mapping)
    assert small.privacy.held_back == {} and small.published == {}
    assert small.pending is not None and small.pending.waiting and small.pending.samples == 2
    rest = run_import(home, [write_csv(tmp_path / "d2.csv", delta[2:])], mapping=mapping)
    assert rest.pending is not None and rest.pending.samples == 0
    assert sum(g["samples"] for g in _groups(home)) == 45
