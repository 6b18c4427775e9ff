"""An honest federation: all checks hold, the state file advances, a bundle verifies offline."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from audit.cli import app
from audit.state import AuditState
from federation.servers import LiveServer
from tests.audit.conftest import World
from tests.audit.helpers import audit, check, failed


def test_honest_catalogue_passes_every_check(served: LiveServer, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    code, report = audit("--catalogue", served.url, "--state", state)
    assert failed(report) == {}
    assert code == 0 and report["ok"] is True
    for name in (
        "catalogue-checkpoint",
        "catalogue-log",
        "catalogue-replay",
        "node-checkpoint-signatures",
        "node-tree",
        "content-digest",
        "content-schema",
        "withdrawn-content",
        "search-totals",
    ):
        assert check(report, name)["status"] == "ok", name
    assert check(report, "node-tree")["checked"] >= 4
    assert report["facts"]["live sample groups"] == 41 + 5  # DE: 42 published, 1 withdrawn
    saved = AuditState.load(state)
    assert saved is not None and saved.size == 5


def test_state_file_advances_only_when_everything_holds(
    world: World, served: LiveServer, tmp_path: Path
) -> None:
    cat, de = world.cat, world.de
    state = tmp_path / "state.json"
    assert audit("--catalogue", served.url, "--state", state)[0] == 0
    de.seed(3, start=100)
    cat.harvest(de)
    code, report = audit("--catalogue", served.url, "--state", state)
    assert code == 0, failed(report)
    assert check(report, "catalogue-consistency")["status"] == "ok"
    assert AuditState.load(state).size == 6  # type: ignore[union-attr]


def test_human_report_names_checks(served: LiveServer) -> None:
    result = CliRunner().invoke(app, ["verify", "--catalogue", served.url])
    assert result.exit_code == 0, result.output
    assert "node-tree" in result.output and "ALL CHECKS HOLD" in result.output


def test_bundle_verifies_with_no_server_running(world: World, tmp_path: Path) -> None:
    from federation.servers import live_server

    bundle = tmp_path / "bundle"
    with live_server(world.cat.app()) as server:
        result = CliRunner().invoke(app, ["fetch", "--catalogue", server.url, str(bundle)])
        assert result.exit_code == 0, result.output
    # the server is stopped: any network read would fail
    code, report = audit("--bundle", bundle, "--state", tmp_path / "state.json")
    assert code == 0, failed(report)
    assert report["facts"]["nodes audited"] == 2
    assert AuditState.load(tmp_path / "state.json").size == 5  # type: ignore[union-attr]
