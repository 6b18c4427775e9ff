"""Import roles: given (--kind, FILE:ROLE, the mapping) or inferred and said, never guessed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.cli import app
from node.importing.importer import parse_file_role, run_import
from node.importing.mapping import Mapping
from protocol.errors import ConfigError
from tests.node.node_support import make_home, sample_rows, write_csv, write_mapping

DEMO = "molgenis-emx2-directory/data/biobank-directory/demo"
runner = CliRunner()


def _demo(external: Path, tmp_path: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        out.append(Path(shutil.copy(external / DEMO / name, tmp_path / name)))
    return out


def test_parse_file_role() -> None:
    assert parse_file_role("a/Biobanks.csv:biobanks") == (Path("a/Biobanks.csv"), "biobank")
    assert parse_file_role("x.csv:Collections") == (Path("x.csv"), "collection")
    assert parse_file_role("p.csv:contacts") == (Path("p.csv"), "persons")
    assert parse_file_role("s.csv:samples") == (Path("s.csv"), "sample")
    assert parse_file_role("plain.csv") == (Path("plain.csv"), None)
    with pytest.raises(ConfigError, match="unknown role 'networks'"):
        parse_file_role("n.csv:networks")


def test_a_file_name_holding_a_colon_is_a_file_not_a_role(tmp_path: Path) -> None:
    odd = tmp_path / "export:2024.csv"
    odd.write_text("id\n", encoding="utf-8")
    assert parse_file_role(str(odd)) == (odd, None)


def test_inferred_roles_are_said_with_their_reason(tmp_path: Path, external: Path) -> None:
    home, _ = make_home(tmp_path)
    files = _demo(external, tmp_path, "Biobanks.csv", "Collections.csv", "Persons.csv")
    report = run_import(home, files)
    assert report.published == {"biobank": 3, "collection": 3}
    said = dict(line.split(": ", 1) for line in report.inferred)
    assert said["Biobanks.csv"].startswith("read as Directory biobank table because")
    assert "'biobank' column" in said["Collections.csv"]
    assert "email" in said["Persons.csv"]


def test_given_roles_are_not_inferred(tmp_path: Path, external: Path) -> None:
    home, _ = make_home(tmp_path)
    b, c, p = _demo(external, tmp_path, "Biobanks.csv", "Collections.csv", "Persons.csv")
    report = run_import(home, [b, c, p], roles={b: "biobank", c: "collection", p: "persons"})
    assert report.inferred == [] and report.published == {"biobank": 3, "collection": 3}


def test_a_file_fitting_no_role_is_an_error_not_a_guess(tmp_path: Path, external: Path) -> None:
    home, _ = make_home(tmp_path)
    (networks,) = _demo(external, tmp_path, "Networks.csv")
    with pytest.raises(ConfigError, match="Networks.csv: fits no Directory role"):
        run_import(home, [networks])
    # given a role, it is read as that role (and its rows are checked as such)
    report = run_import(home, [networks], roles={networks: "biobank"})
    assert report.inferred == [] and not report.applied
    assert any(p.field == "country" for p in report.problems)  # in the operator's words


def test_a_lims_export_without_a_mapping_is_pointed_to_mapping_init(tmp_path: Path) -> None:
    """A new operator's LIMS CSV without --mapping: the error says how to get a mapping."""
    home, _ = make_home(tmp_path)
    lims = tmp_path / "lims.csv"
    lims.write_text("Probe ID,Patient,Material\nS1,P1,Serum\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="'biobank-node mapping init lims.csv' writes a first"):
        run_import(home, [lims])


def test_a_role_that_contradicts_the_mapping_is_refused(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "m.toml"))
    csv = write_csv(tmp_path / "s.csv", sample_rows(4))
    with pytest.raises(ConfigError, match="role biobank but the mapping is for sample rows"):
        run_import(home, [csv], mapping=mapping, roles={csv: "biobank"})
    with pytest.raises(ConfigError, match="sample files need --mapping"):
        run_import(home, [csv], roles={csv: "sample"})
    assert run_import(home, [csv], mapping=mapping, roles={csv: "sample"}).applied


def test_cli_prints_the_inferred_roles_first(tmp_path: Path, external: Path) -> None:
    make_home(tmp_path)
    files = _demo(external, tmp_path, "Biobanks.csv", "Collections.csv", "Persons.csv")
    home = str(tmp_path / "home")
    result = runner.invoke(app, ["import", "--home", home, *map(str, files)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["role"] * 3
    assert "Collections.csv: read as Directory collection table" in result.output


def test_cli_file_role_and_kind(tmp_path: Path, external: Path) -> None:
    make_home(tmp_path)
    b, c, p = _demo(external, tmp_path, "Biobanks.csv", "Collections.csv", "Persons.csv")
    home = str(tmp_path / "home")
    args = ["import", "--home", home, f"{b}:biobanks", f"{c}:collections", f"{p}:persons"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "role:" not in result.output and "'collection': 3" in result.output
    # --kind gives every file the same role: a persons table read as biobanks has problems
    wrong = runner.invoke(app, ["import", "--home", home, "--kind", "biobanks", str(p)])
    assert wrong.exit_code == 1 and "nothing was published" in wrong.output
    bad = runner.invoke(app, ["import", "--home", home, "--kind", "networks", str(b)])
    assert bad.exit_code != 0 and "--kind 'networks'" in bad.output


def test_a_collection_whose_biobank_is_not_published_is_a_problem(
    tmp_path: Path, external: Path
) -> None:
    home, _ = make_home(tmp_path)
    b, c, p = _demo(external, tmp_path, "Biobanks.csv", "Collections.csv", "Persons.csv")
    alone = run_import(home, [c, p])
    assert not alone.applied and alone.published == {}
    reasons = {p.reason for p in alone.problems}
    assert any("is neither in this import nor published" in r for r in reasons)
    assert {p.field for p in alone.problems} == {"biobank"}
    assert len(alone.problems) == 3
    # once the biobanks are published, the collections file imports on its own
    assert run_import(home, [b, p]).published == {"biobank": 3}
    assert run_import(home, [c, p]).published == {"collection": 3}


def test_directory_ids_print_as_written_never_as_emoji(tmp_path: Path, external: Path) -> None:
    """``bbmri-eric:ID:...`` holds ``:ID:``, an emoji code to rich: previews, roles and
    summaries print the id as written."""
    home, _ = make_home(tmp_path, records=False)
    _b, c, p = _demo(external, tmp_path, "Biobanks.csv", "Collections.csv", "Persons.csv")
    shown = runner.invoke(app, ["preview", "--home", str(home.path), str(c), str(p)])
    assert shown.exit_code == 1
    assert "the biobank 'bbmri-eric:ID:DE_biobank1' of this collection" in shown.output
    assert "\U0001f194" not in shown.output
    done = runner.invoke(app, ["import", "--home", str(home.path), str(c), str(p)])
    assert done.exit_code == 1 and "\U0001f194" not in done.output
    assert "bbmri-eric:ID:NL_biobank2" in done.output
