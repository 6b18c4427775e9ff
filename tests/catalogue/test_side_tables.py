"""The combos' side tables (diagnoses, use conditions, dataset types) are keyed by combo, with
no other index: every statement that reads them finds a combo's rows by that key, and a
database made with the earlier, unkeyed tables is rebuilt at start with the same rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, event, inspect, select, text

from catalogue.db import make_engine, write_tx
from catalogue.dcat import catalogue_graph
from catalogue.harvest.apply import discard_staging
from catalogue.models import combo_datasets, combo_diagnoses, combo_uses, combos, nodes
from catalogue.search import CubeCache, Vocabulary, parse_filters, search
from catalogue.search.cube import load
from tests.catalogue.conftest import Catalogue
from tests.catalogue.simulator import NodeSimulator

SIDE = (combo_diagnoses, combo_uses, combo_datasets)
BB, COL = "bbmri-eric:ID:DE_S", "bbmri-eric:ID:DE_S:collection:main"
QUERIES: list[dict[str, list[str]]] = [
    {},
    {"icd10": ["C50"]},
    {"icd10": ["E11"]},
    {"orpha": ["ORPHA:558"]},
    {"duo": ["DUO:0000006"]},
    {"duo": ["DUO:0000007"]},
]
# the same tables as the previous version made them: rowid tables indexed by combo (and the
# diagnoses by code too)
OLD_TABLES = {
    "combo_diagnoses": (
        "combo_id INTEGER NOT NULL, system VARCHAR(16) NOT NULL, code VARCHAR(32) NOT NULL, "
        "code3 VARCHAR(8), chapter VARCHAR(8)",
        [
            "CREATE INDEX ix_combo_diagnoses ON combo_diagnoses (combo_id)",
            "CREATE INDEX ix_combo_diagnoses_code ON combo_diagnoses (code)",
        ],
    ),
    "combo_uses": (
        "combo_id INTEGER NOT NULL, code VARCHAR(32) NOT NULL",
        ["CREATE INDEX ix_combo_uses ON combo_uses (combo_id)"],
    ),
    "combo_datasets": (
        "combo_id INTEGER NOT NULL, code VARCHAR(64) NOT NULL",
        ["CREATE INDEX ix_combo_datasets ON combo_datasets (combo_id)"],
    ),
}


def _federation(catalogue: Catalogue, serve: Any) -> NodeSimulator:
    sim = NodeSimulator("de.example/biobank-node", country="DE", k=1)
    sim.populate(6, biobank=BB, collection=COL)
    sim.populate(
        5,
        start=100,
        biobank=BB,
        collection=COL,
        diagnoses=[
            {"system": "ICD-10", "code": "C50.9"},
            {"system": "ICD-10", "code": "E11.9"},
            {"system": "ORPHA", "code": "ORPHA:558"},
        ],
        use_conditions=["DUO:0000007", "DUO:0000006"],
        dataset_types=["Genomic", "Physiological"],
    )
    sim.populate(
        3,
        start=200,
        biobank=BB,
        collection=COL,
        diagnoses=[{"system": "ICD-10", "code": "C50.1"}],
        use_conditions=["DUO:0000007"],
    )
    serve(sim)
    catalogue.enrol(sim, sim.url)
    assert catalogue.harvest()[sim.origin].ok
    return sim


def _answers(engine: Engine) -> list[dict[str, Any]]:
    vocab = Vocabulary.default()
    with engine.connect() as conn:
        return [search(conn, parse_filters(q, vocab), vocab, 3600.0, CubeCache()) for q in QUERIES]


def _rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {t.name: sorted(tuple(r) for r in conn.execute(select(*t.columns))) for t in SIDE}


def _make_old(conn: Connection) -> None:
    """Turn the side tables into the earlier version's, rows and all."""
    for name, (columns, indexes) in OLD_TABLES.items():
        conn.execute(text(f"CREATE TABLE {name}_prev ({columns})"))
        conn.execute(text(f"INSERT INTO {name}_prev SELECT * FROM {name}"))
        conn.execute(text(f"DROP TABLE {name}"))
        conn.execute(text(f"ALTER TABLE {name}_prev RENAME TO {name}"))
        for ddl in indexes:
            conn.execute(text(ddl))


def test_side_tables_keyed_by_combo_without_an_index_by_code(catalogue: Catalogue) -> None:
    with catalogue.engine.connect() as conn:
        insp = inspect(conn)
        for table in SIDE:
            pk = insp.get_pk_constraint(table.name)["constrained_columns"]
            assert pk[0] == "combo_id", table.name
            assert insp.get_indexes(table.name) == [], f"{table.name}: only its key"
    assert [c.name for c in combo_diagnoses.primary_key.columns] == ["combo_id", "system", "code"]


def test_an_old_database_with_unkeyed_side_tables_is_rebuilt_with_the_same_rows(
    catalogue: Catalogue, serve: Any
) -> None:
    sim = _federation(catalogue, serve)
    before, rows = _answers(catalogue.engine), _rows(catalogue.engine)
    assert [a["total"]["max"] for a in before] == [14, 14, 5, 5, 5, 8]
    assert len(rows["combo_diagnoses"]) == 5 and ("ORPHA", "ORPHA:558") in {
        r[1:3] for r in rows["combo_diagnoses"]
    }
    with write_tx(catalogue.engine) as conn:
        _make_old(conn)
    with catalogue.engine.connect() as conn:
        assert not inspect(conn).get_pk_constraint("combo_uses")["constrained_columns"]
    url = catalogue.engine.url.render_as_string(hide_password=False)
    catalogue.engine.dispose()

    engine = make_engine(url)  # what a catalogue does when it starts
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            for table in SIDE:
                assert insp.get_pk_constraint(table.name)["constrained_columns"][0] == "combo_id"
                assert insp.get_indexes(table.name) == []
            assert not {"combo_uses_unkeyed", "combo_uses_prev"} & set(insp.get_table_names())
        assert _rows(engine) == rows
        assert _answers(engine) == before
        make_engine(url).dispose()  # idempotent
        assert _rows(engine) == rows
    finally:
        engine.dispose()
    # and the rebuilt tables take the next step's new combos
    sim.populate(2, start=300, biobank=BB, collection=COL, use_conditions=["DUO:0000006"])
    assert catalogue.harvest()[sim.origin].ok
    assert _answers(catalogue.engine)[4]["total"]["max"] == 7


def test_every_read_of_a_side_table_finds_rows_by_the_combo_key(
    catalogue: Catalogue, serve: Any
) -> None:
    """EXPLAIN QUERY PLAN (SQLite) of each statement the search index, the DCAT graph and
    the discarding of a step run on the side tables: a search by the key; or a full read
    (the search index's first load; DCAT's join, which reads every diagnosis with its
    combo by the combo's key)."""
    _federation(catalogue, serve)
    engine = catalogue.engine
    if engine.dialect.name != "sqlite":
        return  # the plans below are SQLite's; the same statements run on PostgreSQL above
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if any(t.name in statement for t in SIDE):
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with engine.connect() as conn:
            load(conn)  # a server's first load: every side row
            full = len(seen)
            load(conn, combos.c.changed > 0)  # a refresh: the combos changed since
            catalogue_graph(conn, catalogue.ctx, "http://catalogue.test")
        with write_tx(engine) as conn:
            node_id = conn.execute(select(nodes.c.id)).scalar_one()
            discard_staging(conn, node_id)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    # the load of the DCAT graph's search index, one join, three deletes
    assert full == 3 and len(seen) == 3 + 3 + 3 + 1 + 3
    with engine.connect() as conn:
        for statement, params in seen:
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
            details = [str(row[-1]) for row in plan]
            side = [d for d in details if any(f" {t.name}" in d for t in SIDE)]
            assert side, (statement, details)
            for d in side:
                if "WHERE" not in statement and "JOIN" not in statement:  # a full load
                    assert d.startswith("SCAN"), (statement, details)
                elif "JOIN" in statement and d.startswith("SCAN"):  # every row, each's combo
                    assert "SEARCH combos USING INTEGER PRIMARY KEY (rowid=?)" in details
                else:
                    assert "USING PRIMARY KEY (combo_id=?)" in d, (statement, details)
