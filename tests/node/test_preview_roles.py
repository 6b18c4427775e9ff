"""``preview`` checks every role: biobank and collection files as well as samples; it
counts rows (not problems) and exits non-zero when the import would fail (issue 15 item 7)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from node.cli import app
from node.importing.importer import run_import
from tests.node.node_support import make_home, sample_rows, write_csv, write_mapping

DEMO = "molgenis-emx2-directory/data/biobank-directory/demo"
OLD = "bbmri-eric-directory-2018/sample-data/bbmri_eric.xlsx.sheets"


def _preview(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["preview", *args])
    return result.exit_code, result.stdout, result.stderr


def _data_rows(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as fh:
        return sum(1 for row in csv.reader(fh) if any(c.strip() for c in row)) - 1


def test_preview_of_directory_biobanks_and_collections_counts_their_records(
    tmp_path: Path, external: Path
) -> None:
    make_home(tmp_path)
    src = external / DEMO
    files = [src / "Biobanks.csv", src / "Collections.csv", src / "Persons.csv"]
    code, out, _ = _preview(*map(str, files), "--home", str(tmp_path / "home"), "--json")
    assert code == 0, out
    got = json.loads(out)
    assert got["records"] == {"biobank": 3, "collection": 3}
    assert got["problems"] == 0 and got["samples"] == 0
    assert got["rows"] >= _data_rows(src / "Biobanks.csv") + _data_rows(src / "Collections.csv")
    code, text, _ = _preview(*map(str, files), "--home", str(tmp_path / "home"))
    assert code == 0 and "3 biobank record(s), 3 collection record(s)" in text
    assert "0 of 0" not in text


def test_preview_of_a_real_export_that_would_fail_exits_non_zero_and_counts_rows(
    tmp_path: Path, external: Path
) -> None:
    home, _ = make_home(tmp_path)
    files = [
        external / OLD / "eu_bbmri_eric_biobanks.csv",
        external / OLD / "eu_bbmri_eric_collections.csv",
    ]
    code, out, err = _preview(*map(str, files), "--home", str(home.path), "--json")
    assert code == 1
    got = json.loads(out)
    strict = run_import(home, files, fmt="directory")
    assert not strict.applied  # the preview's verdict is the import's
    broken_rows = {p.location for p in strict.problems}
    assert got["problems"] == len(broken_rows)
    assert got["problems"] <= got["rows"]
    assert len(got["problem_list"]) == len(strict.problems)
    assert sum(got["reasons"].values()) == len(strict.problems)
    assert "row(s) have problems: the import would fail" in err


def test_preview_of_samples_counts_rows_with_several_problems_once(tmp_path: Path) -> None:
    make_home(tmp_path)
    mapping = write_mapping(tmp_path / "map.toml")
    rows = sample_rows(6)
    rows[1][2], rows[1][4] = "Erdnussbutter", "Zzz"  # two problems in one row ("?" is "no value")
    rows[3][5] = "old"  # one problem
    export = write_csv(tmp_path / "samples.csv", rows)
    args = [str(export), "--home", str(tmp_path / "home"), "--mapping", str(mapping)]
    code, out, _ = _preview(*args, "--json")
    got = json.loads(out)
    assert code == 1
    assert len(got["problem_list"]) == 3 and got["problems"] == 2
    assert got["rows"] == 6 and got["samples"] == 4
    code, text, _ = _preview(*args)
    assert code == 1 and "6 row(s) read" in text and "2 row(s) with problems" in text
    assert "samples.csv row 3" in text and "samples.csv row 5" in text


def test_a_clean_sample_preview_exits_zero(tmp_path: Path) -> None:
    make_home(tmp_path)
    mapping = write_mapping(tmp_path / "map.toml")
    export = write_csv(tmp_path / "samples.csv", sample_rows(4))
    code, out, _ = _preview(
        str(export), "--home", str(tmp_path / "home"), "--mapping", str(mapping), "--json"
    )
    assert code == 0 and json.loads(out)["samples"] == 4
