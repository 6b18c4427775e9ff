"""``biobank-node preview FILE``: a dry run of the import that shows what the policy would do.

Parses the files with the importer's readers into a staging table in memory, applies the
publishing policy, and prints what would be published, generalised (and how) and held
back (per reason). Nothing is written to the node. Register with one line in node/cli.py:
``app.command("preview")(preview_command)``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from node.importing.codes import Codes
from node.importing.importer import read_files
from node.importing.staging import Staging
from node.policy import Policy
from node.privacy import PrivacyReport, apply
from protocol.errors import BiobankError


def preview(
    files: list[Path], policy: Policy, *, fmt: str | None = None, mapping_path: Path | None = None
) -> tuple[PrivacyReport, int]:
    """Stage ``files`` in memory and apply ``policy``; return the report and problem count."""
    for path in files:
        if not path.is_file():
            raise typer.BadParameter(f"{path}: no such file")
    mapping = None
    if mapping_path is not None:
        from node.importing.mapping import Mapping

        mapping = Mapping.load(mapping_path)
    conn = sqlite3.connect(":memory:")
    try:
        stage = Staging(conn, "staging", None)
        read_files(files, fmt, mapping, stage, Codes.default())
        stage.duplicates()
        return apply(conn, "staging", policy), len(stage.problems)
    finally:
        conn.close()


def preview_command(
    files: Annotated[list[Path], typer.Argument(help="export files to preview")],
    home: Annotated[
        Path, typer.Option("--home", envvar="NODE_HOME", help="node home (for its policy.toml)")
    ] = Path("node-home"),
    policy_file: Annotated[
        Path | None, typer.Option("--policy", help="policy file to try instead of HOME/policy.toml")
    ] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="csv, tsv, fhir or directory")] = None,
    mapping: Annotated[
        Path | None, typer.Option("--mapping", help="column mapping (CSV/TSV)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Show what an import of FILES would publish, generalise and hold back; change nothing."""
    console = Console()
    try:
        policy = Policy.load(policy_file or home / "policy.toml")
        report, problems = preview(files, policy, fmt=fmt, mapping_path=mapping)
    except BiobankError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(
            json.dumps(
                {"policy": policy.summary(), "privacy": report.to_dict(), "problems": problems},
                sort_keys=True,
            )
        )
        return
    report.render(console)
    if problems:
        console.print(
            f"{problems} row(s) have problems and would not be imported; "
            "run 'biobank-node import' for the details",
            markup=False,
        )
