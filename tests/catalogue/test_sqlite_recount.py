"""SQLite keeps no index of the sample groups by combo (issue 19 item 4: the final commit's
CPU). The index served only the recount of a combo that lost a group; writing it cost every
group written about 0.7 µs of CPU (its entry, and its pages at the commit: 0.3-0.4 µs an
entry of the 1M harvest's final commits). A recount there finds the combo's groups in one
pass over the node's groups (a range of the table's key), not in group ids the harvest holds:
those it wrote in a node's first step held about 30 MB at 10M samples for no recount. PostgreSQL
keeps the index (its recount joins on it); a SQLite database made before loses it when opened."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from catalogue.db import bulk_insert, make_engine, write_tx
from catalogue.harvest.index import COMBO_COLUMNS, combo_hash, combo_key, write_counts
from catalogue.models import combos, sample_groups
from tests.catalogue.conftest import database

GROUP_COLUMNS = ("node_id", "group_id", "idx", "combo_id", "s_min", "s_max", "d_min", "d_max")
# combo 1: two groups; combo 2: one; combo 3: none left; combo 4: another node's group of the
# same combo id is never counted (a node's groups only); combos 5-6 untouched
GROUPS = [
    (1, "g-1", 0, 1, 1, 4, 1, 4),
    (1, "g-2", 1, 1, 7, 7, 6, 6),
    (1, "g-3", 2, 2, 30, 30, 20, 20),
    (2, "g-1", 0, 5, 100, 100, 100, 100),
]
# what a recount finds: the groups' bounds aggregated by SQL (the statement PostgreSQL runs)
REFERENCE = """SELECT c.id, COALESCE(SUM(g.s_min), 0), COALESCE(SUM(g.s_max), 0),
 COALESCE(MAX(g.d_min), 0), COALESCE(SUM(g.d_max), 0)
FROM combos c LEFT JOIN sample_groups g ON g.combo_id = c.id AND g.node_id = c.node_id
WHERE c.id IN (1, 2, 3) GROUP BY c.id ORDER BY c.id"""


def _engine(path: Path) -> Any:
    engine = make_engine(f"sqlite:///{path}")
    rows = []
    for cid in range(1, 7):
        key = combo_key({"biobank": "b", "collection": "c", "age": {"min": cid, "max": cid}})
        node = 2 if cid == 5 else 1
        rows.append((cid, node, combo_hash(key), *key[:9], None, None, None, "DE", 5, 9, 2, 9, 1))
    with write_tx(engine) as conn:
        bulk_insert(conn, combos, COMBO_COLUMNS, rows)
        bulk_insert(conn, sample_groups, GROUP_COLUMNS, GROUPS)
    return engine


def test_sqlite_recounts_a_combo_from_the_node_s_groups_as_sql_aggregates_them(
    tmp_path: Path,
) -> None:
    engine = _engine(tmp_path / "c.db")
    try:
        with engine.connect() as conn:
            reference = [tuple(r) for r in conn.execute(text(REFERENCE))]
        with write_tx(engine) as conn:
            write_counts(conn, [1, 2, 3], [(5, 5, 8, 8, 5, 77, 4)], 77, node_id=1)
        with engine.connect() as conn:
            got = {
                r[0]: tuple(r[1:])
                for r in conn.execute(
                    text("SELECT id, n_min, n_max, d_min, d_max, changed FROM combos ORDER BY id")
                )
            }
    finally:
        engine.dispose()
    assert [(cid, *got[cid][:4]) for cid in (1, 2, 3)] == reference
    assert got[1] == (8, 11, 6, 10, 77)  # recounted from its two groups
    assert got[2] == (30, 30, 20, 20, 77)
    assert got[3] == (0, 0, 0, 0, 77)  # no group left
    assert got[4] == (10, 14, 8, 14, 77)  # gained, by delta
    assert got[6] == (5, 9, 2, 9, 1)  # untouched


def test_sqlite_recount_without_its_node_is_refused(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "c.db")
    try:
        with pytest.raises(ValueError, match="name the node"), write_tx(engine) as conn:
            write_counts(conn, [1], [], 77)
    finally:
        engine.dispose()


def test_sqlite_keeps_no_group_index_by_combo_and_a_database_made_before_drops_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    engine = _engine(path)
    try:
        assert "ix_sample_groups_combo" not in _indexes(engine)
        with write_tx(engine) as conn:  # as the version before made it
            conn.execute(text("CREATE INDEX ix_sample_groups_combo ON sample_groups (combo_id)"))
    finally:
        engine.dispose()
    engine = make_engine(f"sqlite:///{path}")
    try:
        assert "ix_sample_groups_combo" not in _indexes(engine)
        with engine.connect() as conn:  # the groups themselves are kept
            assert conn.execute(text("SELECT count(*) FROM sample_groups")).scalar() == 4
    finally:
        engine.dispose()


def _indexes(engine: Any) -> set[str]:
    with engine.connect() as conn:
        return {ix["name"] for ix in inspect(conn).get_indexes("sample_groups")}


@pytest.mark.postgres
def test_postgresql_keeps_the_group_index_by_combo(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with database("postgres", tmp_path, request) as url:
        engine = make_engine(url)
        try:
            assert "ix_sample_groups_combo" in _indexes(engine)  # its recount joins on it
        finally:
            engine.dispose()
