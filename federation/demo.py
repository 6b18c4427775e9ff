"""``biobank-demo``: a five-country demo federation on loopback, run until Ctrl-C.

``run_demo()`` creates (or reuses) a work directory with five node homes (DE, DK, IT, IE,
CN), fills each from a synthetic LIMS export (``federation.generate``), starts the five node
servers and the catalogue server in this process (uvicorn in threads), enrols every node
with its verifier key, harvests them, prints one ``node CC: URL`` line per node and one
``catalogue: URL`` line, and runs until interrupted (Ctrl-C stops everything, exit 0).
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from federation.build import (
    COUNTRIES,
    DemoNode,
    enrol_all,
    node_app,
    open_catalogue,
    prepare_node,
)
from federation.servers import LiveServer, free_port, port_free
from node import notify, store
from node.home import Home
from protocol.cli import package_version
from protocol.errors import BiobankError

STATE_FILE = "demo.json"


def _choose_ports(state: dict[str, Any], base_port: int | None) -> dict[str, int]:
    """Ports for the nodes and the catalogue: base_port+i, else the last run's, else free."""
    names = [*COUNTRIES, "catalogue"]
    if base_port is not None:
        return {name: base_port + i for i, name in enumerate(names)}
    previous = state.get("ports", {})
    ports: dict[str, int] = {}
    for name in names:
        port = previous.get(name)
        if not isinstance(port, int) or port in ports.values() or not port_free(port):
            port = free_port()
            while port in ports.values():
                port = free_port()
        ports[name] = port
    return ports


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stage]}"),
        TimeElapsedColumn(),
        console=console,
    )


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt, even when SIGINT was inherited ignored."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def notify_catalogue(nodes: list[DemoNode], catalogue_url: str | None) -> None:
    """Make each node push its new checkpoints to the demo catalogue (docs/freshness.md),
    replacing any target left from an earlier run; None: no target (until the first harvest
    is done, a notification would start a second harvest of the same node beside it)."""
    for node in nodes:
        conn = store.connect(Home.open(node.home).db_path)
        try:
            for target in notify.targets(conn):
                if target.url != catalogue_url:
                    notify.remove_target(conn, target.url)
            if catalogue_url is not None:
                notify.add_target(conn, catalogue_url)
        finally:
            conn.close()


def run_demo(
    samples_per_node: int = 20000,
    seed: int = 42,
    base_port: int | None = None,
    workdir: Path | None = None,
) -> int:
    """Build (or reuse) and run the demo federation until Ctrl-C; return the exit code."""
    _stop_on_signals()
    workdir = Path(workdir or "biobank-demo").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    state_path = workdir / STATE_FILE
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    ports = _choose_ports(state, base_port)
    state_path.write_text(json.dumps({"ports": ports}), encoding="utf-8")
    console = Console(stderr=True)
    nodes = [DemoNode(c, workdir / "nodes" / c, ports[c]) for c in COUNTRIES]
    servers: list[LiveServer] = []
    try:
        with _progress(console) as progress:
            for node in nodes:
                task = progress.add_task(
                    f"node {node.country}", total=2 * samples_per_node, stage=""
                )

                def advance(stage: str, n: int, task: Any = task) -> None:
                    progress.update(task, advance=n, stage=stage)

                prepare_node(
                    node,
                    samples=samples_per_node,
                    seed=seed,
                    workdir=workdir,
                    advance=advance,
                    warn=lambda msg: progress.console.print(f"[yellow]{msg}"),
                )
                progress.update(task, completed=2 * samples_per_node, stage="ready")
            serving = progress.add_task("starting servers", total=len(nodes) + 1, stage="")
            notify_catalogue(nodes, None)
            for node in nodes:
                servers.append(LiveServer(node_app(node.home, node.url), node.port).start())
                progress.advance(serving)
            catalogue = open_catalogue(workdir)
            servers.append(LiveServer(catalogue.app, ports["catalogue"]).start())
            progress.advance(serving)
            harvest = progress.add_task("enrolling and harvesting", total=2, stage="")
            enrol_all(catalogue, nodes)
            progress.advance(harvest)
            outcomes = catalogue.harvest()
            # after the first harvest: a notification sent during it would start a second
            # harvest of the same node (refused as "changed by another harvester")
            notify_catalogue(nodes, f"http://127.0.0.1:{ports['catalogue']}")
            progress.update(harvest, advance=1, stage=f"{sum(o.added for o in outcomes)} new")
        for outcome in outcomes:
            if not outcome.ok:
                console.print(f"[red]harvest of {outcome.origin} failed: {outcome.error}")
        for node in nodes:
            print(f"node {node.country}: {node.url}", flush=True)
        print(f"catalogue: http://127.0.0.1:{ports['catalogue']}", flush=True)
        console.print(
            "Each node tells the catalogue of every new checkpoint (push): import into a node "
            f"(biobank-node import ... --home {nodes[0].home}) and search sees it in seconds."
        )
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
    """``biobank-demo [--samples N] [--seed S] [--workdir DIR] [--base-port P]``."""
    parser = argparse.ArgumentParser(
        prog="biobank-demo", description="Run a local five-country demo federation."
    )
    parser.add_argument("--version", action="version", version=f"biobank-demo {package_version()}")
    parser.add_argument("--samples", type=int, default=20000, help="samples per node")
    parser.add_argument("--seed", type=int, default=42, help="seed of the synthetic data")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="work directory (reused when present; default ./biobank-demo)",
    )
    parser.add_argument(
        "--base-port",
        type=int,
        default=None,
        help="first of six consecutive ports (default: free ports)",
    )
    args = parser.parse_args(argv)
    return run_demo(
        samples_per_node=args.samples,
        seed=args.seed,
        base_port=args.base_port,
        workdir=args.workdir,
    )


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["main", "run_demo"]
