"""Build a federation on loopback: node homes filled from synthetic exports, a catalogue, enrolment.

The public steps, used by the demo command, the tests and the benchmarks:

- ``prepare_node(node, samples=, seed=, workdir=)``: init the node home, generate its
  country's export (``federation.generate``) and import it (skipped when already done with
  the same size and seed);
- ``node_app(home, url)``: the node server app for a home, its descriptor naming ``url``;
- ``open_catalogue(workdir)``: the catalogue (settings, engine, signing key, app) kept in
  ``workdir/catalogue``;
- ``enrol_all(catalogue, nodes)``: enrol every served node with its verifier key;
- ``build_federation(workdir, countries, ...)``: all of the above with the nodes served and
  the catalogue harvested, as a context manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from catalogue.app import create_app as create_catalogue_app
from catalogue.enrol import enrol, fetch_descriptor, retire
from catalogue.harvest import Harvester, Outcome
from catalogue.models import nodes as nodes_table
from catalogue.ownlog import CatalogueKey
from catalogue.settings import Settings
from federation.generate import generate
from federation.servers import LiveServer, free_port, live_server
from node.app import create_app as create_node_app
from node.home import CONFIG, Home, NodeConfig, init_home
from node.importing import ImportReport, Mapping, run_import
from node.settings import NodeSettings

COUNTRIES = ("DE", "DK", "IT", "IE", "CN")
CATALOGUE_ORIGIN = "catalogue.bbmri-demo.example/biobank-catalogue"
IMPORTED_MARK = "demo-import.json"

Advance = Callable[[str, int], None]
Warn = Callable[[str], None]


@dataclass
class DemoNode:
    """One node of a federation: its country, home directory, port and verifier key."""

    country: str
    home: Path
    port: int = field(default_factory=free_port)
    verifier_key: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class DemoCatalogue:
    """A catalogue kept in a work directory: its settings, database engine, key and app."""

    settings: Settings
    engine: Engine
    key: CatalogueKey
    app: Any

    def harvest(self) -> list[Outcome]:
        """Harvest every enrolled node once (as ``biobank-catalogue harvest`` does)."""
        return Harvester(engine=self.engine, settings=self.settings, key=self.key).run()


def _ignore(*_args: object) -> None:
    return None


def prepare_node(
    node: DemoNode,
    *,
    samples: int,
    seed: int,
    workdir: Path,
    advance: Advance = _ignore,
    warn: Warn = _ignore,
) -> None:
    """Init the node home, generate its export and import it, unless already done.

    ``advance(stage, n)`` reports progress (generated and staged rows); ``warn`` gets a
    line when sample rows were left out as invalid (the rest is still published).
    """
    mark = node.home / IMPORTED_MARK
    wanted = {"samples": samples, "seed": seed}
    if mark.is_file() and json.loads(mark.read_text(encoding="utf-8")) == wanted:
        advance("done", samples * 2)
        node.verifier_key = Home.open(node.home).verifier_key
        return
    export = generate(
        node.country,
        samples,
        seed,
        workdir / "exports" / node.country,
        progress=lambda n: advance("generating", n),
    )
    if not (node.home / CONFIG).is_file():
        init_home(
            node.home,
            NodeConfig(
                origin=export.origin,
                name=export.node_name,
                country=export.country,
                organisation=export.organisation,
                contact=export.contact_email,
                url=node.url,
            ),
        )
    home = Home.open(node.home)
    node.verifier_key = home.verifier_key
    for csv_path, mapping_path in (
        (export.biobanks_csv, export.biobanks_mapping),
        (export.collections_csv, export.collections_mapping),
    ):
        _check(
            node.country, csv_path, run_import(home, [csv_path], mapping=Mapping.load(mapping_path))
        )
    # skip_invalid: a record the node refuses is listed and left out; the federation goes on
    report = run_import(
        home,
        [export.samples_csv],
        mapping=Mapping.load(export.samples_mapping),
        snapshot=mark.is_file(),
        skip_invalid=True,
        progress=lambda phase, n, *_: advance(phase, n if phase == "staging" else 0),
    )
    if not report.applied:
        _check(node.country, export.samples_csv, report)
    if report.problems:
        warn(
            f"node {node.country}: {len(report.problems)} sample row(s) left out, e.g. "
            f"{report.problems[0]}"
        )
    mark.write_text(json.dumps(wanted), encoding="utf-8")


def _check(country: str, path: Path, report: ImportReport) -> None:
    if report.problems or not report.applied:
        shown = "; ".join(str(p) for p in report.problems[:5])
        raise RuntimeError(f"node {country}: importing {path.name} failed: {shown}")


def node_app(home: Path, url: str) -> Any:
    """The node server app for a node home, its node.toml saying it is served at ``url``."""
    config = Home.open(home).config
    if config.url != url:  # a restart on other ports: the descriptor must name the new URL
        fields = {**asdict(config), "url": url}
        (home / CONFIG).write_text(
            "".join(f"{k} = {json.dumps(v, ensure_ascii=False)}\n" for k, v in fields.items()),
            encoding="utf-8",
        )
    port = int(url.rsplit(":", 1)[1])
    return create_node_app(NodeSettings(home=home, port=port))


def open_catalogue(workdir: Path) -> DemoCatalogue:
    """The catalogue kept in ``workdir/catalogue`` (SQLite; admin token in a 0600 file)."""
    home = workdir / "catalogue"
    home.mkdir(parents=True, exist_ok=True)
    token_file = home / "admin.token"
    if not token_file.is_file():
        token_file.write_text(secrets.token_urlsafe(24), encoding="utf-8")
        token_file.chmod(0o600)
    settings = Settings(
        database_url=f"sqlite:///{home / 'catalogue.db'}",
        admin_token=token_file.read_text(encoding="utf-8").strip(),
        home=home,
        origin=CATALOGUE_ORIGIN,
    )
    app = create_catalogue_app(settings)
    ctx = app.state.ctx
    return DemoCatalogue(settings=settings, engine=ctx.engine, key=ctx.key, app=app)


def enrol_all(catalogue: DemoCatalogue, nodes: Sequence[DemoNode]) -> None:
    """Enrol every (served) node with its verifier key; re-enrol one whose URL changed."""
    with catalogue.engine.connect() as conn:
        known = {r.origin: r for r in conn.execute(select(nodes_table)).all()}
    for node in nodes:
        descriptor = asyncio.run(fetch_descriptor(node.url))
        row = known.get(descriptor.get("origin"))
        if row is not None and row.state != "retired":
            if row.url == node.url:
                continue
            retire(catalogue.engine, catalogue.key, row.origin)
        enrol(catalogue.engine, catalogue.key, node.url, node.verifier_key, descriptor)


@dataclass
class Federation:
    """A running federation: its nodes (served), its catalogue and the first harvest's outcomes.

    ``url`` is the catalogue's URL when ``build_federation`` served it, else ``""``.
    """

    nodes: list[DemoNode]
    catalogue: DemoCatalogue
    outcomes: list[Outcome]
    url: str = ""


@contextlib.contextmanager
def build_federation(
    workdir: Path,
    countries: Sequence[str] = COUNTRIES,
    *,
    samples: int,
    seed: int,
    serve_catalogue: bool = True,
    warn: Warn = _ignore,
) -> Iterator[Federation]:
    """Prepare, serve, enrol and harvest ``countries``' nodes; stop every server on exit.

    A harvest that fails raises ``RuntimeError``. With ``serve_catalogue=False`` the
    caller serves ``federation.catalogue.app`` itself (for example behind a proxy).
    """
    with contextlib.ExitStack() as stack:
        nodes = [DemoNode(c, workdir / "nodes" / c) for c in countries]
        for node in nodes:
            prepare_node(node, samples=samples, seed=seed, workdir=workdir, warn=warn)
            stack.enter_context(live_server(node_app(node.home, node.url), node.port))
        catalogue = open_catalogue(workdir)
        enrol_all(catalogue, nodes)
        outcomes = catalogue.harvest()
        failed = [f"{o.origin}: {o.error}" for o in outcomes if not o.ok]
        if failed:
            raise RuntimeError(f"harvest failed: {failed}")
        url = stack.enter_context(live_server(catalogue.app)).url if serve_catalogue else ""
        yield Federation(nodes=nodes, catalogue=catalogue, outcomes=outcomes, url=url)


__all__ = [
    "CATALOGUE_ORIGIN",
    "COUNTRIES",
    "DemoCatalogue",
    "DemoNode",
    "Federation",
    "LiveServer",
    "build_federation",
    "enrol_all",
    "node_app",
    "open_catalogue",
    "prepare_node",
]
