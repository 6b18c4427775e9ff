"""biobank-catalogue: enrol, retire, clear, revoke, harvest, serve, status, backup, restore."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from catalogue.settings import Settings
from protocol.cli import add_version_option, config_exit, settings_message
from protocol.errors import BiobankError, ConfigError, PolicyError

__all__ = ["app", "main"]

if TYPE_CHECKING:
    from catalogue.context import Context

app = typer.Typer(
    help="Federated biobank catalogue: enrol nodes, harvest and verify their "
    "logs, serve the combined search.",
    no_args_is_help=True,
)


# Only a reverse proxy on this host may say who the client is (X-Forwarded-For/-Proto).
LOOPBACK = "127.0.0.1,::1"
PROXY_HELP = "addresses whose X-Forwarded-For/-Proto headers are believed (the reverse proxy)"


add_version_option(app, "biobank-catalogue")


def _settings() -> Settings:
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:  # main() prints it as one line, exit status 2
        raise ConfigError(settings_message(exc.errors(), "CATALOGUE_")) from exc


@contextmanager
def _context() -> Iterator[Context]:
    """The catalogue's engine, key and own log; the engine is closed on the way out."""
    from catalogue.context import build_context

    ctx = build_context(_settings())
    try:
        yield ctx
    finally:
        ctx.engine.dispose()


LogFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        help="text or json: one JSON object a line (default: CATALOGUE_LOG_FORMAT, else text)",
    ),
]


def _log_format(option: str | None) -> str:
    """The log format asked for: --log-format, else CATALOGUE_LOG_FORMAT, else text."""
    from service.logs import checked_format

    if option is None:
        return _settings().log_format
    try:
        return checked_format(option, "CATALOGUE_LOG_FORMAT")
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _fail(exc: BiobankError) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1)


@app.command()
def enrol(
    url: str,
    key: Annotated[
        str, typer.Option("--key", help="the node's verifier key, obtained out of band")
    ],
) -> None:
    """Enrol the node at URL after checking KEY against its descriptor."""
    from catalogue.enrol import enrol as do_enrol
    from catalogue.enrol import fetch_descriptor

    with _context() as ctx:
        try:
            s = ctx.settings
            descriptor = asyncio.run(
                fetch_descriptor(url, timeout=s.request_timeout, ca_bundle=s.ca_bundle)
            )
            node = do_enrol(ctx.engine, ctx.key, url, key, descriptor)
        except BiobankError as exc:
            _fail(exc)
        from catalogue.notify import register_with_node

        said = asyncio.run(
            register_with_node(url, s.public_url, timeout=s.request_timeout, ca_bundle=s.ca_bundle)
        )
    typer.echo(f"enrolled {node['origin']} ({node['country']}) at {url}")
    typer.echo(f"notifications: {said}")


@app.command()
def retire(origin: str) -> None:
    """End the participation of the node ORIGIN."""
    from catalogue.enrol import retire as do_retire

    with _context() as ctx:
        try:
            do_retire(ctx.engine, ctx.key, origin)
        except BiobankError as exc:
            _fail(exc)
    typer.echo(f"retired {origin}")


@app.command()
def clear(origin: str) -> None:
    """Resume a node halted after rollback or equivocation (after investigating)."""
    from catalogue.enrol import clear_halt

    with _context() as ctx:
        try:
            n = clear_halt(ctx.engine, origin)
        except BiobankError as exc:
            _fail(exc)
    typer.echo(f"{origin} active again ({n} alert(s) cleared)")


@app.command()
def revoke(
    origin: str,
    key: Annotated[
        str, typer.Option("--key", help="the node's NEW verifier key, obtained out of band")
    ],
    from_size: Annotated[
        int | None,
        typer.Option(
            "--from-size",
            help="refuse the old key for checkpoints larger than this "
            "(default: the size the catalogue last verified)",
        ),
    ] = None,
) -> None:
    """Revoke the key in force of node ORIGIN (compromised or lost): KEY replaces it."""
    from catalogue.harvest.keys import revoke as do_revoke

    with _context() as ctx:
        try:
            done = do_revoke(ctx.engine, ctx.key, origin, key, from_size)
        except BiobankError as exc:
            _fail(exc)
    short = "+".join(done["revoked_key"].split("+")[:2])
    typer.echo(
        f"revoked {short} of {origin} for sizes > {done['from_size']}; "
        f"new key in force (catalogue leaf {done['catalogue_leaf']}"
        + (f", {done['alerts_cleared']} alert(s) cleared)" if done["alerts_cleared"] else ")")
    )


@app.command()
def harvest(log_format: LogFormatOpt = None) -> None:
    """Harvest every active node once; exit 1 if any node failed."""
    import logging

    from catalogue.harvest import Harvester
    from service.logs import configure

    fmt = _log_format(log_format)
    configure(fmt)
    with _context() as ctx:
        outcomes = Harvester(
            engine=ctx.engine,
            settings=ctx.settings.model_copy(update={"log_format": fmt}),  # for its workers
            key=ctx.key,
            inline=True,
        ).run()
    if fmt == "json":  # each outcome one log record on stderr, as everything else
        log = logging.getLogger("catalogue.harvest")
        for o in outcomes:
            log.log(
                logging.INFO if o.ok else logging.ERROR,
                f"{o.origin}: ok" if o.ok else f"{o.origin}: {'halted' if o.halted else 'failed'}",
                extra={
                    "node": o.origin,
                    "ok": o.ok,
                    "size": o.size,
                    "added": o.added,
                    "error": o.error,
                    "halted": o.halted,
                },
            )
    for o in outcomes if fmt == "text" else []:
        if o.ok:
            typer.echo(f"{o.origin}: ok, size {o.size} (+{o.added})")
        else:
            typer.echo(f"{o.origin}: {'HALTED' if o.halted else 'failed'}: {o.error}", err=True)
    if any(not o.ok for o in outcomes):
        raise typer.Exit(1)


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Per node: state, tree size, lag, last harvest, staleness, alerts, rejections."""
    from sqlalchemy import select

    from catalogue.cluster import harvest_leader
    from catalogue.models import alerts, nodes
    from catalogue.status import list_status

    with _context() as ctx, ctx.engine.connect() as conn:
        rows = list_status(conn, ctx.settings.stale_after, full_errors=True)
        leader = harvest_leader(conn)
        postgres = conn.dialect.name == "postgresql"
        open_alerts = conn.execute(
            select(nodes.c.origin, alerts.c.kind, alerts.c.message)
            .join(nodes, nodes.c.id == alerts.c.node_id)
            .where(alerts.c.cleared_at.is_(None))
        ).all()
    if as_json:
        out = {"nodes": rows, "alerts": [list(a) for a in open_alerts]}
        if postgres:
            out["harvest_leader"] = leader
        typer.echo(json.dumps(out, indent=2))
        return
    if postgres:
        typer.echo(
            f"harvest leader: {leader['name']} (database session {leader['pid']}, since "
            f"{leader['since']})"
            if leader
            else "harvest leader: none (no `biobank-catalogue serve` holds the harvest lock)"
        )
    for r in rows:
        flags = " STALE" if r["stale"] else ""
        typer.echo(
            f"{r['origin']}  {r['state']}{flags}  size {r['tree_size']}  "
            f"lag {r['lag'] if r['lag'] is not None else '?'}  last ok "
            f"{r['last_success_at'] or 'never'}  alerts {r['alerts']}  rejections "
            f"{r['rejections']}" + (f"\n  last error: {r['last_error']}" if r["last_error"] else "")
        )
    for origin, kind, message in open_alerts:
        typer.echo(f"ALERT {origin}: {kind}: {message}")
    if open_alerts:
        raise typer.Exit(3)


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    harvest: Annotated[
        bool, typer.Option(help="harvest every CATALOGUE_HARVEST_INTERVAL seconds")
    ] = True,
    log_format: LogFormatOpt = None,
    forwarded_allow_ips: Annotated[str, typer.Option(help=PROXY_HELP)] = LOOPBACK,
) -> None:
    """Serve the API and web page; admin routes need CATALOGUE_ADMIN_TOKEN."""
    import logging

    from catalogue import listen
    from catalogue.app import create_app
    from service.logs import configure, log_config

    fmt = _log_format(log_format)
    configure(fmt)
    settings = _settings().model_copy(update={"log_format": fmt})  # its harvest workers too
    if not harvest:  # a server that does not harvest does not act on notifications either
        settings = settings.model_copy(update={"notify": False})
    application = create_app(settings, schedule_harvest=harvest)  # configuration errors first
    if not settings.admin_token:
        logging.getLogger("catalogue").warning(
            "CATALOGUE_ADMIN_TOKEN is not set; the admin API answers 503"
        )
    listen.run(  # with CATALOGUE_ADMIN_LISTEN, /v1/admin on its own listener too
        application,
        host=host,
        port=port,
        log_config=log_config(fmt),
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
    )


@app.command()
def backup(dest: Annotated[Path, typer.Argument(help="new backup file")]) -> None:
    """Back up the database (SQLite online backup, or pg_dump -Fc); never the signing key."""
    from catalogue.backup import backup as do_backup

    settings = _settings()
    try:
        how = do_backup(settings, dest)
    except BiobankError as exc:
        _fail(exc)
    typer.echo(f"backup written to {dest} ({how})")
    typer.echo(
        f"NOT in the backup (keep it in your key safe): {settings.home / 'catalogue.key'}",
        err=True,
    )


@app.command()
def restore(
    source: Annotated[Path, typer.Argument(help="a file made by 'biobank-catalogue backup'")],
    replace: Annotated[
        bool, typer.Option(help="overwrite a non-empty database (stop the catalogue first)")
    ] = False,
) -> None:
    """Restore a backup into CATALOGUE_DATABASE_URL (the key must already be in CATALOGUE_HOME)."""
    from catalogue.backup import restore as do_restore

    try:
        do_restore(_settings(), source, replace=replace)
    except BiobankError as exc:
        _fail(exc)
    typer.echo(f"restored {source}; its log is signed by the key in CATALOGUE_HOME")


def main(argv: list[str] | None = None) -> Any:
    """Console script entry point: a configuration mistake is one line, exit status 2."""
    try:
        return app(args=argv if argv is not None else sys.argv[1:], prog_name="biobank-catalogue")
    except (ConfigError, PolicyError) as exc:
        config_exit(exc.message)
