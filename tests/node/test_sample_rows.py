"""Sample rows staged by lookups (``SeenCells``) equal the full check, row for row.

``SampleRows`` stages a row whose every value it already saw in a valid row by memo
lookups instead of the full mapping and check; these tests run the same rows through both
(``fast=False`` is the full check on every row) and compare the staging rows and problems,
on the generated export of every partner and on rows broken in every way a check knows.
"""

from __future__ import annotations

import random
from itertools import islice
from pathlib import Path

import pytest

from federation.generate import generate
from node.importing.codes import Codes
from node.importing.mapping import Mapping
from node.importing.sources import tabular
from node.importing.sources.base import read_table
from node.importing.sources.tabular import SampleRows
from protocol.errors import Problem


def _rows(folder: Path) -> tuple[Mapping, list[str], list[tuple[str, list[str] | None, list]]]:
    mapping = Mapping.load(folder / "samples.mapping.toml")
    rows = read_table(folder / "samples.csv", mapping.delimiter or ",", fields=True)
    _, header, _ = next(rows)
    return mapping, list(header), list(rows)


def _both(
    mapping: Mapping, header: list[str], rows: list, batch: int = 50
) -> tuple[list, list, int]:
    """(full check, lookup path, rows the lookups staged), batch by batch as an import."""
    full = SampleRows(mapping, Codes.default(), header, fast=False)
    fast = SampleRows(mapping, Codes.default(), header)
    assert fast.seen is not None
    staged = 0
    stage = fast.seen.stage

    def counted(cells: list[str], loc: str) -> tuple[object, ...] | None:
        nonlocal staged
        done = stage(cells, loc)
        staged += done is not None
        return done

    fast.seen.stage = counted  # type: ignore[method-assign]
    it = iter(rows)
    expected: list = []
    got: list = []
    for chunk in iter(lambda: list(islice(it, batch)), []):
        expected += full.check([(loc, None if c is None else list(c), p) for loc, c, p in chunk])
        got += fast.check([(loc, None if c is None else list(c), p) for loc, c, p in chunk])
    return expected, got, staged


@pytest.mark.parametrize("country", ["DE", "DK", "IT", "IE", "CN"])
def test_every_partner_export_stages_the_same_by_lookups(tmp_path: Path, country: str) -> None:
    generate(country, 1500, 11, tmp_path)
    mapping, header, rows = _rows(tmp_path)
    expected, got, staged = _both(mapping, header, rows)
    assert got == expected
    assert len(got) == len(rows) and all(s is not None for s, _, _ in got)
    assert staged > len(rows) // 2  # the lookups did most of the work


# cell values that break (or just test) a check, by the field the column feeds
_BAD: dict[str, list[str]] = {
    "local_id": ["", "   ", " padded-id ", "ü-id"],
    "donor_id": ["", "  ", " D 1 "],
    "biobank": ["", "NOPE", "  "],
    "collection": ["", "NOPE-COLL"],
    "sample_type": ["", "Blutwurst", "serum", " Serum "],
    "storage_temperature": ["", "-273 °C"],
    "sex": ["", "FEMALE", "x", " weiblich "],
    "age": ["", "131", "130", "0", "-1", "4.5", "abc", "1000", " 42 ", "٤٢", "00042"],
    "birth": ["", "1950", "1950-13-01", "31.12.1999", "2030-01-01", "1800-01-01", "x"],
    "date": [
        "",
        "2019",
        "2019-02-30",
        "29.02.2020",
        "1799-12-31",
        "2999-01-01",
        "2018-05",
        "2018-05-06T10:00",
        "05.11.18",
        " 2018-05-06 ",
    ],
    "diagnoses": ["", "C50.9", "C50.9|C50.9", "ORPHA:98896", "ORPHA:0", "XYZ", "c50.9|"],
    "use_conditions": ["", "DUO:0000042", "DUO:9999999", "DUO:0000042|DUO:0000042"],
    "dataset_types": ["", "Klinisch|Klinisch", "Unbekannt"],
}


def _broken(
    rows: list, header: list[str], mapping: Mapping, seed: int, birth: bool = False
) -> list:
    rng = random.Random(seed)
    by_column = {column: fld for fld, column in mapping.columns.items()}
    out = []
    for loc, cells, problems in rows:
        cells = list(cells)
        for _ in range(rng.choice((0, 0, 1, 1, 2))):
            i = rng.randrange(len(cells))
            fld = by_column.get(header[i], "")
            cells[i] = rng.choice(_BAD.get(fld, ["", "?"]))
        out.append((loc, cells, problems))
    # a row twice (learned then looked up), a short row, and an unreadable one
    short = Problem(out[4][0], "", 2, "row has too few fields")
    out += [
        out[3],
        (out[4][0], out[4][1][:-2], [short]),
        ("x row 9", None, [Problem("x row 9", "", "", "unreadable")]),
    ]
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("country", ["DE", "CN"])
def test_broken_rows_get_the_full_checks_problems(tmp_path: Path, country: str, seed: int) -> None:
    generate(country, 1200, seed, tmp_path)
    mapping, header, rows = _rows(tmp_path)
    rows = _broken(rows, header, mapping, seed)
    expected, got, staged = _both(mapping, header, rows, batch=37)
    assert got == expected
    assert staged > 100
    problems = [p for _, issues, _ in got for p in issues or ()]
    assert {p.field for p in problems} >= {
        mapping.columns["sample_type"],
        mapping.columns["age"],
        mapping.columns["date"],
    }


@pytest.mark.parametrize("seed", range(3))
def test_ages_from_birth_dates_and_unmapped_fields(tmp_path: Path, seed: int) -> None:
    """A mapping with a birth column instead of the age and no donor or storage column:
    the age comes from birth and collection dates, unmapped fields from the empty cell."""
    generate("DE", 800, seed, tmp_path)
    mapping, header, rows = _rows(tmp_path)
    rng = random.Random(seed)
    columns = dict(mapping.columns)
    age_column = columns.pop("age")
    columns["birth"] = age_column
    del columns["donor_id"], columns["storage_temperature"]
    mapping = Mapping(**{**mapping.__dict__, "columns": columns})
    at = header.index(age_column)
    births = ["1950-06-15", "1950", "15.06.1950", "2010-02-28", "1900-01-01", "", " 1971-12-31 "]
    rows = [(loc, [*c[:at], rng.choice(births), *c[at + 1 :]], p) for loc, c, p in rows]
    rows = _broken(rows, header, mapping, seed, birth=True)
    expected, got, staged = _both(mapping, header, rows, batch=29)
    assert got == expected
    assert staged > 100
    ages = {s[7] for s, _, _ in got if s is not None}
    assert None in ages and len(ages) > 20  # from birth dates, and none without one


def test_files_with_tables_on_ids_or_dates_take_the_full_check(tmp_path: Path) -> None:
    generate("IT", 50, 1, tmp_path)
    mapping, header, _ = _rows(tmp_path)
    assert tabular.SeenCells.plan(mapping, header, 2026) is not None
    for fld, how in (
        ("date", {"values": {"date": {"x": "2019"}}}),
        ("local_id", {"fixed": {"local_id": "S1"}}),
        ("age", {"values": {"age": {"old": "90"}}}),
    ):
        changed = Mapping(**{**mapping.__dict__, **how})
        assert tabular.SeenCells.plan(changed, header, 2026) is None, fld
    no_ids = Mapping(
        **{
            **mapping.__dict__,
            "columns": {k: v for k, v in mapping.columns.items() if k != "local_id"},
        }
    )
    assert tabular.SeenCells.plan(no_ids, header, 2026) is None
