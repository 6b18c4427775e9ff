"""Key rotation: ``biobank-node rotate-key`` against a real node server, checked by KeyHistory."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from federation.servers import live_server
from node.app import create_app
from node.cli import app
from node.home import NEXT_KEY, Home, finish_pending_rotation
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.rotate import rotate_key
from node.settings import NodeSettings
from protocol.errors import MissingSignatureError, SignatureError
from protocol.keys import KeyHistory
from protocol.note import Signer, Verifier, generate_key, open_note, sign_checkpoint
from tests.node.node_support import (
    ORIGIN,
    RECORD_ENTRIES,
    entry_of,
    make_home,
    sample_rows,
    spread,
    verify_served_log,
    write_csv,
    write_mapping,
)

runner = CliRunner()
R = RECORD_ENTRIES  # the biobank and collection entries make_home publishes first


def _signers(note: str, *vkeys: str) -> set[str]:
    """Which of ``vkeys`` have a valid signature on ``note``."""
    signed = set()
    for vkey in vkeys:
        try:
            open_note(note, [Verifier.from_key(vkey)])
        except SignatureError:
            continue
        signed.add(vkey)
    return signed


def test_rotation_signs_the_first_checkpoint_with_both_keys_then_the_new_only(
    tmp_path: Path,
) -> None:
    home, old = make_home(tmp_path, k=2)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = spread(sample_rows(10), 5)  # five groups
    run_import(home, [write_csv(tmp_path / "a.csv", rows)], mapping=mapping)
    with (
        live_server(create_app(NodeSettings(home=home.path))) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        before, _ = verify_served_log(client, KeyHistory(ORIGIN, old))
        assert before.size == 5 + R

        result = runner.invoke(app, ["rotate-key", "--home", str(home.path)])
        assert result.exit_code == 0, result.output
        new = result.stdout.strip().splitlines()[-1]
        assert new != old and Verifier.from_key(new).name == ORIGIN
        assert "PRIVATE" not in result.stdout
        olds = list(home.path.glob("node.key.old-*"))
        assert len(olds) == 1 and stat.S_IMODE(olds[0].stat().st_mode) == 0o600
        assert olds[0].read_text().strip() != (home.path / "node.key").read_text().strip()
        assert stat.S_IMODE((home.path / "node.key").stat().st_mode) == 0o600
        assert not (home.path / NEXT_KEY).exists()
        assert client.get("/.well-known/biobank-node").json()["verifier_key"] == new

        note = client.get("/v1/log/checkpoint").text
        assert _signers(note, old, new) == {old, new}
        history = KeyHistory(ORIGIN, old)
        rotated, entries = verify_served_log(client, history, previous_size=before.size)
        assert rotated.size == 6 + R
        assert entry_of(entries[5 + R], 5 + R) | {"time": ""} == {
            "log": ORIGIN,
            "index": 5 + R,
            "op": "rotate-key",
            "key": new,
            "time": "",
        }
        assert entries[5 + R]["content"] is None

        # the rotation checkpoint without the old key's signature would be refused
        new_signer = Signer.from_key((home.path / "node.key").read_text().strip())
        new_only = sign_checkpoint(rotated, [new_signer])
        with pytest.raises(MissingSignatureError):
            KeyHistory(ORIGIN, old, history.events).verify(new_only, previous_size=5 + R)

        # later checkpoints: the new key only
        run_import(
            home.open(home.path),
            [write_csv(tmp_path / "b.csv", spread(sample_rows(3, 100), 5))],  # 3 groups change
            mapping=mapping,
        )
        later = client.get("/v1/log/checkpoint").text
        assert _signers(later, old, new) == {new}
        final, _ = verify_served_log(client, KeyHistory(ORIGIN, old), previous_size=rotated.size)
        assert final.size == 9 + R
        # a third party that saw nothing since the enrolment still verifies the whole log
        # step by step: the rotation checkpoint, then the latest one
        steps = KeyHistory(ORIGIN, old)
        steps.rotate(index=5 + R, key=new)
        assert steps.verify(note, previous_size=0).size == 6 + R
        assert steps.verify(later, previous_size=6 + R).size == 9 + R


def test_an_import_with_the_old_key_after_a_rotation_is_refused(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path, k=2)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    stale = Home.open(home.path)  # opened before the rotation, still holds the old signer
    rotate_key(home)
    report = None
    with pytest.raises(Exception, match="node key was rotated"):
        report = run_import(stale, [write_csv(tmp_path / "a.csv", sample_rows(3))], mapping=mapping)
    assert report is None
    fresh = Home.open(home.path)
    assert run_import(
        fresh, [write_csv(tmp_path / "a.csv", sample_rows(3))], mapping=mapping
    ).published == {"sample-group": 1}


def test_a_rotation_that_never_committed_leaves_the_old_key(tmp_path: Path) -> None:
    home, old = make_home(tmp_path, k=2)
    skey, _ = generate_key(ORIGIN)
    (home.path / NEXT_KEY).write_text(skey)  # as if killed before the transaction
    assert finish_pending_rotation(home.path) is None
    assert not (home.path / NEXT_KEY).exists()
    assert Home.open(home.path).verifier_key == old


def test_cosign_latest_serves_a_catalogue_that_missed_the_rotation_checkpoint(
    tmp_path: Path,
) -> None:
    home, old = make_home(tmp_path, k=2)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = spread(sample_rows(6), 3)  # three groups
    run_import(home, [write_csv(tmp_path / "a.csv", rows)], mapping=mapping)
    new = rotate_key(home).new_key
    fresh = Home.open(home.path)
    more = spread(sample_rows(2, 50), 3)  # two groups change
    run_import(fresh, [write_csv(tmp_path / "b.csv", more)], mapping=mapping)
    with (
        live_server(create_app(NodeSettings(home=home.path))) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        history = KeyHistory(ORIGIN, old)
        history.rotate(index=3 + R, key=new)
        # a catalogue that last accepted size 3 + R sees size 6 + R signed by the new key only
        with pytest.raises(MissingSignatureError):
            history.verify(client.get("/v1/log/checkpoint").text, previous_size=3 + R)
        result = runner.invoke(app, ["rotate-key", "--home", str(home.path), "--cosign-latest"])
        assert result.exit_code == 0, result.output
        assert f"checkpoint size {6 + R} is now signed" in result.stdout
        note = client.get("/v1/log/checkpoint").text
        assert history.verify(note, previous_size=3 + R).size == 6 + R
        assert _signers(note, old, new) == {old, new}
        verify_served_log(client, KeyHistory(ORIGIN, old), previous_size=3 + R)
    assert Home.open(home.path).verifier_key == new  # no new key was made
    wrong = runner.invoke(
        app,
        [
            "rotate-key",
            "--home",
            str(home.path),
            "--cosign-latest",
            "--old-key",
            str(home.path / "node.key"),
        ],
    )
    assert wrong.exit_code == 2 and "not the key in force before" in wrong.output
