"""A five-country demo federation on loopback: generate, import, serve, enrol, harvest.

``run_demo()`` creates (or reuses) a work directory with five node homes (DE, DK, IT, IE,
CN), fills each from a synthetic LIMS export (``node.generate``), starts the five node
servers and the catalogue server in this process (uvicorn in threads), enrols every node
with its verifier key, harvests them, prints one ``node CC: URL`` line per node and one
``catalogue: URL`` line, and runs until interrupted (Ctrl-C stops everything, exit 0).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

COUNTRIES = ("DE", "DK", "IT", "IE", "CN")
STATE_FILE = "demo.json"
IMPORTED_MARK = "demo-import.json"
CATALOGUE_ORIGIN = "catalogue.bbmri-demo.example/biobank-catalogue"


@dataclass
class DemoNode:
    """One node of the demo: its country, home directory, port and verifier key."""

    country: str
    home: Path
    port: int
    verifier_key: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class _Server:
    """A uvicorn server in a daemon thread (signals stay with the main thread)."""

    def __init__(self, app: Any, port: int) -> None:
        self.port = port
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _choose_ports(state: dict[str, Any], base_port: int | None) -> dict[str, int]:
    """Ports for the nodes and the catalogue: base_port+i, else the last run's, else free."""
    names = [*COUNTRIES, "catalogue"]
    if base_port is not None:
        return {name: base_port + i for i, name in enumerate(names)}
    previous = state.get("ports", {})
    ports: dict[str, int] = {}
    for name in names:
        port = previous.get(name)
        if not isinstance(port, int) or port in ports.values() or not _port_free(port):
            port = _free_port()
            while port in ports.values():
                port = _free_port()
        ports[name] = port
    return ports


def _prepare_node(node: DemoNode, samples: int, seed: int, workdir: Path,
                  advance: Callable[[str, int], None], warn: Callable[[str], None]) -> None:
    """Init the node home, generate its export and import it, unless already done."""
    from node.generate import generate
    from node.home import Home, NodeConfig, init_home
    from node.importing import Mapping, run_import

    mark = node.home / IMPORTED_MARK
    wanted = {"samples": samples, "seed": seed}
    if mark.is_file() and json.loads(mark.read_text(encoding="utf-8")) == wanted:
        advance("done", samples * 2)
        node.verifier_key = Home.open(node.home).verifier_key
        return
    export_dir = workdir / "exports" / node.country
    export = generate(node.country, samples, seed, export_dir,
                      progress=lambda n: advance("generating", n))
    if not (node.home / "node.toml").is_file():
        init_home(node.home, NodeConfig(
            origin=export.origin, name=export.node_name, country=export.country,
            organisation=export.organisation, contact=export.contact_email, url=node.url))
    home = Home.open(node.home)
    node.verifier_key = home.verifier_key
    for csv_path, mapping_path in ((export.biobanks_csv, export.biobanks_mapping),
                                   (export.collections_csv, export.collections_mapping)):
        report = run_import(home, [csv_path], mapping=Mapping.load(mapping_path))
        _check_report(node.country, csv_path, report)
    # skip_invalid: a record the node refuses is listed and left out; the demo goes on
    report = run_import(home, [export.samples_csv], mapping=Mapping.load(export.samples_mapping),
                        snapshot=mark.is_file(), skip_invalid=True,
                        progress=lambda phase, n, *_: advance(
                            phase, n if phase == "staging" else 0))
    if not report.applied:
        _check_report(node.country, export.samples_csv, report)
    if report.problems:
        warn(f"node {node.country}: {len(report.problems)} sample row(s) left out, e.g. "
             f"{report.problems[0]}")
    mark.write_text(json.dumps(wanted), encoding="utf-8")


def _check_report(country: str, path: Path, report: Any) -> None:
    if report.problems or not report.applied:
        shown = "; ".join(str(p) for p in report.problems[:5])
        raise RuntimeError(f"node {country}: importing {path.name} failed: {shown}")


def node_app(home: Path, url: str) -> Any:
    """The node server app for a node home, its node.toml saying it is served at ``url``."""
    from node.app import create_app
    from node.home import CONFIG, Home
    from node.settings import NodeSettings

    config = Home.open(home).config
    if config.url != url:  # a restart on other ports: the descriptor must name the new URL
        fields = {**asdict(config), "url": url}
        (home / CONFIG).write_text(
            "".join(f"{k} = {json.dumps(v, ensure_ascii=False)}\n" for k, v in fields.items()),
            encoding="utf-8")
    port = int(url.rsplit(":", 1)[1])
    return create_app(NodeSettings(home=home, port=port))


def _catalogue(workdir: Path) -> tuple[Any, Any, Any, Any]:
    """(settings, engine, key, app) of the demo catalogue."""
    from catalogue.app import create_app
    from catalogue.settings import Settings

    home = workdir / "catalogue"
    home.mkdir(parents=True, exist_ok=True)
    token_file = home / "admin.token"
    if not token_file.is_file():
        token_file.write_text(secrets.token_urlsafe(24), encoding="utf-8")
        token_file.chmod(0o600)
    settings = Settings(database_url=f"sqlite:///{home / 'catalogue.db'}",
                        admin_token=token_file.read_text(encoding="utf-8").strip(),
                        home=home, origin=CATALOGUE_ORIGIN)
    app = create_app(settings)
    ctx = app.state.ctx
    return settings, ctx.engine, ctx.key, app


def _enrol_all(engine: Any, key: Any, nodes: list[DemoNode]) -> None:
    """Enrol every node with its verifier key; re-enrol one whose URL changed."""
    from sqlalchemy import select

    from catalogue.enrol import enrol, fetch_descriptor, retire
    from catalogue.models import nodes as nodes_table

    with engine.connect() as conn:
        known = {r.origin: r for r in conn.execute(select(nodes_table)).all()}
    for node in nodes:
        descriptor = asyncio.run(fetch_descriptor(node.url))
        row = known.get(descriptor.get("origin"))
        if row is not None and row.state != "retired":
            if row.url == node.url:
                continue
            retire(engine, key, row.origin)
        enrol(engine, key, node.url, node.verifier_key, descriptor)


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[stage]}"), TimeElapsedColumn(), console=console)


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt, even when SIGINT was inherited ignored."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def run_demo(samples_per_node: int = 20000, seed: int = 42, base_port: int | None = None,
             workdir: Path | None = None) -> int:
    """Build (or reuse) and run the demo federation until Ctrl-C; return the exit code."""
    from catalogue.harvest import Harvester
    from protocol.errors import BiobankError

    _stop_on_signals()
    workdir = Path(workdir or "biobank-demo").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    state_path = workdir / STATE_FILE
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    ports = _choose_ports(state, base_port)
    state_path.write_text(json.dumps({"ports": ports}), encoding="utf-8")
    console = Console(stderr=True)
    nodes = [DemoNode(c, workdir / "nodes" / c, ports[c]) for c in COUNTRIES]
    servers: list[_Server] = []
    try:
        with _progress(console) as progress:
            for node in nodes:
                task = progress.add_task(f"node {node.country}", total=2 * samples_per_node,
                                         stage="")

                def advance(stage: str, n: int, task: Any = task) -> None:
                    progress.update(task, advance=n, stage=stage)

                _prepare_node(node, samples_per_node, seed, workdir, advance,
                              lambda msg: progress.console.print(f"[yellow]{msg}"))
                progress.update(task, completed=2 * samples_per_node, stage="ready")
            serving = progress.add_task("starting servers", total=len(nodes) + 1, stage="")
            for node in nodes:
                servers.append(_Server(node_app(node.home, node.url), node.port).start())
                progress.advance(serving)
            settings, engine, key, app = _catalogue(workdir)
            servers.append(_Server(app, ports["catalogue"]).start())
            progress.advance(serving)
            harvest = progress.add_task("enrolling and harvesting", total=2, stage="")
            _enrol_all(engine, key, nodes)
            progress.advance(harvest)
            outcomes = Harvester(engine=engine, settings=settings, key=key).run()
            progress.update(harvest, advance=1, stage=f"{sum(o.added for o in outcomes)} new")
        for outcome in outcomes:
            if not outcome.ok:
                console.print(f"[red]harvest of {outcome.origin} failed: {outcome.error}")
        for node in nodes:
            print(f"node {node.country}: {node.url}", flush=True)
        print(f"catalogue: http://127.0.0.1:{ports['catalogue']}", flush=True)
        console.print("Press Ctrl-C to stop.")
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping ...")
        return 0
    except (BiobankError, RuntimeError, OSError) as exc:
        console.print(f"[red]demo failed: {exc}")
        return 1
    finally:
        for server in reversed(servers):
            server.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m catalogue.demo [--samples N] [--seed S] [--workdir DIR] [--base-port P]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="biobank-catalogue demo",
                                     description="Run a local five-country demo federation.")
    parser.add_argument("--samples", type=int, default=20000, help="samples per node")
    parser.add_argument("--seed", type=int, default=42, help="seed of the synthetic data")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="work directory (reused when present; default ./biobank-demo)")
    parser.add_argument("--base-port", type=int, default=None,
                        help="first of six consecutive ports (default: free ports)")
    args = parser.parse_args(argv)
    return run_demo(samples_per_node=args.samples, seed=args.seed, base_port=args.base_port,
                    workdir=args.workdir)


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["COUNTRIES", "main", "node_app", "run_demo"]
