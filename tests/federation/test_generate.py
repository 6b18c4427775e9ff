"""The synthetic LIMS export generator: determinism, realism, and that the node reads it."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import pytest

from federation.generate import (
    AGE_MAX,
    AGE_MIN,
    SAMPLE_FIELDS,
    YEAR_MAX,
    YEAR_MIN,
    GeneratedExport,
    flavour_for,
    generate,
)
from node.importing.codes import Codes
from node.importing.mapping import Mapping
from node.importing.sources import tabular
from protocol.errors import Problem

COUNTRIES = ("DE", "DK", "IT", "IE", "CN")


class CollectingSink:
    """A sink that keeps what the real CSV reader hands to the importer."""

    def __init__(self) -> None:
        self.samples: list[tuple[object, ...]] = []
        self.records: list[tuple[str, str, dict[str, object]]] = []
        self.problems: list[Problem] = []
        self.ignored_things: list[str] = []

    def sample(self, row: tuple[object, ...]) -> None:
        self.samples.append(row)

    def record(
        self,
        kind: str,
        id: str,
        biobank: str,
        content: dict[str, object],
        location: str,
        columns: dict[str, str] | None = None,
    ) -> None:
        self.records.append((kind, id, content))

    def problem(self, problem: Problem, kind: str | None = None, key: str | None = None) -> None:
        self.problems.append(problem)

    def ignored(self, what: str) -> None:
        self.ignored_things.append(what)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(export: GeneratedExport) -> list[Path]:
    return [
        export.samples_csv,
        export.samples_mapping,
        export.biobanks_csv,
        export.biobanks_mapping,
        export.collections_csv,
        export.collections_mapping,
    ]


def _rows(export: GeneratedExport) -> list[dict[str, str]]:
    delimiter = flavour_for(export.country).delimiter
    with export.samples_csv.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter=delimiter))


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    a = generate("DE", 500, 7, tmp_path / "a")
    b = generate("DE", 500, 7, tmp_path / "b")
    c = generate("DE", 500, 8, tmp_path / "c")
    assert [_digest(p) for p in _files(a)] == [_digest(p) for p in _files(b)]
    assert _digest(a.samples_csv) != _digest(c.samples_csv)
    assert a.samples_per_collection == b.samples_per_collection


@pytest.mark.parametrize("country", COUNTRIES)
def test_export_has_the_requested_rows_in_local_flavour(tmp_path: Path, country: str) -> None:
    export = generate(country, 1500, 42, tmp_path)
    flavour = flavour_for(country)
    rows = _rows(export)
    cols = flavour.columns
    assert len(rows) == 1500 == export.n_samples
    assert list(rows[0]) == [cols[k] for k in SAMPLE_FIELDS]
    assert len({r[cols["local_id"]] for r in rows}) == 1500, "local sample ids must be unique"
    per_donor = Counter(r[cols["donor_id"]] for r in rows)
    assert len(per_donor) == export.n_donors
    # each donor's samples are listed together (one run of rows per donor)
    order = [r[cols["donor_id"]] for r in rows]
    runs = [d for i, d in enumerate(order) if i == 0 or d != order[i - 1]]
    assert len(runs) == len(per_donor)
    assert max(per_donor.values()) >= 3, "donors should give several samples"
    ages = [int(r[cols["age"]]) for r in rows if r[cols["age"]]]
    assert min(ages) >= AGE_MIN and max(ages) <= AGE_MAX
    years = {
        int(y)
        for r in rows
        for y in r[cols["date"]].replace("/", "-").replace(".", "-").split("-")
        if len(y) == 4
    }
    assert min(years) >= YEAR_MIN and max(years) <= YEAR_MAX
    materials = Counter(r[cols["sample_type"]] for r in rows)
    assert len(materials) >= 4, "a realistic mix of sample types"
    assert set(materials) <= set(flavour.material_names.values())
    assert sum(export.samples_per_collection.values()) == 1500
    assert sum(export.samples_per_biobank.values()) == 1500
    assert all(b.email.endswith(".example") for b in export.biobanks)


def test_local_vocabulary_is_used_per_country(tmp_path: Path) -> None:
    de = _rows(generate("DE", 400, 1, tmp_path / "de"))
    cn = _rows(generate("CN", 400, 1, tmp_path / "cn"))
    ie = _rows(generate("IE", 400, 1, tmp_path / "ie"))
    assert "Vollblut" in {r["Material"] for r in de} or "EDTA-Plasma" in {r["Material"] for r in de}
    assert {r["Geschlecht"] for r in de} <= {"weiblich", "männlich", "divers", "unbekannt"}
    assert {r["性别"] for r in cn} <= {"女", "男", "其他", "未知"}
    assert "Sample ID" in ie[0]


def test_any_other_country_gets_a_generic_flavour(tmp_path: Path) -> None:
    export = generate("fr", 50, 3, tmp_path)
    assert export.country == "FR"
    assert all(b.id.startswith("bbmri-eric:ID:FR_") for b in export.biobanks)
    assert len(_rows(export)) == 50
    with pytest.raises(ValueError, match="ISO 3166-1 alpha-2"):
        generate("Deutschland", 10, 1, tmp_path / "x")


def test_zero_samples_writes_header_only(tmp_path: Path) -> None:
    export = generate("IE", 0, 1, tmp_path)
    assert _rows(export) == []
    assert export.n_donors == 0


@pytest.mark.parametrize("country", COUNTRIES)
def test_node_reader_accepts_every_row_and_record(tmp_path: Path, country: str) -> None:
    export = generate(country, 800, 11, tmp_path)
    codes = Codes.default()
    sink = CollectingSink()
    n = tabular.read(export.samples_csv, Mapping.load(export.samples_mapping), sink, codes)
    assert n == 800
    assert sink.problems == []
    assert len(sink.samples) == 800
    staged_types = {row[4] for row in sink.samples}
    assert staged_types <= codes.codes("sample-type")
    assert {row[2] for row in sink.samples} == {
        b.id for b in export.biobanks if export.samples_per_biobank[b.id]
    }
    for csv_path, mapping_path, kind, expected in (
        (export.biobanks_csv, export.biobanks_mapping, "biobank", len(export.biobanks)),
        (export.collections_csv, export.collections_mapping, "collection", len(export.collections)),
    ):
        sink = CollectingSink()
        tabular.read(csv_path, Mapping.load(mapping_path), sink, codes)
        assert sink.problems == [], f"{kind}: {[str(p) for p in sink.problems]}"
        assert [r[0] for r in sink.records] == [kind] * expected


def test_rows_stream_without_holding_the_export_in_memory(tmp_path: Path) -> None:
    import tracemalloc

    tracemalloc.start()
    generate("DK", 5000, 5, tmp_path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_500_000, f"peak {peak} bytes: rows must be streamed, not collected"


@pytest.mark.parametrize("country", ["DE", "CN"])
def test_node_importer_publishes_the_export(tmp_path: Path, country: str) -> None:
    from node.home import Home, NodeConfig, init_home
    from node.importing.importer import run_import
    from node.store import connect, log_size

    export = generate(country, 1000, 3, tmp_path / "export")
    init_home(
        tmp_path / "home",
        NodeConfig(
            origin=export.origin,
            name=export.node_name,
            country=export.country,
            organisation=export.organisation,
            contact=export.contact_email,
        ),
    )
    home = Home.open(tmp_path / "home")
    for csv_path, mapping_path in (
        (export.biobanks_csv, export.biobanks_mapping),
        (export.collections_csv, export.collections_mapping),
        (export.samples_csv, export.samples_mapping),
    ):
        report = run_import(home, [csv_path], mapping=Mapping.load(mapping_path))
        assert report.problems == [], [str(p) for p in report.problems[:5]]
        assert report.applied
    assert report.rows == 1000
    published = report.published.get("sample-group", 0)
    assert 0 < published < report.privacy.published <= 1000
    again = run_import(home, [export.samples_csv], mapping=Mapping.load(export.samples_mapping))
    assert again.appended == 0, "re-importing the same export appends nothing"
    conn = connect(home.db_path)
    try:
        assert log_size(conn) == len(export.biobanks) + len(export.collections) + published
    finally:
        conn.close()
