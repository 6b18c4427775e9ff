"""Every configuration mistake is one line on stderr naming the setting and what to do, exit
status 2, no traceback: the real console scripts of `.venv/bin/`, run as an operator would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from federation.servers import free_port
from protocol.note import generate_key

BIN = Path(sys.executable).parent


def run(program: str, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a console script with a clean environment (no CATALOGUE_/NODE_ settings but ours)."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CATALOGUE_", "NODE_")) and k != "PYTHONPATH"
    }
    return subprocess.run(
        [str(BIN / program), *args],
        cwd=cwd,
        env={**base, "COLUMNS": "60", **env},  # narrow: a wrapped message would show
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit status 2 and exactly one line on stderr, `error: ...`, holding every needle."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "╭" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


# ---- biobank-catalogue -------------------------------------------------------------------


def catalogue(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    settings = {
        "CATALOGUE_HOME": str(tmp / "home"),
        "CATALOGUE_DATABASE_URL": f"sqlite:///{tmp / 'catalogue.db'}",
        "CATALOGUE_ORIGIN": "catalogue.test/biobank-catalogue",
    }
    return run("biobank-catalogue", *(args or ("status",)), cwd=tmp, **{**settings, **env})


def test_catalogue_key_of_another_origin_names_catalogue_origin(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    skey, _ = generate_key("old.example/biobank-catalogue")
    (tmp_path / "home" / "catalogue.key").write_text(skey + "\n")
    line = one_line(catalogue(tmp_path), "CATALOGUE_ORIGIN='old.example/biobank-catalogue'")
    assert "catalogue.test/biobank-catalogue" in line
    assert (tmp_path / "home" / "catalogue.key").read_text() == skey + "\n"  # kept as it was


def test_catalogue_malformed_key_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "catalogue.key").write_text("PRIVATE+KEY+garbage\n")
    line = one_line(catalogue(tmp_path), "catalogue.key", "malformed signer key", "CATALOGUE_HOME")
    assert "garbage" not in line  # a key file is never echoed


def test_catalogue_home_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "home").write_text("not a directory")
    one_line(catalogue(tmp_path), "CATALOGUE_HOME=", "is not a directory")


def test_catalogue_setting_out_of_range(tmp_path: Path) -> None:
    one_line(
        catalogue(tmp_path, CATALOGUE_PAGE_SIZE="5000"),
        "CATALOGUE_PAGE_SIZE: input should be less than or equal to 1000",
    )


def test_catalogue_setting_that_is_not_a_number(tmp_path: Path) -> None:
    one_line(
        catalogue(tmp_path, CATALOGUE_HARVEST_INTERVAL="hourly"),
        "CATALOGUE_HARVEST_INTERVAL: input should be a valid number",
    )


def test_catalogue_placeholder_admin_token_is_refused_and_not_echoed(tmp_path: Path) -> None:
    line = one_line(
        catalogue(tmp_path, "serve", CATALOGUE_ADMIN_TOKEN="changeme"),  # noqa: S106
        "CATALOGUE_ADMIN_TOKEN must be a random secret of at least 16 characters",
    )
    assert "changeme" not in line


@pytest.mark.parametrize("token", [" " * 24, "\t \t ", " padded-secret-0123456789abcdef "])
def test_catalogue_whitespace_admin_token_is_refused_at_start(tmp_path: Path, token: str) -> None:
    one_line(
        catalogue(tmp_path, "serve", CATALOGUE_ADMIN_TOKEN=token),
        "CATALOGUE_ADMIN_TOKEN must not be blank or begin or end with whitespace",
    )


def test_catalogue_database_url_that_is_not_a_url(tmp_path: Path) -> None:
    one_line(
        catalogue(tmp_path, CATALOGUE_DATABASE_URL="catalogue.db"),
        "CATALOGUE_DATABASE_URL is not a database URL",
        "sqlite:///PATH",
    )


def test_catalogue_database_url_of_an_unknown_kind(tmp_path: Path) -> None:
    one_line(
        catalogue(tmp_path, CATALOGUE_DATABASE_URL="oracle://cat@127.0.0.1/cat"),
        "CATALOGUE_DATABASE_URL=oracle://cat@127.0.0.1/cat: no driver",
    )


def test_catalogue_database_that_does_not_answer_hides_the_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://cat:hunter2secret@127.0.0.1:{free_port()}/cat"
    line = one_line(
        catalogue(tmp_path, CATALOGUE_DATABASE_URL=url),
        "CATALOGUE_DATABASE_URL=postgresql+psycopg://cat:***@127.0.0.1:",
        "cannot open the database",
    )
    assert "hunter2secret" not in line


def test_catalogue_sqlite_file_in_a_missing_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'catalogue.db'}"
    one_line(
        catalogue(tmp_path, "serve", CATALOGUE_DATABASE_URL=url),
        f"CATALOGUE_DATABASE_URL={url}: cannot open the database",
    )
    assert not (tmp_path / "missing").exists()


# ---- biobank-node ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A node home made by `biobank-node init` (copied by each test before breaking it)."""
    where = tmp_path_factory.mktemp("node-template")
    done = run(
        "biobank-node",
        "init",
        "--home",
        "home",
        "--origin",
        "cfg.example/biobank-node",
        "--name",
        "Config test node",
        "--country",
        "DE",
        "--organisation",
        "Config test",
        "--contact",
        "node@cfg.example",
        cwd=where,
    )
    assert done.returncode == 0, done.stderr
    return where / "home"


@pytest.fixture
def home(node_home: Path, tmp_path: Path) -> Path:
    shutil.copytree(node_home, tmp_path / "home")
    return tmp_path / "home"


def node(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run("biobank-node", *args, "--home", str(home), cwd=home.parent, **env)


def test_node_home_that_does_not_exist(tmp_path: Path) -> None:
    one_line(
        node(tmp_path / "nowhere", "status"),
        "is not a node home",
        "--home / NODE_HOME",
        "biobank-node init",
    )


def test_node_home_from_the_environment_that_does_not_exist(tmp_path: Path) -> None:
    done = run("biobank-node", "status", cwd=tmp_path, NODE_HOME=str(tmp_path / "nowhere"))
    one_line(done, f"{tmp_path / 'nowhere'} is not a node home", "NODE_HOME")


def test_node_malformed_signer_key(home: Path) -> None:
    (home / "node.key").write_text("PRIVATE+KEY+garbage\n")
    one_line(node(home, "status"), "node.key: malformed signer key", "--home / NODE_HOME")


def test_node_missing_signer_key(home: Path) -> None:
    (home / "node.key").unlink()
    one_line(node(home, "serve", "--port", str(free_port())), "node.key: cannot read it")


def test_node_short_pseudonym_secret(home: Path) -> None:
    (home / "pseudonym.secret").write_bytes(b"short")
    one_line(node(home, "status"), "pseudonym.secret must hold at least 32 random bytes")


def test_node_config_file_that_is_not_toml(home: Path) -> None:
    (home / "node.toml").write_text("origin = \n")
    one_line(node(home, "status"), "node.toml: ")


def test_node_policy_below_two_donors_stops_serve(home: Path) -> None:
    policy = home / "policy.toml"
    policy.write_text(policy.read_text().replace("\nk = 10\n", "\nk = 1\n"))
    port = free_port()
    one_line(node(home, "serve", "--port", str(port)), "policy.toml: k = 1: must be from 2 to 1000")


def test_node_policy_that_is_not_toml(home: Path) -> None:
    (home / "policy.toml").write_text("k = [\n")
    one_line(node(home, "publish"), "policy.toml: not valid TOML")


# ---- biobank-audit -----------------------------------------------------------------------


def test_audit_malformed_key(tmp_path: Path) -> None:
    done = run("biobank-audit", "verify", "--bundle", str(tmp_path), "--key", "nokey", cwd=tmp_path)
    one_line(done, "--key: malformed verifier key", "obtained out of band")


def test_audit_catalogue_that_is_not_a_url(tmp_path: Path) -> None:
    done = run("biobank-audit", "fetch", "--catalogue", "catalogue.example", "b", cwd=tmp_path)
    one_line(done, "--catalogue 'catalogue.example'", "http(s)://")
    assert not (tmp_path / "b").exists()


def test_audit_malformed_state_file_is_kept(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text("{not json")
    done = run(
        "biobank-audit", "verify", "--bundle", str(tmp_path), "--state", str(state), cwd=tmp_path
    )
    one_line(done, f"--state {state}: unreadable or malformed")
    assert state.read_text() == "{not json"
