"""The combos' multi-valued attributes (diagnoses, use conditions, dataset types) are columns
of the combo's row, compact JSON arrays, not a row per value in side tables; a database made
with the side tables (either earlier shape) is migrated when the catalogue opens it, with the
same answers, DCAT graph and stored facts as a fresh harvest."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from rdflib.compare import isomorphic
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    event,
    inspect,
    select,
    text,
)

from catalogue.db import make_engine, write_tx
from catalogue.dcat import catalogue_graph
from catalogue.harvest.index import combo_hash
from catalogue.models import combos
from catalogue.search import CubeCache, Vocabulary, parse_filters, search
from catalogue.search.cube import load
from tests.catalogue.conftest import Catalogue
from tests.catalogue.dbdump import dump, key_of_row
from tests.catalogue.simulator import NodeSimulator

BB, COL = "bbmri-eric:ID:DE_S", "bbmri-eric:ID:DE_S:collection:main"
QUERIES: list[dict[str, list[str]]] = [
    {},
    {"icd10": ["C50"]},
    {"icd10": ["E11"]},
    {"orpha": ["ORPHA:558"]},
    {"duo": ["DUO:0000006"]},
    {"duo": ["DUO:0000007"]},
    {"icd10": ["II"]},
    {"dataset_type": ["Physiological"]},
]
SIDE_NAMES = ("combo_diagnoses", "combo_uses", "combo_datasets")
MULTI = ("diagnoses", "use_conditions", "dataset_types")

# the side tables as the previous version (keyed by combo) declared them
_old = MetaData()
KEYED = (
    Table(
        "combo_diagnoses",
        _old,
        Column("combo_id", Integer, primary_key=True, autoincrement=False),
        Column("system", String(16), primary_key=True),
        Column("code", String(32), primary_key=True),
        Column("code3", String(8)),
        Column("chapter", String(8)),
        sqlite_with_rowid=False,
    ),
    Table(
        "combo_uses",
        _old,
        Column("combo_id", Integer, primary_key=True, autoincrement=False),
        Column("code", String(32), primary_key=True),
        sqlite_with_rowid=False,
    ),
    Table(
        "combo_datasets",
        _old,
        Column("combo_id", Integer, primary_key=True, autoincrement=False),
        Column("code", String(64), primary_key=True),
        sqlite_with_rowid=False,
    ),
)
# and as the one before it: rowid tables indexed by combo (the diagnoses by code too)
UNKEYED = {
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
            {"system": "ORPHA", "code": "ORPHA:558"},
            {"system": "ICD-10", "code": "E11.9"},
            {"system": "ICD-10", "code": "C50.9"},
        ],
        use_conditions=["DUO:0000007", "DUO:0000006"],
        dataset_types=["Physiological", "Genomic"],
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


def _answers(engine: Engine) -> list[bytes]:
    vocab = Vocabulary.default()
    with engine.connect() as conn:
        return [
            orjson.dumps(search(conn, parse_filters(q, vocab), vocab, 3600.0, CubeCache()))
            for q in QUERIES
        ]


def _multi(engine: Engine) -> set[tuple[Any, ...]]:
    with engine.connect() as conn:
        return {tuple(r) for r in conn.execute(select(*(combos.c[m] for m in MULTI)))}


def _make_old(conn: Connection, shape: str) -> None:
    """Give the database the earlier shape, rows and all: the side tables filled from the
    combos' columns (the older, unkeyed tables with each row twice, as they could hold),
    and the columns dropped."""
    diag, uses, datasets = [], [], []
    for cid, d, u, t in conn.execute(select(combos.c.id, *(combos.c[m] for m in MULTI))):
        diag += [(cid, *v) for v in orjson.loads(d or "[]")]
        uses += [(cid, v) for v in orjson.loads(u or "[]")]
        datasets += [(cid, v) for v in orjson.loads(t or "[]")]
    for name, rows in zip(SIDE_NAMES, (diag, uses, datasets), strict=True):
        if shape == "keyed":
            KEYED[SIDE_NAMES.index(name)].create(conn)
        else:
            columns, indexes = UNKEYED[name]
            conn.execute(text(f"CREATE TABLE {name} ({columns})"))
            for ddl in indexes:
                conn.execute(text(ddl))
            rows = rows + rows
        marks = ", ".join(f":v{i}" for i in range(len(rows[0])))
        conn.execute(
            text(f"INSERT INTO {name} VALUES ({marks})"),
            [{f"v{i}": v for i, v in enumerate(row)} for row in rows],
        )
    for column in MULTI:
        conn.execute(text(f"ALTER TABLE combos DROP COLUMN {column}"))


def test_multi_valued_attributes_are_json_columns_of_the_combo_row_without_side_tables(
    catalogue: Catalogue, serve: Any
) -> None:
    _federation(catalogue, serve)
    with catalogue.engine.connect() as conn:
        assert not set(SIDE_NAMES) & set(inspect(conn).get_table_names())
    # sorted as the combo's key sorts them; a diagnosis with its ICD-10 category and chapter
    assert _multi(catalogue.engine) == {
        ('[["ICD-10","C50.9","C50","II"]]', '["DUO:0000042"]', '["Genomic"]'),  # the default
        (
            '[["ICD-10","C50.9","C50","II"],["ICD-10","E11.9","E11","IV"],'
            '["ORPHA","ORPHA:558",null,null]]',
            '["DUO:0000006","DUO:0000007"]',
            '["Genomic","Physiological"]',
        ),
        ('[["ICD-10","C50.1","C50","II"]]', '["DUO:0000007"]', '["Genomic"]'),
    }
    answers = [orjson.loads(a) for a in _answers(catalogue.engine)]
    assert [a["total"]["max"] for a in answers] == [14, 14, 5, 5, 5, 8, 14, 5]


def test_the_search_index_loads_combos_with_one_statement_on_the_combos_table(
    catalogue: Catalogue, serve: Any
) -> None:
    _federation(catalogue, serve)
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("SELECT"):
            seen.append(statement)

    event.listen(catalogue.engine, "before_cursor_execute", record)
    try:
        with catalogue.engine.connect() as conn:
            ids, rows = load(conn)
            load(conn, combos.c.changed > 0)  # a refresh
    finally:
        event.remove(catalogue.engine, "before_cursor_execute", record)
    assert len(ids) == 3
    both = {c.dataset_type: (c.icd, c.orpha, c.chapters, c.use_conditions) for c in rows}
    assert both[("Genomic", "Physiological")] == (
        ("C50.9", "E11.9"),
        ("ORPHA:558",),
        ("II", "IV"),
        ("DUO:0000006", "DUO:0000007"),
    )
    assert len(seen) == 2 and all(
        "FROM combos" in s and "JOIN" not in s and "combo_" not in s for s in seen
    ), seen


@pytest.mark.parametrize("shape", ["keyed", "unkeyed"])
def test_an_old_database_with_side_tables_is_migrated_to_the_combo_columns(
    catalogue: Catalogue, serve: Any, shape: str
) -> None:
    sim = _federation(catalogue, serve)
    engine = catalogue.engine
    facts, answers, multi = dump(engine), _answers(engine), _multi(engine)
    with catalogue.engine.connect() as conn:
        graph = catalogue_graph(conn, catalogue.ctx, "http://catalogue.test")
    with write_tx(catalogue.engine) as conn:
        _make_old(conn, shape)
    with catalogue.engine.connect() as conn:
        assert set(SIDE_NAMES) <= set(inspect(conn).get_table_names())
        assert not set(MULTI) & {c["name"] for c in inspect(conn).get_columns("combos")}
    url = catalogue.engine.url.render_as_string(hide_password=False)
    catalogue.engine.dispose()

    engine = make_engine(url)  # what a catalogue does when it starts
    try:
        with engine.connect() as conn:
            assert not set(SIDE_NAMES) & set(inspect(conn).get_table_names())
            assert isomorphic(catalogue_graph(conn, catalogue.ctx, "http://catalogue.test"), graph)
        assert _multi(engine) == multi
        assert dump(engine) == facts
        assert _answers(engine) == answers
        make_engine(url).dispose()  # idempotent
        assert _multi(engine) == multi
    finally:
        engine.dispose()
    # and the migrated database takes the next step's new combos
    sim.populate(2, start=300, biobank=BB, collection=COL, use_conditions=["DUO:0000006"])
    assert catalogue.harvest()[sim.origin].ok
    assert orjson.loads(_answers(catalogue.engine)[4])["total"]["max"] == 7


def test_a_combo_row_holds_every_part_of_its_key(catalogue: Catalogue, serve: Any) -> None:
    """The key rebuilt from the row's columns (the lists from their JSON) is the combo's key:
    its SHA-256 is the combo's `khash` (the key is not stored as text besides)."""
    _federation(catalogue, serve)
    with catalogue.engine.connect() as conn:
        rows = conn.execute(select(combos)).all()
        columns = {c["name"] for c in inspect(conn).get_columns("combos")}
    assert len(rows) == 3
    assert "ckey" not in columns
    for r in rows:
        key = key_of_row(r)
        assert hashlib.sha256(orjson.dumps(key)).digest() == bytes(r.khash)
        assert combo_hash(key) == bytes(r.khash)
