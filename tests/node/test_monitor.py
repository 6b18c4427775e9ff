"""`biobank-node monitor`: a real node checks the real catalogue's mirror of its own log."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from federation import build_federation, live_server
from node.cli import app
from node.home import Home
from protocol.note import Checkpoint, Signer, generate_key, sign_checkpoint
from tests.audit.liar import Liar, constant, edit_page, mirror_path

cli = app  # the real biobank-node command line, where monitor is registered


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Liar, Path]]:
    work = tmp_path_factory.mktemp("monitor")
    with contextlib.ExitStack() as stack:
        fed = stack.enter_context(
            build_federation(work, ("DK",), samples=400, seed=5, serve_catalogue=False)
        )
        liar = Liar(fed.catalogue.app)
        server = stack.enter_context(live_server(liar))
        yield server.url, liar, fed.nodes[0].home


@pytest.fixture
def fed(federation: tuple[str, Liar, Path]) -> Iterator[tuple[str, Liar, Path, str]]:
    url, liar, home = federation
    liar.lies.clear()
    yield url, liar, home, Home.open(home).config.origin
    liar.lies.clear()


def _monitor(url: str, home: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["monitor", "--catalogue", url, "--home", str(home)])
    return result.exit_code, result.output


def test_monitor_confirms_an_exact_mirror(fed: tuple[str, Liar, Path, str]) -> None:
    url, _liar, home, origin = fed
    code, output = _monitor(url, home)
    assert code == 0, output
    assert f"ok: the catalogue mirrors {origin} exactly" in output


def test_monitor_names_the_first_differing_index(fed: tuple[str, Liar, Path, str]) -> None:
    url, liar, home, origin = fed
    liar.lie(
        mirror_path(origin, "entries"),
        edit_page(lambda s, es: es if s else [es[0], es[2], es[1], *es[3:]]),
    )
    code, output = _monitor(url, home)
    assert code == 1
    assert "first differing entry at index 1" in output


def test_monitor_reports_missing_entries(fed: tuple[str, Liar, Path, str]) -> None:
    url, liar, home, origin = fed
    liar.lie(mirror_path(origin, "entries"), edit_page(lambda s, es: es[:50] if s == 0 else []))
    code, output = _monitor(url, home)
    assert code == 1
    assert "mirror serves 50 entries" in output and "missing" in output


def test_monitor_reports_an_altered_content(fed: tuple[str, Liar, Path, str]) -> None:
    url, liar, home, origin = fed

    def alter(start: int, es: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if start == 0:
            es[7]["content"] = (
                {**es[7]["content"], "name": "Not what the node said"}
                if "name" in es[7]["content"]
                else {**es[7]["content"], "nonce": "0" * 32}
            )
        return es

    liar.lie(mirror_path(origin, "entries"), edit_page(alter))
    code, output = _monitor(url, home)
    assert code == 1
    assert "index 7: content altered" in output


def test_monitor_reports_a_checkpoint_the_node_never_signed(
    fed: tuple[str, Liar, Path, str],
) -> None:
    url, liar, home, origin = fed
    opened = Home.open(home)
    # a checkpoint with the node's key but a wrong root, as a buggy or lying catalogue might
    wrong = sign_checkpoint(Checkpoint(origin, 3, bytes(32)), [opened.signer])
    liar.lie(mirror_path(origin, "checkpoint"), constant(wrong))
    code, output = _monitor(url, home)
    assert code == 1
    assert "mirror checkpoint root at size 3 differs" in output
    other = Signer.from_key(generate_key(origin)[0])  # a key the node never had
    forged = sign_checkpoint(Checkpoint(origin, 3, bytes(32)), [other])
    liar.lies.clear()
    liar.lie(mirror_path(origin, "checkpoint"), constant(forged))
    code, output = _monitor(url, home)
    assert code == 1 and "is not signed by this node's key" in output
