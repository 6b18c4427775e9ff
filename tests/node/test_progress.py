"""The import's progress reports: every phase, in order, adding up to the rows it handled."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from node.cli import app
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from tests.node.node_support import make_home, sample_rows, write_csv, write_mapping


def test_progress_goes_through_staging_then_privacy(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path, k=2)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(12_000, donors=3000)
    rows[-1][4] = "m"  # one donor alone in a class: held back, so not published
    calls: list[tuple[str, int | None]] = []
    starts: list[tuple[str, int | None]] = []
    report = run_import(
        home,
        [write_csv(tmp_path / "a.csv", rows)],
        mapping=mapping,
        progress=lambda phase, n: calls.append((phase, n)),
        phase_start=lambda phase, total: starts.append((phase, total)),
    )
    assert report.published == {"sample-group": 1}
    assert report.privacy.published == 11_999
    phases = [c[0] for c in calls]
    assert phases == sorted(phases, key=("staging", "privacy").index)
    assert starts == [("privacy", 12_000)]
    assert sum(n for p, n in calls if p == "staging") == 12_000
    assert sum(n for p, n in calls if p == "privacy") == 12_000


def test_progress_bar_is_drawn_on_stderr_when_asked(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path, k=2)
    mapping = write_mapping(tmp_path / "map.toml")
    export = write_csv(tmp_path / "a.csv", sample_rows(6000, donors=2000))
    args = ["import", "--home", str(home.path), "--mapping", str(mapping), str(export)]
    quiet = CliRunner().invoke(app, args)
    assert quiet.exit_code == 0, quiet.output
    assert "publishing" not in quiet.stderr and "staging" not in quiet.stderr
    shown = CliRunner().invoke(app, [*args, "--progress"])
    assert shown.exit_code == 0, shown.output
    assert "staging" in shown.stderr and "\x1b[" in shown.stderr  # drawn with terminal codes
    assert "publishing" not in shown.stdout
