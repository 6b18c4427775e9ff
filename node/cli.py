"""``biobank-node``: init, import, preview, publish, withdraw, rotate-key, serve, status,
monitor."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from node import groups, notify, store
from node.home import Home, NodeConfig, init_home
from node.importing.mapping_init import mapping_app
from node.monitor import monitor_command
from node.notify_cli import notify_app
from node.policy import Policy
from node.preview import preview_command
from protocol.cli import add_version_option, config_exit, settings_message
from protocol.errors import BiobankError, ConfigError, PolicyError

app = typer.Typer(
    help="A biobank node: import exports, publish a signed append-only log.",
    no_args_is_help=True,
    add_completion=False,
)
# emoji off: ":ID:" in Directory ids ("bbmri-eric:ID:DE_X") is no emoji code
out = Console(emoji=False)
err = Console(stderr=True, emoji=False)

HomeOpt = Annotated[Path, typer.Option("--home", envvar="NODE_HOME", help="node home directory")]


add_version_option(app, "biobank-node")


def _fail(exc: BiobankError) -> None:
    # soft_wrap: one line per message however narrow the console (a log file: 80 columns)
    err.print(f"[red]error:[/red] {escape(exc.message)}", highlight=False, soft_wrap=True)
    for detail in exc.details:
        err.print(f"  {escape(detail)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def init(
    home: HomeOpt = Path("node-home"),
    origin: Annotated[str, typer.Option(help="log origin, e.g. charite.example/biobank-node")] = "",
    name: Annotated[str, typer.Option(help="node name")] = "",
    country: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2")] = "",
    organisation: Annotated[str, typer.Option(help="operating organisation")] = "",
    contact: Annotated[str, typer.Option(help="functional contact e-mail")] = "",
    url: Annotated[str, typer.Option(help="public base URL of this node")] = "",
) -> None:
    """Create a node home: config, signing key, pseudonym secret, policy, database."""
    missing = [
        n
        for n, v in (
            ("--origin", origin),
            ("--name", name),
            ("--country", country),
            ("--organisation", organisation),
            ("--contact", contact),
        )
        if not v
    ]
    if missing:
        err.print(f"[red]error:[/red] missing {', '.join(missing)}")
        raise typer.Exit(2)
    try:
        vkey = init_home(
            home,
            NodeConfig(
                origin=origin,
                name=name,
                country=country,
                organisation=organisation,
                contact=contact,
                url=url,
            ),
        )
    except BiobankError as exc:
        _fail(exc)
    err.print(f"node home created at {home}; give this verifier key to the catalogue operator:")
    print(vkey)


@app.command("import")
def import_(
    files: Annotated[list[Path], typer.Argument(help="export files, each optionally as FILE:ROLE")],
    home: HomeOpt = Path("node-home"),
    format: Annotated[
        str | None,
        typer.Option(help="csv|tsv|xlsx|fhir|beacon|directory (default: from each file)"),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind", help="role of every file: biobanks|collections|samples|persons|fhir|beacon"
        ),
    ] = None,
    mapping: Annotated[Path | None, typer.Option(help="mapping file (TOML)")] = None,
    snapshot: Annotated[
        bool, typer.Option(help="the files are a full snapshot: withdraw records no longer present")
    ] = False,
    skip_invalid: Annotated[
        bool, typer.Option(help="publish the valid records, report the rest")
    ] = False,
    progress: Annotated[
        bool, typer.Option(help="show a progress bar even when stderr is not a terminal")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary on stdout")] = False,
    report_file: Annotated[
        Path | None,
        typer.Option("--report", help="write every problem to this CSV file (for the LIMS team)"),
    ] = None,
) -> None:
    """Import exports into the holding; publish the group change set once it involves k donors."""
    from node.importing import Mapping, run_import
    from node.importing.importer import ROLES, parse_file_role

    try:
        opened = Home.open(home)
        loaded = Mapping.load(mapping) if mapping else None
        if kind is not None and kind.strip().lower() not in ROLES:
            raise ConfigError(f"--kind {kind!r}: use one of {', '.join(sorted(ROLES))}")
        roles: dict[Path, str] = {}
        paths: list[Path] = []
        for arg in files:
            path, role = parse_file_role(str(arg))
            paths.append(path)
            if role or kind:
                roles[path] = role or ROLES[str(kind).strip().lower()]
        with _progress(progress or err.is_terminal) as (advance, phase_start):
            report = run_import(
                opened,
                paths,
                roles=roles,
                fmt=format,
                mapping=loaded,
                snapshot=snapshot,
                skip_invalid=skip_invalid,
                progress=advance,
                phase_start=phase_start,
            )
    except BiobankError as exc:
        _fail(exc)
    for line in report.inferred:
        err.print(f"role: {line}", highlight=False, soft_wrap=True, markup=False)
    _problems(report.problems, report_file)
    for what, count in sorted(report.ignored.items()):
        err.print(
            f"ignored: {what}" + (f" (x{count})" if count > 1 else ""),
            highlight=False,
            markup=False,
        )
    for note in report.notes:
        err.print(f"note: {note}", highlight=False, markup=False)
    render = getattr(report.privacy, "render", None)
    if render is not None and report.privacy.rows:  # not for records alone
        render(err)
    _summary(report.problems)
    if not report.applied:
        err.print(
            f"[red]{len(report.problems)} problem(s); nothing was published[/red] "
            "(fix the export, or use --skip-invalid)"
        )
        raise typer.Exit(1)
    err.print(
        f"published {report.published or {}}, unchanged {report.unchanged or {}}, "
        f"withdrawn {report.withdrawn or {}}; log size {report.size_before} -> "
        f"{report.size_after}",
        highlight=False,
    )
    if report.erased_skipped:
        err.print(
            f"{report.erased_skipped} sample(s) skipped: withdrawn by consent", highlight=False
        )
    if report.pending is not None:
        err.print(report.pending.message(), highlight=False)
    if as_json:
        print(json.dumps(report.to_dict(), sort_keys=True))
    if report.problems:
        err.print(f"[yellow]{len(report.problems)} problem(s) skipped[/yellow]")
        raise typer.Exit(1)


def _problems(problems: list[Any], report_file: Path | None) -> None:
    """Every problem on stdout in plain words; the CSV report when asked for."""
    from node.importing import wording

    for problem in problems:
        print(f"problem: {wording.line(problem)}")
    if report_file is not None:
        try:
            wording.write_report(report_file, problems)
        except OSError as exc:
            err.print(f"[red]error:[/red] cannot write the report {report_file}: {exc}")
            raise typer.Exit(2) from exc
        err.print(f"problems written to {report_file}", highlight=False, markup=False)


def _summary(problems: list[Any]) -> None:
    """The problems counted by reason (values left out), on stderr."""
    from node.importing import wording

    if not problems:
        return
    rows = wording.rows_with_problems(problems)
    err.print(f"{len(problems)} problem(s) in {rows} row(s), by reason:", highlight=False)
    for reason, count in wording.summary(problems):
        err.print(f"  {count:>7}  {reason}", highlight=False, markup=False, soft_wrap=True)


class _progress:
    """A rich progress bar on stderr through the import phases (or nothing).

    Yields the importer's ``progress(phase, n)`` and ``phase_start(phase, total)``
    callbacks: each phase (staging, then privacy over the holding) restarts the bar with its own
    total (None for staging: rows are counted, the total is not known in advance).
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Progress | None = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None, None
        # --progress without a terminal (a log file, CI): draw anyway, as asked
        console = err if err.is_terminal else Console(stderr=True, force_terminal=True, emoji=False)
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.bar.start()
        task = self.bar.add_task("staging", total=None)
        bar = self.bar

        def phase_start(name: str, total: int | None) -> None:
            bar.reset(task, total=total, completed=0, description=name)

        def advance(name: str, n: int) -> None:
            bar.update(task, advance=n)

        return advance, phase_start

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


@app.command()
def withdraw(
    ids: Annotated[
        list[str] | None,
        typer.Argument(help="published ids: a grp_ group (all its samples), biobank, collection"),
    ] = None,
    donor: Annotated[
        list[str] | None,
        typer.Option("--donor", help="local donor id: withdraw all this donor's samples"),
    ] = None,
    sample: Annotated[
        list[str] | None, typer.Option("--sample", help="local sample id: withdraw this sample")
    ] = None,
    publish_now: Annotated[
        bool,
        typer.Option(
            "--publish-now", help="publish the effect even if it involves fewer than k donors"
        ),
    ] = False,
    home: HomeOpt = Path("node-home"),
) -> None:
    """Withdraw samples (consent) or records; the samples leave the holding at once."""
    from node.withdraw import erase

    try:
        report = erase(
            Home.open(home),
            ids or [],
            donor or [],
            sample or [],
            now=publish_now,
            warn=lambda change: err.print(change.risk(), highlight=False, soft_wrap=True),
        )
    except BiobankError as exc:
        _fail(exc)
    for kind, id in report.withdrawn:
        print(f"withdrawn {kind} {id}")
    for name, n in report.donors.items():
        print(f"removed {n} samples of donor {name} from the holding")
    if report.samples:
        print(f"removed {report.samples} sample(s) from the holding")
    assert report.publication is not None
    _publication(report.publication)


@app.command()
def publish(
    now: Annotated[
        bool, typer.Option("--now", help="publish even a change set of fewer than k donors")
    ] = False,
    home: HomeOpt = Path("node-home"),
) -> None:
    """Publish the change set that waits, if it involves at least k donors (or --now)."""
    from node.withdraw import publish as do_publish

    try:
        done = do_publish(
            Home.open(home),
            now=now,
            warn=lambda change: err.print(change.risk(), highlight=False, soft_wrap=True),
        )
    except BiobankError as exc:
        _fail(exc)
    _publication(done)


def _publication(done: Any) -> None:
    """Say what a publication (``node.withdraw.Publication``) did, or what waits."""
    if done.published:
        counts = dict(sorted(done.groups.items()))
        print(f"published the change set of {done.change.donors} donor(s): groups {counts}")
        print(f"log size now {done.size}")
    elif done.change.samples:
        print(done.change.message())
    else:
        print("nothing waits: the log shows the holding")


@app.command("rotate-key")
def rotate_key(
    home: HomeOpt = Path("node-home"),
    cosign_latest: Annotated[
        bool,
        typer.Option(
            "--cosign-latest",
            help="no new key: add the previous key's signature to the latest checkpoint "
            "(for a catalogue that missed the rotation checkpoint)",
        ),
    ] = False,
    old_key: Annotated[
        Path | None, typer.Option(help="previous signer key file (default: newest node.key.old-*)")
    ] = None,
) -> None:
    """Rotate the signing key: a rotate-key entry, a checkpoint signed by old and new key."""
    from node.rotate import cosign_latest as do_cosign
    from node.rotate import rotate_key as do_rotate

    try:
        opened = Home.open(home)
        if cosign_latest:
            size = do_cosign(opened, old_key)
            print(f"checkpoint size {size} is now signed by the previous and the current key")
            return
        rotation = do_rotate(opened)
    except BiobankError as exc:
        _fail(exc)
    err.print(
        f"rotate-key entry at index {rotation.index}; checkpoint size {rotation.size} is "
        f"signed by the old and the new key; from now on only the new key signs.\n"
        f"old signer key kept as {rotation.old_key_file} (0600): delete it once the "
        "catalogue has harvested that checkpoint (biobank-node monitor --catalogue URL).\n"
        "give this new verifier key to the catalogue operator:",
        highlight=False,
    )
    print(rotation.new_key)


@app.command()
def serve(
    home: HomeOpt = Path("node-home"),
    host: Annotated[str, typer.Option(help="listen address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="listen port")] = 8080,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            help="text (default) or json: one JSON object a line (also NODE_LOG_FORMAT)",
        ),
    ] = None,
    forwarded_allow_ips: Annotated[
        str,
        typer.Option(
            help="addresses whose X-Forwarded-For/-Proto headers are believed (the reverse proxy)"
        ),
    ] = "127.0.0.1,::1",
) -> None:
    """Serve the node HTTP API (descriptor, checkpoint, entries, proofs, /docs, /metrics)."""
    import uvicorn
    from pydantic import ValidationError

    from node.app import create_app
    from service.logs import log_config

    try:
        from node.settings import NodeSettings  # pydantic-settings: only serve needs it

        fields: dict[str, Any] = {"home": home, "host": host, "port": port}
        if log_format is not None:
            fields["log_format"] = log_format
        try:
            settings = NodeSettings(**fields)
        except ValidationError as exc:
            raise ConfigError(settings_message(exc.errors(), "NODE_")) from exc
        application = create_app(settings)
    except BiobankError as exc:
        _fail(exc)
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level="info",
        log_config=log_config(settings.log_format),
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
    )


@app.command()
def status(
    home: HomeOpt = Path("node-home"),
    as_json: Annotated[bool, typer.Option("--json", help="print the status as JSON")] = False,
) -> None:
    """Log size, last checkpoint, entries by kind and op, live records, what waits."""
    from node import highwater

    try:
        opened = Home.open(home, restored_ok=True)
    except BiobankError as exc:
        _fail(exc)
    conn = store.connect(opened.db_path)
    try:
        store.create_schema(conn)
        latest = store.latest_checkpoint(conn)
        counts = store.counts(conn)
        size = store.log_size(conn)
        waiting = groups.pending(conn, Policy.load(opened.policy_path).k)
        size_signed = 0 if latest is None else latest[0]
        notified = notify.targets(conn)
    finally:
        conn.close()
    if as_json:
        recovery: str | None = None
        try:
            highwater.check(opened.path, latest)
        except highwater.RecoveryRequired as exc:
            recovery = exc.message
        print(
            json.dumps(
                {
                    "origin": opened.config.origin,
                    "size": size,
                    "checkpoint": None
                    if latest is None
                    else {"size": latest[0], "time": latest[3]},
                    **counts,
                    "pending": waiting.to_dict(),
                    "recovery_required": recovery,
                    "notify": [t.to_dict(size_signed) for t in notified],
                },
                sort_keys=True,
            )
        )
        return
    print(f"origin: {opened.config.origin}")
    print(f"log size: {size}")
    if latest is None:
        print("last checkpoint: none")
    else:
        print(f"last checkpoint: size {latest[0]} at {latest[3]}")
    for key, n in dict(counts["entries"]).items():  # type: ignore[call-overload]
        print(f"entries {key}: {n}")
    for key, n in dict(counts["live"]).items():  # type: ignore[call-overload]
        print(f"live {key}: {n}")
    print(f"pending: {waiting.message()}")
    for target in notified:  # push, then pull (node/notify.py)
        print(target.describe(size_signed))
    try:
        highwater.check(opened.path, latest)
    except highwater.RecoveryRequired as exc:
        print(f"RECOVERY REQUIRED: {exc.message}")


@app.command()
def backup(
    dest: Annotated[Path, typer.Argument(help="new directory for the backup")],
    home: HomeOpt = Path("node-home"),
) -> None:
    """Back up node.db (online, consistent) and the public config; never the secret keys."""
    from node.backup import backup as do_backup

    try:
        info = do_backup(home, dest)
    except BiobankError as exc:
        _fail(exc)
    print(f"backup of tree size {info.size} in {info.path}")
    err.print(
        f"NOT in the backup (keep them in your key safe): {', '.join(info.not_included)}",
        highlight=False,
    )


@app.command()
def restore(
    backup_dir: Annotated[Path, typer.Argument(help="a directory made by 'biobank-node backup'")],
    home: HomeOpt = Path("node-home"),
    replace: Annotated[
        bool, typer.Option(help="overwrite the home's node.db (stop the server first)")
    ] = False,
) -> None:
    """Put a backup's node.db back; then 'recover' before the node serves or signs again."""
    from node import highwater
    from node.backup import restore as do_restore

    try:
        size = do_restore(backup_dir, home, replace=replace)
    except BiobankError as exc:
        _fail(exc)
    print(f"restored node.db at tree size {size} into {home}")
    mark = highwater.read(home)
    if mark is not None and mark.recover_required:
        err.print(
            f"next: biobank-node recover --home {home} --from CATALOGUE_URL "
            "(the node refuses to serve or sign until then)",
            highlight=False,
        )


@app.command()
def recover(
    from_: Annotated[str, typer.Option("--from", help="catalogue base URL (its mirror of us)")],
    home: HomeOpt = Path("node-home"),
) -> None:
    """Recover the log from a catalogue's mirror, verified against this node's own keys."""
    import httpx

    from node.recover import recover as do_recover

    try:
        opened = Home.open(home, restored_ok=True)
        with httpx.Client(timeout=60.0) as client:
            done = do_recover(opened, from_, client)
    except BiobankError as exc:
        _fail(exc)
    print(
        f"recovered: log size {done.size_before} -> {done.size_after} ({done.appended} "
        f"entries, {done.withdrawn} withdrawals, {done.rotations} key rotations) from the "
        f"mirror at size {done.mirror_size}; the node may serve and sign again"
    )
    if done.appended:
        err.print(
            "the holding is empty until the next import of the export, whose publication "
            "is a diff against the recovered groups (unchanged groups append nothing)",
            highlight=False,
        )


# commands that live in their own modules (registered last: they list after the core ones)
app.command("preview")(preview_command)
app.command("monitor")(monitor_command)
app.add_typer(mapping_app, name="mapping")
app.add_typer(notify_app, name="notify")


def main() -> None:
    """Console script entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        app(prog_name="biobank-node")
    except (ConfigError, PolicyError) as exc:  # one line, exit status 2, no traceback
        config_exit(exc.message)
    sys.exit(0)
