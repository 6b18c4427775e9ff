"""Install from the wheel: built from the sources, installed with pip into a fresh virtual
environment, and run from outside the checkout (nothing of the checkout is importable), the
four commands work with the schemas, code lists and web assets the wheel carries."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from federation.generate import generate
from federation.servers import free_port
from tests.support import REPO

pytestmark = pytest.mark.slow

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
# what a build from a clean checkout would not see: local environments, caches, outputs
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
    "test-output", "biobank-demo", "demo-data", "results", "*.db",
)  # fmt: skip


@dataclass
class Installed:
    """A fresh virtual environment holding the installed wheel, and a place outside the
    checkout to run its commands from."""

    venv: Path
    work: Path

    def bin(self, program: str) -> str:
        return str(self.venv / "bin" / program)

    def env(self, **extra: str) -> dict[str, str]:
        keep = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
            and not k.startswith(("CATALOGUE_", "NODE_"))
        }
        return {**keep, **extra}

    def run(self, program: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.bin(program), *args],
            cwd=self.work,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=300,
        )


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build the wheel from a copy of the sources, install it into a new venv with pip."""
    root = tmp_path_factory.mktemp("wheel")
    src, wheels, venv, work = root / "src", root / "wheels", root / "venv", root / "work"
    shutil.copytree(REPO, src, ignore=NOT_SOURCES)
    work.mkdir()
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["-q", "-w", str(wheels), "."],
        cwd=src,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("biobank_federation-*.whl")
    made = _run([sys.executable, "-m", "venv", str(venv)], cwd=work)
    if made.returncode == 0:
        install = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)]
    else:  # no ensurepip (Debian without python3-venv): this environment's pip installs there
        shutil.rmtree(venv, ignore_errors=True)
        made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=work)
        assert made.returncode == 0, made.stderr
        install = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
        install += ["install", "-q", str(wheel)]
    done = _run(install, cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    return Installed(venv=venv, work=work)


@contextmanager
def serving(installed: Installed, args: list[str], url: str, **env: str) -> Iterator[None]:
    """Run a server command until ``url`` answers; stop it on the way out, test failed or not."""
    proc = subprocess.Popen(
        [installed.bin(args[0]), *args[1:]],
        cwd=installed.work,
        env=installed.env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url, timeout=2).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                _, stderr = proc.communicate(timeout=10)
                pytest.fail(f"{args[0]} did not start: {stderr[-2000:]}")
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


def test_the_installed_package_is_not_the_checkout(installed: Installed) -> None:
    done = subprocess.run(
        [
            installed.bin("python"),
            "-c",
            "import catalogue.web, schemas; print(catalogue.web.STATIC)",
        ],
        cwd=installed.work,
        env=installed.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    static = Path(done.stdout.strip())
    assert static.is_relative_to(installed.venv) and (static / "index.html").is_file()


@pytest.mark.parametrize(
    "program", ["biobank-node", "biobank-catalogue", "biobank-audit", "biobank-demo"]
)
def test_version_of_each_command(installed: Installed, program: str) -> None:
    done = installed.run(program, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{program} {VERSION}"


def test_installed_node_initialises_imports_and_serves(installed: Installed) -> None:
    export = generate("DK", 300, 5, installed.work / "export")
    home = str(installed.work / "node-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    done = installed.run(
        "biobank-node", "init", "--home", home, "--origin", export.origin,
        "--name", export.node_name, "--country", export.country,
        "--organisation", export.organisation, "--contact", export.contact_email, "--url", url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    verifier_key = done.stdout.strip()
    for csv, mapping in (
        (export.biobanks_csv, export.biobanks_mapping),
        (export.collections_csv, export.collections_mapping),
        (export.samples_csv, export.samples_mapping),
    ):
        done = installed.run(
            "biobank-node", "import", str(csv), "--home", home, "--mapping", str(mapping),
            "--skip-invalid",
        )  # fmt: skip
        assert done.returncode in (0, 1) and "published" in done.stderr, done.stderr
    status = installed.run("biobank-node", "status", "--home", home)
    assert status.returncode == 0, status.stderr
    assert "live sample-group: " in status.stdout and "log size: 0" not in status.stdout
    with serving(installed, ["biobank-node", "serve", "--home", home, "--port", str(port)], url):
        descriptor = httpx.get(f"{url}/.well-known/biobank-node", timeout=10).json()
    assert descriptor["origin"] == export.origin
    assert verifier_key in str(descriptor)


DOCS_ASSETS = ("init.js", "swagger-ui-bundle.js", "swagger-ui.css")  # service/http.py


def test_installed_catalogue_serves_its_web_page(installed: Installed) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "CATALOGUE_HOME": str(installed.work / "catalogue-home"),
        "CATALOGUE_DATABASE_URL": f"sqlite:///{installed.work / 'catalogue.db'}",
    }
    args = ["biobank-catalogue", "serve", "--port", str(port), "--no-harvest"]
    with serving(installed, args, f"{url}/.well-known/biobank-catalogue", **env):
        page = httpx.get(f"{url}/", timeout=10)
        script = httpx.get(f"{url}/static/js/main.js", timeout=10)
        codes = httpx.get(f"{url}/v1/codelists/sample-type", timeout=10)
        docs_js = [httpx.get(f"{url}/docs/assets/{n}", timeout=10) for n in DOCS_ASSETS]
    assert [r.status_code for r in docs_js] == [200] * len(DOCS_ASSETS)  # from the wheel
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/static/js/main.js" in page.text
    assert script.status_code == 200 and "import" in script.text
    assert codes.status_code == 200, codes.text  # code lists come from the wheel too
