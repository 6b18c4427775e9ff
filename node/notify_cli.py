"""``biobank-node notify add|remove|list``: the catalogues told of each new checkpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from node import notify, store
from node.home import Home
from protocol.errors import BiobankError, ConfigError

notify_app = typer.Typer(
    help="Catalogues to tell of each new checkpoint (push, then pull: docs/freshness.md).",
    no_args_is_help=True,
)

HomeOpt = Annotated[Path, typer.Option("--home", envvar="NODE_HOME", help="node home directory")]
UrlArg = Annotated[str, typer.Argument(help="the catalogue's base URL, e.g. https://cat.example")]


def _open(home: Path) -> Home:
    return Home.open(home, restored_ok=True)


def _fail(exc: BiobankError) -> NoReturn:
    typer.echo(f"error: {exc.message}", err=True)
    raise typer.Exit(2)


@notify_app.command("add")
def add(url: UrlArg, home: HomeOpt = Path("node-home")) -> None:
    """Tell this catalogue of every new checkpoint (biobank-node serve sends them)."""
    try:
        base = notify.check_url(url)
        conn = store.connect(_open(home).db_path)
        try:
            added = notify.add_target(conn, base)
        finally:
            conn.close()
    except BiobankError as exc:
        _fail(exc)
    print(f"{'added' if added else 'already listed'}: {notify.notify_url(base)}")


@notify_app.command("remove")
def remove(url: UrlArg, home: HomeOpt = Path("node-home")) -> None:
    """Stop notifying this catalogue (its scheduled harvest still finds every change)."""
    try:
        conn = store.connect(_open(home).db_path)
        try:
            removed = notify.remove_target(conn, url)
        finally:
            conn.close()
        if not removed:
            raise ConfigError(f"{url} is not a notify target (biobank-node notify list)")
    except BiobankError as exc:
        _fail(exc)
    print(f"removed: {notify.check_url(url)}")


@notify_app.command("list")
def list_(
    home: HomeOpt = Path("node-home"),
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every target: delivered, or queued with its failed attempts and next retry."""
    try:
        conn = store.connect(_open(home).db_path)
    except BiobankError as exc:
        _fail(exc)
    try:
        found = notify.targets(conn)
        latest = store.latest_checkpoint(conn)
    finally:
        conn.close()
    size = 0 if latest is None else latest[0]
    if as_json:
        print(json.dumps([t.to_dict(size) for t in found], sort_keys=True))
        return
    if not found:
        print("no notify targets: catalogues find changes at their scheduled harvest")
    now = time.time()
    for target in found:
        print(target.describe(size, now))
