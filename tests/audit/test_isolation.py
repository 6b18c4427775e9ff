"""The auditor imports only the protocol package (never node or catalogue); CLI misuse is clear."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from audit.cli import app
from tests.support import REPO


def test_audit_imports_neither_node_nor_catalogue() -> None:
    code = (
        "import sys, audit.cli, audit.checks, audit.fetcher, audit.report, audit.state; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('node', 'catalogue')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "[]"


def test_verify_needs_exactly_one_source(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["verify"])
    assert result.exit_code == 2
    assert "exactly one of --catalogue URL or --bundle DIR" in result.output


def test_unreachable_catalogue_fails_with_the_reason() -> None:
    from federation.servers import free_port

    result = CliRunner().invoke(
        app, ["verify", "--catalogue", f"http://127.0.0.1:{free_port()}", "--json"]
    )
    assert result.exit_code == 1
    assert "FetchError" in result.stdout and "catalogue-checkpoint" in result.stdout


def test_malformed_state_file_is_named(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text("{not json")
    result = CliRunner().invoke(app, ["verify", "--bundle", str(tmp_path), "--state", str(state)])
    assert result.exit_code == 2
    assert f"--state {state}: unreadable or malformed" in result.output


def test_missing_bundle_is_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["verify", "--bundle", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "no readable bundle.json" in result.output.replace("\n", "")
