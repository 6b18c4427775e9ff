"""Each attack on the harvest as its own test: the exact error, and nothing verified lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from catalogue.cli import app as cli_app
from catalogue.context import build_context
from catalogue.enrol import clear_halt
from catalogue.models import alerts, nodes
from catalogue.status import node_detail
from tests.catalogue.conftest import Catalogue, make_settings
from tests.catalogue.dbdump import dump
from tests.catalogue.simulator import TIME, NodeSimulator, other_signer


@pytest.fixture
def trusted(catalogue: Catalogue, serve: Any) -> tuple[Catalogue, NodeSimulator, dict[str, Any]]:
    """A node harvested once at size 7 (the trusted state), and a dump of the catalogue."""
    sim = NodeSimulator()
    sim.populate(5)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    assert catalogue.harvest()[sim.origin].size == 7
    return catalogue, sim, dump(catalogue.engine)


def attempt(cat: Catalogue, sim: NodeSimulator) -> tuple[str, Any]:
    out = cat.harvest()[sim.origin]
    assert not out.ok
    with cat.engine.connect() as conn:
        row = conn.execute(select(nodes).where(nodes.c.origin == sim.origin)).one()
    assert row.last_error == out.error
    assert out.error is not None
    return out.error, row


def test_content_altered_after_signing(trusted: Any) -> None:
    cat, sim, before = trusted
    sim.populate(3, start=5)
    sim.contents[-1] = {**sim.contents[-1], "sex": "male"}
    error, row = attempt(cat, sim)
    assert error.startswith("DigestMismatch: sim.example/biobank-node: leaf 9 (grp_")
    assert "does not match the entry's sha256:" in error
    assert row.state == "active" and dump(cat.engine) == before


def test_leaf_altered_on_first_harvest(catalogue: Catalogue, serve: Any) -> None:
    sim = NodeSimulator()
    sim.populate(5)
    sim.note = sim.sign()
    sim.rewrite_leaf(3, time="2026-01-01T00:00:00Z")
    serve(sim)
    catalogue.enrol(sim, sim.url)
    before = dump(catalogue.engine)
    error, row = attempt(catalogue, sim)
    assert error.startswith(
        "RootMismatch: sim.example/biobank-node: leaves 0..6 on top of the "
        "trusted tree rebuild root"
    )
    assert row.tree_size == 0 and row.state == "active" and dump(catalogue.engine) == before


def test_leaf_altered_in_new_entries_halts_as_equivocation(trusted: Any) -> None:
    cat, sim, before = trusted
    sim.populate(3, start=5)
    sim.note = sim.sign()
    sim.rewrite_leaf(8, time="2026-01-01T00:00:00Z")
    error, row = attempt(cat, sim)
    assert error.startswith("EquivocationError: sim.example/biobank-node: leaves 7..9")
    assert row.state == "halted"
    assert dump(cat.engine)["leaves"] == before["leaves"]


def test_checkpoint_signed_by_another_key(trusted: Any) -> None:
    cat, sim, before = trusted
    sim.populate(2, start=5)
    sim.note = sim.sign(signer=other_signer(sim.origin))
    error, row = attempt(cat, sim)
    assert error.startswith("SignatureError:")
    assert row.state == "active" and row.tree_size == 7 and dump(cat.engine) == before


def test_rollback_to_a_smaller_tree(trusted: Any) -> None:
    cat, sim, before = trusted
    trusted_note = sim.checkpoint()
    sim.note = sim.sign(size=5)
    error, row = attempt(cat, sim)
    assert error == (
        "RollbackError: sim.example/biobank-node: checkpoint size 5 is smaller "
        "than the trusted size 7"
    )
    assert row.state == "halted" and row.tree_size == 7 and row.checkpoint == trusted_note
    with cat.engine.connect() as conn:
        alert = conn.execute(select(alerts)).one()
        detail = node_detail(conn, sim.origin, 3600)
    assert alert.kind == "rollback"
    assert (alert.old_checkpoint, alert.new_checkpoint) == (trusted_note, sim.note)
    assert detail["alerts"] == 1 and detail["alert_list"][0]["new_checkpoint"] == sim.note
    after = dump(cat.engine)
    assert {k: v for k, v in after.items() if k != "alerts"} == {
        k: v for k, v in before.items() if k != "alerts"
    }
    # the status command shows the alert (exit status 3)
    s = cat.ctx.settings
    env = {
        "CATALOGUE_DATABASE_URL": s.database_url,
        "CATALOGUE_HOME": str(s.home),
        "CATALOGUE_ORIGIN": s.origin,
        "CATALOGUE_ADMIN_TOKEN": "",
    }
    shown = CliRunner().invoke(cli_app, ["status"], env=env)
    assert shown.exit_code == 3
    assert f"{sim.origin}  halted" in shown.output
    assert f"ALERT {sim.origin}: rollback: RollbackError: " in shown.output
    # halted: the next harvest does not touch the node until an operator clears it
    assert sim.origin not in cat.harvest()
    sim.note = None
    assert clear_halt(cat.engine, sim.origin) == 1
    assert cat.harvest()[sim.origin].ok


def test_two_different_trees_of_the_same_size(trusted: Any) -> None:
    cat, sim, before = trusted
    trusted_note = sim.checkpoint()
    sim.rewrite_leaf(2, time="2026-01-01T00:00:00Z")
    error, row = attempt(cat, sim)
    assert error == (
        "EquivocationError: sim.example/biobank-node: two signed checkpoints of "
        "size 7 with different roots"
    )
    assert row.state == "halted" and row.checkpoint == trusted_note
    with cat.engine.connect() as conn:
        alert = conn.execute(select(alerts)).one()
    assert alert.kind == "equivocation" and alert.old_checkpoint == trusted_note
    assert alert.new_checkpoint == sim.checkpoint()
    assert dump(cat.engine)["leaves"] == before["leaves"]


def test_new_tree_that_does_not_extend_the_old_one(trusted: Any) -> None:
    cat, sim, before = trusted
    sim.rewrite_leaf(2, time="2026-01-01T00:00:00Z")
    sim.populate(3, start=5)
    error, row = attempt(cat, sim)
    assert error.startswith(
        "EquivocationError: sim.example/biobank-node: leaves 7..9 on top of the trusted tree"
    )
    assert "not an extension of the trusted tree" in error
    assert row.state == "halted" and row.tree_size == 7
    snapshot = dump(cat.engine)
    assert snapshot["leaves"] == before["leaves"] and snapshot["groups"] == before["groups"]


def test_non_canonical_leaf_bytes(trusted: Any) -> None:
    cat, sim, before = trusted
    sim.populate(1, start=5)
    entry = orjson.loads(sim.leaves[-1])
    sim.leaves[-1] = json.dumps(entry, indent=1).encode()  # same JSON value, other bytes
    error, row = attempt(cat, sim)
    assert error.startswith("NonCanonicalError:") and "leaf 7" in error
    assert row.state == "active" and dump(cat.engine) == before


def test_entries_out_of_order(trusted: Any) -> None:
    cat, sim, before = trusted
    sim.populate(3, start=5)
    sim.entries_hook = lambda es: [es[1], es[0], *es[2:]] if len(es) > 1 else es
    error, row = attempt(cat, sim)
    assert error == "IndexOrderError: leaf 7: carries index 8, expected 7"
    assert row.state == "active" and dump(cat.engine) == before


def test_entries_missing(trusted: Any) -> None:
    cat, sim, before = trusted
    sim.populate(3, start=5)
    sim.entries_hook = lambda es: es[:-1] if es else es
    error, row = attempt(cat, sim)
    assert error.startswith("WithholdingError: sim.example/biobank-node: signs a checkpoint ")
    assert row.state == "active" and row.withholding_since is not None
    assert dump(cat.engine) == before


def test_garbage_response(trusted: Any) -> None:
    cat, sim, before = trusted
    sim.populate(1, start=5)
    sim.raw_entries = b"<html>Service Unavailable</html>"
    error, _row = attempt(cat, sim)
    assert error.startswith("FetchError: GET http://127.0.0.1:") and "not JSON" in error
    assert dump(cat.engine) == before


def test_oversized_response(db_url: str, tmp_path: Path, serve: Any) -> None:
    ctx = build_context(make_settings(db_url, tmp_path / "home", max_response_bytes=20_000))
    cat = Catalogue(ctx)
    try:
        sim = NodeSimulator()
        sim.populate(200)
        serve(sim)
        cat.enrol(sim, sim.url)
        before = dump(cat.engine)
        error, row = attempt(cat, sim)
        assert error.startswith("FetchError: GET http://127.0.0.1:")
        assert "exceeds the limit of 20000" in error
        assert row.tree_size == 0 and dump(cat.engine) == before
    finally:
        ctx.engine.dispose()


def test_hanging_node_times_out_and_keeps_state(trusted: Any) -> None:
    cat, sim, before = trusted
    sim.populate(2, start=5)
    sim.hang.set()
    error, row = attempt(cat, sim)
    assert error.startswith("FetchError: GET http://127.0.0.1:")
    assert error.endswith("/v1/log/checkpoint: no complete answer within 2 s")
    assert row.state == "active" and dump(cat.engine) == before


def test_time_field_is_not_trusted_blindly(trusted: Any) -> None:
    """A leaf whose entry names another log is refused (OriginMismatch), nothing applied."""
    cat, sim, before = trusted
    sim.populate(1, start=5)
    sim.rewrite_leaf(7, log="other.example/biobank-node")
    error, row = attempt(cat, sim)
    assert error.startswith("OriginMismatch: leaf 7: belongs to log")
    assert TIME and dump(cat.engine) == before
