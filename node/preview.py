"""``biobank-node preview FILE``: a dry run of the import that shows what the policy would do.

Copies the node's holding (when the home has one) into a database in memory, merges the
files into it with the importer's readers, applies the publishing policy over the holding
and prints the groups that would be published (attributes, counts or bounds), what is
generalised (and how), what is held back (per reason) and whether the change set would
go out or wait. Nothing is written to the node. Registered in node/cli.py.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from node import groups, store
from node.groups import Pending
from node.home import DB, SECRET
from node.importing import wording
from node.importing.codes import Codes
from node.importing.importer import check_references, merge, read_files
from node.importing.staging import Staging
from node.policy import Policy
from node.privacy import PrivacyReport
from node.pseudonym import Pseudonymiser
from protocol.errors import BiobankError, ConfigError, Problem

SHOWN = 40  # groups listed in the text output (--json lists all)


@dataclass
class Preview:
    """What an import would do: privacy outcome, groups, the change set, and per role the
    rows read, the records and samples that would be staged, the rows with problems."""

    privacy: PrivacyReport
    problems: int  # rows with problems (a row with three problems counts once)
    groups: list[dict[str, Any]]
    pending: Pending
    rows: int = 0
    records: dict[str, int] = field(default_factory=dict)  # valid biobanks, collections
    samples: int = 0  # valid sample rows
    problem_list: list[Problem] = field(default_factory=list)
    inferred: list[str] = field(default_factory=list)  # each inferred role and why
    ignored: dict[str, int] = field(default_factory=dict)  # what was left out on purpose

    def to_dict(self) -> dict[str, Any]:
        return {
            "privacy": self.privacy.to_dict(),
            "problems": self.problems,
            "groups": self.groups,
            "pending": self.pending.to_dict(),
            "rows": self.rows,
            "records": self.records,
            "samples": self.samples,
            "problem_list": [p.to_json() for p in self.problem_list],
            "reasons": dict(wording.summary(self.problem_list)),
            "inferred": self.inferred,
            "ignored": self.ignored,
        }

    def render(self, console: Console) -> None:
        """Rows per role, then (with samples) groups, privacy summary and the change set."""
        valid = (
            ", ".join(f"{n} {kind} record(s)" for kind, n in sorted(self.records.items()))
            or "no biobank or collection records"
        )
        console.print(
            f"{self.rows} row(s) read: {valid} and {self.samples} sample row(s) valid; "
            f"{self.problems} row(s) with problems",
            markup=False,
            soft_wrap=True,
        )
        if not self.samples and not self.groups:
            return
        if not self.groups:
            console.print("no sample group would be published", markup=False)
            self.privacy.render(console)
            console.print(self.pending.message(), markup=False)
            return
        table = Table(title=f"Sample groups after the import ({len(self.groups)})")
        table.add_column("id", no_wrap=True, min_width=30)
        table.add_column("attributes", overflow="fold")
        table.add_column("samples", justify="right")
        table.add_column("donors", justify="right")
        for group in self.groups[:SHOWN]:
            attributes = {
                k: v for k, v in group.items() if k not in ("id", "samples", "donors", "biobank")
            }
            table.add_row(
                group["id"],
                json.dumps(attributes, separators=(",", ":")),
                _count(group["samples"]),
                _count(group["donors"]),
            )
        console.print(table)
        if len(self.groups) > SHOWN:
            console.print(f"... and {len(self.groups) - SHOWN} more groups (--json lists all)")
        self.privacy.render(console)
        console.print(self.pending.message(), markup=False)


def _count(value: Any) -> str:
    return f"< {value['lt']}" if isinstance(value, dict) else str(value)


def preview(
    files: list[Path],
    policy: Policy,
    *,
    fmt: str | None = None,
    mapping_path: Path | None = None,
    home: Path | None = None,
    roles: dict[Path, str] | None = None,
) -> Preview:
    """Merge ``files`` into a copy of the home's holding in memory and apply ``policy``.
    ``roles`` gives files their role as the import's do; the others are inferred
    (``Preview.inferred`` says how and why)."""
    for path in files:
        if not path.is_file():
            raise typer.BadParameter(f"{path}: no such file")
    mapping = None
    if mapping_path is not None:
        from node.importing.mapping import Mapping

        mapping = Mapping.load(mapping_path)
    secret_file = home / SECRET if home is not None else None
    secret = (
        secret_file.read_bytes()
        if secret_file is not None and secret_file.is_file()
        else secrets.token_bytes(32)  # no node here: ids are placeholders
    )
    pseudonyms = Pseudonymiser(secret)
    conn = sqlite3.connect("file::memory:", uri=True, isolation_level=None)
    try:
        store.create_schema(conn)
        if home is not None and (home / DB).is_file():
            conn.execute("ATTACH ? AS src", (f"file:{home / DB}?mode=ro",))
            conn.execute("INSERT INTO holding SELECT * FROM src.holding")
            conn.execute("INSERT INTO erased SELECT * FROM src.erased")
            conn.execute("INSERT INTO records SELECT * FROM src.records")
            conn.execute("DETACH src")
        stage = Staging(conn, "staging", None)
        inferred: list[str] = []
        rows = read_files(files, fmt, mapping, stage, Codes.default(), None, roles, inferred)
        stage.duplicates()
        columns = mapping.columns if mapping is not None and mapping.kind == "sample" else None
        check_references(conn, stage, [], columns)  # as the import does: dangling references
        samples = conn.execute("SELECT count(*) FROM staging").fetchone()[0]
        records = dict(conn.execute("SELECT kind, count(*) FROM others GROUP BY kind"))
        merge(conn, pseudonyms, snapshot=False)
        report = groups.settle(conn, policy, pseudonyms)
        return Preview(
            report,
            wording.rows_with_problems(stage.problems),
            groups.target_groups(conn, policy.k),
            groups.pending(conn, policy.k),
            rows=rows,
            records=records,
            samples=samples,
            problem_list=list(stage.problems),
            inferred=inferred,
            ignored=dict(stage.ignored_counts),
        )
    finally:
        conn.close()


def preview_command(
    files: Annotated[
        list[Path], typer.Argument(help="export files to preview, each optionally as FILE:ROLE")
    ],
    home: Annotated[
        Path, typer.Option("--home", envvar="NODE_HOME", help="node home (for its policy.toml)")
    ] = Path("node-home"),
    policy_file: Annotated[
        Path | None, typer.Option("--policy", help="policy file to try instead of HOME/policy.toml")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv, tsv, xlsx, fhir, beacon or directory")
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind", help="role of every file: biobanks|collections|samples|persons|fhir|beacon"
        ),
    ] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help="mapping file (TOML)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Show the groups an import of FILES would make, what waits; change nothing."""
    from node.importing.importer import ROLES, parse_file_role

    console = Console(emoji=False)  # ":ID:" in Directory ids is no emoji code
    try:
        if kind is not None and kind.strip().lower() not in ROLES:
            raise ConfigError(f"--kind {kind!r}: use one of {', '.join(sorted(ROLES))}")
        roles: dict[Path, str] = {}
        paths: list[Path] = []
        for arg in files:  # FILE:ROLE and --kind as the import takes them
            path, role = parse_file_role(str(arg))
            paths.append(path)
            if role or kind:
                roles[path] = role or ROLES[str(kind).strip().lower()]
        policy_path = policy_file or home / "policy.toml"
        if policy_file is None and not policy_path.exists() and not home.exists():
            # no node yet (trying a mapping before init): the default policy
            typer.echo(
                f"note: no node home at {home}: previewing with the default policy "
                "(biobank-node init writes it to HOME/policy.toml)",
                err=True,
            )
            policy = Policy.from_dict({})
        else:
            policy = Policy.load(policy_path)
        report = preview(paths, policy, fmt=fmt, mapping_path=mapping, home=home, roles=roles)
    except BiobankError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for line in report.inferred:  # before anything else, as the import does
        typer.echo(f"role: {line}", err=True)
    if as_json:
        typer.echo(
            json.dumps(
                {"policy": policy.summary(), **report.to_dict()},
                sort_keys=True,
            )
        )
    else:
        report.render(console)
        for what, count in sorted(report.ignored.items()):
            console.print(
                f"ignored: {what}" + (f" (x{count})" if count > 1 else ""),
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        for problem in report.problem_list:
            console.print(
                f"problem: {wording.line(problem)}", markup=False, highlight=False, soft_wrap=True
            )
        if report.problem_list:
            console.print(f"{len(report.problem_list)} problem(s) by reason:", markup=False)
            for reason, count in wording.summary(report.problem_list):
                console.print(
                    f"  {count:>7}  {reason}", markup=False, highlight=False, soft_wrap=True
                )
    if report.problems:
        typer.echo(
            f"{report.problems} row(s) have problems: the import would fail "
            "(or, with --skip-invalid, leave them out)",
            err=True,
        )
        raise typer.Exit(1)
