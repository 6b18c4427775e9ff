"""Run the auditor the way a person does (its CLI, in-process) and read its JSON report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from audit.cli import app


def audit(*args: str | Path) -> tuple[int, dict[str, Any]]:
    """`biobank-audit verify ... --json`: (exit code, report)."""
    result = CliRunner().invoke(app, ["verify", *map(str, args), "--json"])
    try:
        report = json.loads(result.stdout)
    except ValueError as exc:
        raise AssertionError(f"no JSON report: {result.output}") from exc
    return result.exit_code, report


def check(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["name"] == name)


def failed(report: dict[str, Any]) -> dict[str, list[str]]:
    """Failed checks -> their findings as 'location: reason' lines."""
    return {
        c["name"]: [f"{f['location']}: {f['reason']}" for f in c["findings"]]
        for c in report["checks"]
        if c["failures"]
    }
