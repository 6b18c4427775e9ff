"""Backup, restore and recover against a real node server and a real catalogue on loopback.

The story: publish, back up, publish more (an import, a withdrawal, a key rotation), harvest,
restore the old backup (the node refuses to serve or sign), recover from the catalogue's
mirror, import the same export again, harvest: no rollback or equivocation alert, the
auditor passes. A tampered mirror is refused and leaves the node as it was.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from catalogue.models import alerts
from federation import DemoCatalogue, LiveServer, enrol_all, live_server, node_app, open_catalogue
from federation.build import DemoNode
from federation.generate import generate
from federation.servers import free_port
from node import highwater, store
from node.cli import app as node_cli
from node.home import Home, NodeConfig, init_home
from node.importing import ImportReport, Mapping, run_import
from node.recover import recover
from protocol.errors import ConfigError, DigestMismatch, RootMismatch, SignatureError
from protocol.note import Checkpoint, Signer, generate_key, sign_checkpoint
from tests.audit.helpers import audit, failed
from tests.audit.liar import Liar, edit_page, leaf_of, mirror_path

runner = CliRunner()


@dataclass
class World:
    """A node home restored from an old backup, the catalogue (served, behind a Liar) that
    harvested the newer log, the twin (a copy of the node before the restore) and part 2."""

    home: Path
    twin: Path
    part2: Path
    full: Path
    withdrawn: str
    mapping: Path
    node: DemoNode
    catalogue: DemoCatalogue
    server: LiveServer
    liar: Liar
    backup_size: int
    signed_size: int

    @property
    def node_origin(self) -> str:
        return Home.open(self.home, restored_ok=True).config.origin


def _cli(*args: str | Path) -> Any:
    return runner.invoke(node_cli, [str(a) for a in args])


def _write_part(src: Path, dest: Path, rows: slice) -> list[str]:
    """Header and the rows ``rows`` of a sample export; return their local ids."""
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    dest.write_text("".join([lines[0], *lines[1:][rows]]), encoding="utf-8")
    return [line.split(";", 1)[0] for line in lines[1:][rows]]


def _import(home: Path, path: Path, mapping: Path) -> ImportReport:
    report = run_import(Home.open(home), [path], mapping=Mapping.load(mapping), skip_invalid=True)
    assert report.applied
    return report


def _harvest_ok(catalogue: DemoCatalogue) -> None:
    outcomes = catalogue.harvest()
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("recover")
    export = generate("DE", 600, 5, work / "export")
    node = DemoNode("DE", work / "node", port=free_port())
    init_home(
        node.home,
        NodeConfig(
            origin=export.origin,
            name=export.node_name,
            country="DE",
            organisation=export.organisation,
            contact=export.contact_email,
            url=node.url,
        ),
    )
    node.verifier_key = Home.open(node.home).verifier_key
    part1, part2 = work / "part1.csv", work / "part2.csv"
    only_part1 = _write_part(export.samples_csv, part1, slice(0, 180))
    _write_part(export.samples_csv, part1, slice(0, 420))  # the first 70 %
    _write_part(export.samples_csv, part2, slice(180, None))  # the last 70 %
    for path, mapping in (
        (export.biobanks_csv, export.biobanks_mapping),
        (export.collections_csv, export.collections_mapping),
        (part1, export.samples_mapping),
    ):
        _import(node.home, path, mapping)
    catalogue = open_catalogue(work)
    with contextlib.ExitStack() as stack:
        stack.enter_context(live_server(node_app(node.home, node.url), node.port))
        enrol_all(catalogue, [node])
        _harvest_ok(catalogue)
        result = _cli("backup", work / "backup", "--home", node.home)
        assert result.exit_code == 0, result.output
        backup_size = json.loads((work / "backup" / "BACKUP.json").read_text())["size"]
        # published after the backup: an import, a consent withdrawal (one sample, published
        # at once) and a rotation
        _import(node.home, part2, export.samples_mapping)
        local_id = min(s for s, group in _held(node.home) if s in only_part1 and group)
        result = _cli("withdraw", "--sample", local_id, "--publish-now", "--home", node.home)
        assert result.exit_code == 0, result.output
        assert "published the change set of 1 donor(s)" in result.output
        _harvest_ok(catalogue)
        result = _cli("rotate-key", "--home", node.home)
        assert result.exit_code == 0, result.output
        _harvest_ok(catalogue)
    signed = highwater.read(node.home)
    assert signed is not None and signed.size > backup_size
    twin = work / "twin"
    shutil.copytree(node.home, twin)
    result = _cli("restore", work / "backup", "--home", node.home, "--replace")
    assert result.exit_code == 0, result.output
    assert "biobank-node recover" in result.output
    liar = Liar(catalogue.app)
    with live_server(liar) as server:
        yield World(
            node.home,
            twin,
            part2,
            export.samples_csv,
            local_id,
            export.samples_mapping,
            node,
            catalogue,
            server,
            liar,
            backup_size,
            signed.size,
        )


def _state(home: Path) -> tuple[int, int, int, str]:
    conn = store.connect(home / "node.db", readonly=True)
    try:
        size = store.log_size(conn)
        records = conn.execute("SELECT count(*) FROM records").fetchone()[0]
        erased = conn.execute("SELECT count(*) FROM contents WHERE content IS NULL").fetchone()[0]
    finally:
        conn.close()
    return size, records, erased, (home / highwater.MARK).read_text()


@pytest.fixture
def restored(world: World, tmp_path: Path) -> Iterator[Path]:
    """A copy of the restored (not yet recovered) home, for attacks that must change nothing."""
    copy = tmp_path / "home"
    shutil.copytree(world.home, copy)
    world.liar.lies.clear()
    yield copy
    world.liar.lies.clear()


def _recover(home: Path, url: str) -> Any:
    with httpx.Client(timeout=30) as client:
        return recover(Home.open(home, restored_ok=True), url, client)


def test_restored_node_refuses_to_serve(restored: Path) -> None:
    from node.app import create_app
    from node.settings import NodeSettings

    with pytest.raises(highwater.RecoveryRequired, match="biobank-node recover"):
        create_app(NodeSettings(home=restored))


@pytest.mark.parametrize(
    "command",
    [["withdraw", "bbmri-eric:ID:NOPE"], ["rotate-key"], ["import", "x.csv"]],
    ids=["withdraw", "rotate-key", "import"],
)
def test_restored_node_refuses_to_sign(restored: Path, command: list[str]) -> None:
    before = _state(restored)
    result = _cli(*command, "--home", restored)
    assert result.exit_code == 2
    assert "restored from a backup" in result.output
    assert "biobank-node recover" in result.output
    assert _state(restored) == before


def test_restored_status_says_recovery_required(restored: Path) -> None:
    result = _cli("status", "--home", restored)
    assert result.exit_code == 0
    assert "RECOVERY REQUIRED" in result.output


def test_old_database_without_restore_is_refused_by_the_mark(world: World, restored: Path) -> None:
    """A node.db copied back by hand (no restore command) is still behind the mark."""
    mark = highwater.read(restored)
    assert mark is not None
    (restored / highwater.MARK).write_text(
        json.dumps(
            {"size": world.signed_size, "root": base64.b64encode(mark.root).decode(), "x": 1}
        )
    )
    with pytest.raises(highwater.RecoveryRequired, match=f"signed size {world.signed_size}"):
        Home.open(restored)


def test_recover_refuses_altered_content(world: World, restored: Path) -> None:
    before = _state(restored)

    def alter(start: int, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for item in entries:
            if item["content"] and item["content"].get("sample_type"):
                old = item["content"]["sample_type"]
                item["content"]["sample_type"] = "Plasma" if old == "Serum" else "Serum"
                break
        return entries

    world.liar.lie(mirror_path(world.node_origin, "entries"), edit_page(alter))
    with pytest.raises(DigestMismatch, match="not the one this node signed"):
        _recover(restored, world.server.url)
    assert _state(restored) == before


def test_recover_refuses_a_dropped_leaf(world: World, restored: Path) -> None:
    before = _state(restored)
    world.liar.lie(
        mirror_path(world.node_origin, "entries"), edit_page(lambda s, es: es[:3] + es[4:])
    )
    with pytest.raises(Exception, match="leaf|index"):
        _recover(restored, world.server.url)
    assert _state(restored) == before


def test_recover_refuses_an_altered_leaf(world: World, restored: Path) -> None:
    before = _state(restored)

    def retime(start: int, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        entry = leaf_of(entries[-1])
        entry["time"] = "2000-01-01T00:00:00Z"
        from protocol.canonical import canonical

        entries[-1]["leaf"] = base64.b64encode(canonical(entry)).decode()
        return entries

    world.liar.lie(mirror_path(world.node_origin, "entries"), edit_page(retime))
    with pytest.raises(RootMismatch, match="nothing recovered"):
        _recover(restored, world.server.url)
    assert _state(restored) == before


def test_recover_refuses_a_checkpoint_signed_by_another_key(world: World, restored: Path) -> None:
    before = _state(restored)
    skey, _ = generate_key(world.node_origin)

    def forge(_query: dict[str, str], body: bytes) -> bytes:
        cp = Checkpoint.from_text(body.decode().partition("\n\n")[0] + "\n")
        return sign_checkpoint(cp, [Signer.from_key(skey)]).encode()

    world.liar.lie(mirror_path(world.node_origin, "checkpoint"), forge)
    with pytest.raises(SignatureError, match="not signed by any key of this node"):
        _recover(restored, world.server.url)
    assert _state(restored) == before


def test_recover_refuses_a_mirror_behind_what_the_node_signed(world: World, restored: Path) -> None:
    """The node signed more than the catalogue harvested: recovering would lose signed leaves."""
    mark = highwater.read(restored)
    assert mark is not None
    (restored / highwater.MARK).write_text(
        json.dumps(
            {
                "size": world.signed_size + 5,
                "root": base64.b64encode(mark.root).decode(),
                "recover_required": True,
            }
        )
    )
    before = _state(restored)
    with pytest.raises(ConfigError, match=f"signed size {world.signed_size + 5}"):
        _recover(restored, world.server.url)
    assert _state(restored) == before


def test_running_server_refuses_a_database_restored_under_it(world: World, tmp_path: Path) -> None:
    """node.db swapped for the old backup while the server runs: 503, no checkpoint served."""
    copy = tmp_path / "home"
    shutil.copytree(world.twin, copy)
    port = free_port()
    with live_server(node_app(copy, f"http://127.0.0.1:{port}"), port) as server:
        assert httpx.get(f"{server.url}/v1/log/checkpoint").status_code == 200
        for suffix in ("-wal", "-shm"):
            (copy / f"node.db{suffix}").unlink(missing_ok=True)
        shutil.copy2(world.home.parent / "backup" / "node.db", copy / "node.db")
        resp = httpx.get(f"{server.url}/v1/log/checkpoint")
    assert resp.status_code == 503
    assert "biobank-node recover" in resp.text


def test_recover_then_publish_harvest_and_audit(world: World, tmp_path: Path) -> None:
    """The last test of the module: it recovers the fixture's home itself."""
    world.liar.lies.clear()
    result = _cli("recover", "--from", world.server.url, "--home", world.home)
    assert result.exit_code == 0, result.output
    assert f"-> {world.signed_size}" in result.output
    assert highwater.read(world.home) == highwater.read(world.twin)
    # the recovered log is the published one, byte for byte
    assert _leaves(world.home) == _leaves(world.twin)
    assert _contents(world.home) == _contents(world.twin)
    # recover leaves the holding empty; the whole export again re-creates it. Local ids
    # never leave the node, so the consent withdrawal made after the backup must be made
    # again: until then its sample is back in one group (a change of one donor)
    twin_report = _import(world.twin, world.full, world.mapping)
    report = _import(world.home, world.full, world.mapping)
    assert twin_report.published == {} and twin_report.size_after == world.signed_size
    assert report.published in ({}, {"sample-group": 1})
    result = _cli("withdraw", "--sample", world.withdrawn, "--home", world.home)
    assert result.exit_code == 0, result.output
    result = _cli("publish", "--now", "--home", world.home)
    assert result.exit_code == 0, result.output
    assert _groups(world.home) == _groups(world.twin)
    # and it publishes on: a withdrawal, served, harvested without alert, audited
    sample = min(s for s, group in _held(world.home) if group)
    result = _cli("withdraw", "--sample", sample, "--publish-now", "--home", world.home)
    assert result.exit_code == 0, result.output
    with live_server(node_app(world.home, world.node.url), world.node.port):
        _harvest_ok(world.catalogue)
        with world.catalogue.engine.connect() as conn:
            assert conn.execute(select(alerts)).all() == []
        code, report_json = audit(
            "--catalogue", world.server.url, "--node-direct", "--state", tmp_path / "s.json"
        )
    assert code == 0, failed(report_json)


def _leaves(home: Path) -> list[tuple[Any, ...]]:
    conn = store.connect(home / "node.db", readonly=True)
    try:
        return conn.execute(
            "SELECT idx, leaf, hash, kind, id, op FROM leaves ORDER BY idx"
        ).fetchall()
    finally:
        conn.close()


def _contents(home: Path) -> list[tuple[Any, ...]]:
    conn = store.connect(home / "node.db", readonly=True)
    try:
        return conn.execute("SELECT idx, content FROM contents ORDER BY idx").fetchall()
    finally:
        conn.close()


def _held(home: Path) -> list[tuple[str, str | None]]:
    """(local id, published group) of every sample the node holds."""
    conn = store.connect(home / "node.db", readonly=True)
    try:
        return conn.execute("SELECT local_id, published_group FROM holding").fetchall()
    finally:
        conn.close()


def _groups(home: Path) -> dict[str, dict[str, Any]]:
    """Live group records as published, without their nonces."""
    conn = store.connect(home / "node.db", readonly=True)
    try:
        out = {}
        for id, text in conn.execute(
            "SELECT r.id, c.content FROM records r JOIN contents c ON c.idx = r.last_index "
            "WHERE r.live = 1 AND r.kind = 'sample-group'"
        ):
            content = json.loads(text)
            content.pop("nonce")
            out[id] = content
        return out
    finally:
        conn.close()
