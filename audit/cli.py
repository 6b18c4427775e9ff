"""biobank-audit: `verify` a catalogue (live or from a bundle); `fetch` a bundle for offline use."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from audit.checks import AuditOptions, run_audit
from audit.fetcher import BundleSource, HttpSource, RecordingSource, Source
from audit.parallel import auto_workers
from audit.state import AuditState
from protocol.cli import add_version_option, config_exit
from protocol.errors import BiobankError, ConfigError, PolicyError
from protocol.note import Verifier

app = typer.Typer(
    help="Verify a biobank catalogue and its nodes from published material alone.",
    no_args_is_help=True,
    add_completion=False,
)

CatalogueOpt = Annotated[str | None, typer.Option("--catalogue", help="catalogue base URL")]
NodeDirectOpt = Annotated[
    bool,
    typer.Option(
        "--node-direct", help="also fetch each node's own checkpoint and compare with the mirror"
    ),
]
KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--key",
        help="the catalogue verifier key obtained out of band (else: state file, else "
        "trust the descriptor on first use)",
    ),
]
CaBundleOpt = Annotated[
    Path | None,
    typer.Option(
        "--ca-bundle",
        help="CA certificates (PEM) the catalogue's and nodes' HTTPS certificates must chain "
        "to (default: the system store); verification cannot be switched off",
    ),
]


add_version_option(app, "biobank-audit")


def _check_options(catalogue: str | None, key: str | None) -> None:
    """Refuse a malformed --key or --catalogue before anything is fetched (ConfigError)."""
    if catalogue is not None and not catalogue.startswith(("http://", "https://")):
        raise ConfigError(f"--catalogue {catalogue!r}: give the catalogue's http(s):// base URL")
    if key is not None:
        try:
            Verifier.from_key(key)
        except ConfigError as exc:
            raise ConfigError(
                f"--key: {exc.message}; give the catalogue's verifier key as obtained out of band"
            ) from exc


@app.command()
def verify(
    catalogue: CatalogueOpt = None,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="bundle directory from `fetch` (no network)")
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="state file: the last verified catalogue checkpoint"),
    ] = None,
    node_direct: NodeDirectOpt = False,
    key: KeyOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable report")] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="processes fetching and checking large node logs (default: 2 on a "
            "multi-core machine; 1: no worker processes)",
        ),
    ] = None,
    ca_bundle: CaBundleOpt = None,
) -> None:
    """Run every check; exit 0 only when all hold (the state file is updated only then)."""
    err = Console(stderr=True)
    if (catalogue is None) == (bundle is None):
        err.print("error: give exactly one of --catalogue URL or --bundle DIR")
        raise typer.Exit(2)
    try:
        _check_options(catalogue, key)
        previous = AuditState.load(state) if state else None
        source: Source = (
            BundleSource(bundle)
            if bundle
            else HttpSource(catalogue=str(catalogue), ca_bundle=ca_bundle)
        )
    except BiobankError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    progress = None if as_json else (lambda msg: err.print(f"[dim]{msg}[/]"))
    try:
        report, new_state = run_audit(
            source,
            state=previous,
            progress=progress,
            options=AuditOptions(
                node_direct=node_direct, pinned_key=key, workers=workers or auto_workers()
            ),
        )
    finally:
        source.close()
    if state and new_state:
        new_state.save(state)
        report.facts["state file"] = f"{state} updated to size {new_state.size}"
    elif state:
        report.facts["state file"] = f"{state} left unchanged"
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        report.render(Console())
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def fetch(
    directory: Annotated[Path, typer.Argument(help="bundle directory to write")],
    catalogue: CatalogueOpt = None,
    node_direct: NodeDirectOpt = False,
    key: KeyOpt = None,
    ca_bundle: CaBundleOpt = None,
) -> None:
    """Save everything `verify --bundle` needs: catalogue log, node mirrors, search totals."""
    err = Console(stderr=True)
    if catalogue is None:
        err.print("error: --catalogue URL is required")
        raise typer.Exit(2)
    _check_options(catalogue, key)
    try:
        source = RecordingSource(HttpSource(catalogue=catalogue, ca_bundle=ca_bundle), directory)
    except BiobankError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    try:
        report, _ = run_audit(
            source, state=None, options=AuditOptions(node_direct=node_direct, pinned_key=key)
        )
    finally:
        source.close()
    sizes = report.facts.get("catalogue log size", "?")
    err.print(
        f"saved bundle {directory}: catalogue log size {sizes}, "
        f"{report.facts.get('nodes audited', 0)} node mirror(s); "
        f"run `biobank-audit verify --bundle {directory}` to verify it"
    )


def main() -> None:
    """Console script entry point: a configuration mistake is one line, exit status 2."""
    try:
        app(prog_name="biobank-audit")
    except (ConfigError, PolicyError) as exc:
        config_exit(exc.message)


if __name__ == "__main__":
    main()
