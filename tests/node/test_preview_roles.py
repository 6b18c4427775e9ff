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


def test_preview_takes_file_roles_and_kind_and_says_what_it_inferred(
    tmp_path: Path, external: Path
) -> None:
    """``preview`` reads ``FILE:ROLE`` and ``--kind`` as ``import`` does, and prints each
    inferred role (and why) before anything else."""
    make_home(tmp_path)
    src = external / DEMO
    args = [f"{src / 'Collections.csv'}:collections", str(src / "Persons.csv")]
    result = CliRunner().invoke(app, ["preview", *args, "--home", str(tmp_path / "home")])
    # the collections' biobanks are neither imported nor published: the import would fail
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "role: Persons.csv: read as Directory persons table because it has email and "
        "first_name/last_name columns"
    )
    assert "Collections.csv: read as" not in result.stderr  # given, not inferred
    assert "3 row(s) with problems" in result.stdout
    # a role that fits no reader is refused as the import refuses it
    wrong = CliRunner().invoke(
        app, ["preview", str(src / "Persons.csv"), "--kind", "samples", "--home", "x"]
    )
    assert wrong.exit_code == 2 and "sample files need --mapping" in wrong.stderr
    bad_kind = CliRunner().invoke(app, ["preview", str(src / "Persons.csv"), "--kind", "donors"])
    assert bad_kind.exit_code == 2 and "--kind 'donors': use one of" in bad_kind.stderr


def test_preview_before_init_uses_the_default_policy(tmp_path: Path, external: Path) -> None:
    """An operator trying a mapping before ``init`` gets a preview, not a missing policy."""
    src = external / DEMO
    files = [str(src / n) for n in ("Biobanks.csv", "Collections.csv", "Persons.csv")]
    code, out, err = _preview(*files, "--home", str(tmp_path / "no-node-yet"), "--json")
    assert code == 0, err
    assert "previewing with the default policy" in err
    got = json.loads(out)
    assert got["records"] == {"biobank": 3, "collection": 3} and got["policy"]["k"] == 10
    # a home that exists but lost its policy is still an error (never a silent default)
    (tmp_path / "broken").mkdir()
    code, _, err = _preview(*files, "--home", str(tmp_path / "broken"))
    assert code == 2 and "cannot read the policy file" in err


def test_preview_lists_what_it_leaves_out_on_purpose(tmp_path: Path, external: Path) -> None:
    """'Not available' codes and codes outside our lists are listed as ``ignored:`` by
    preview as by the import."""
    from tests.node.test_directory import national_export

    files = national_export(external, tmp_path)
    code, out, err = _preview(*map(str, files), "--home", str(tmp_path / "none"))
    assert code == 0, out + err
    assert "ignored: collection diagnoses: 'not available' code 'NAV_DIAG' left out" in out


def test_an_import_of_records_alone_prints_no_empty_privacy_table(
    tmp_path: Path, external: Path
) -> None:
    make_home(tmp_path, records=False)
    src = external / DEMO
    files = [str(src / n) for n in ("Biobanks.csv", "Collections.csv", "Persons.csv")]
    result = CliRunner().invoke(app, ["import", *files, "--home", str(tmp_path / "home")])
    assert result.exit_code == 0, result.stderr
    assert "published {'biobank': 3, 'collection': 3}" in result.stderr
    assert "0 of 0 samples" not in result.stderr and "Privacy" not in result.stderr
