"""A harvest worker process imports what harvesting needs and nothing else (issue 19 item 4:
every MB a worker imports is paid once per process, at the harvest's memory peak)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from catalogue.harvest.harvester import worker_pool

ROOT = Path(__file__).resolve().parents[2]

# the API, the search service (its array engine), the settings' pydantic: no worker needs them
NOT_IN_A_WORKER = (
    "numpy",
    "fastapi",
    "starlette",
    "uvicorn",
    "jinja2",
    "pydantic",
    "pydantic_settings",
    "catalogue.app",
    "catalogue.api",
    "catalogue.settings",
    "catalogue.search.service",
    "node",
    "federation",
    # the commands' own (typer, its click and rich) and httpx's command-line client's
    # (rich, pygments, click: `catalogue.harvest` marks `httpx._main` absent)
    "typer",
    "click",
    "rich",
    "pygments",
    "catalogue.cli",
)

WHAT_A_WORKER_HOLDS = (
    "(sorted(__import__('sys').modules),"
    " [l for l in open('/proc/self/status') if l.startswith('VmRSS')][0])"
)


def test_a_spawned_harvest_worker_does_not_import_the_api_numpy_or_pydantic() -> None:
    with worker_pool(1) as pool:  # the Harvester's own pool: spawned, its initializer run
        modules, rss_line = pool.submit(eval, WHAT_A_WORKER_HOLDS).result(timeout=120)
        pid = pool.submit(os.getpid).result(timeout=60)
    assert pid != os.getpid()  # measured in the worker, not here
    # what harvesting needs is there (so the list above is not vacuously absent)
    for needed in ("catalogue.harvest.stream", "protocol.verify", "sqlalchemy", "httpx"):
        assert needed in modules, needed
    loaded = [m for m in modules if m.split(".")[0] in NOT_IN_A_WORKER or m in NOT_IN_A_WORKER]
    assert not loaded, f"a harvest worker imported {loaded[:10]}"
    # after its imports a worker held 78 MB with pydantic; about 69 MB without
    assert int(rss_line.split()[1]) < 100 * 1024, rss_line
    assert sys.modules  # this process is not the one measured


# the console script as pip writes it for an entry point (`from <module> import <function>`),
# whose main block here starts a harvest's kept worker and reports what it imported: a
# process started by spawn runs its parent's main script again first, as `__mp_main__`
CONSOLE_SCRIPT = """import sys
from {module} import {function}


def report():
    return sorted(sys.modules)


if __name__ == "__main__":
    import json
    from catalogue.harvest.harvester import KeptWorkers
    kept = KeptWorkers(1).start()
    kept.ready()
    pools = kept.take()
    print(json.dumps(pools[0].submit(report).result(timeout=120)))
    kept.give_back(pools)
    kept.close()
"""


def test_a_harvest_worker_of_the_catalogue_command_imports_neither_the_command_nor_its_cli(
    tmp_path: Path,
) -> None:
    """`biobank-catalogue serve` keeps the harvest's workers: spawned, each first runs the
    command's console script again. Its entry point (`catalogue.launch`) imports the command
    only when called, so a worker does not import typer, pydantic or the rest of the CLI (a
    script that imported `catalogue.cli` made each worker 82 instead of 67 MB)."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["biobank-catalogue"].split(":")
    script = tmp_path / "biobank-catalogue"
    script.write_text(CONSOLE_SCRIPT.format(module=module, function=function))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert "__mp_main__" in modules  # the script ran again in the worker
    for needed in ("catalogue.harvest.stream", "protocol.verify", "httpx"):
        assert needed in modules, needed
    loaded = [m for m in modules if m.split(".")[0] in NOT_IN_A_WORKER or m in NOT_IN_A_WORKER]
    assert not loaded, f"a worker of the catalogue command imported {loaded[:10]}"


def test_every_console_script_of_a_spawning_command_imports_the_command_only_when_called() -> None:
    """The commands that spawn workers (the catalogue's harvest, the node's import; the
    auditor's where fork is missing) have entry modules that import nothing of the command;
    each entry point runs its command (its `--help` answers). The demo's is its command:
    the servers it spawns import what it does anyway."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name in ("biobank-node", "biobank-catalogue", "biobank-audit"):
        module, function = scripts[name].split(":")
        package = module.split(".")[0]
        assert module == f"{package}.launch", name
        code = (
            f"import sys, {module}; print(sorted(m for m in sys.modules if m == "
            f"'{package}.cli' or m.split('.')[0] in ('typer', 'click', 'pydantic', 'rich')))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        assert out.stdout.strip() == "[]", (name, out.stdout)
        run = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sys; sys.argv[0] = {name!r}; from {module} import {function}; "
                f"sys.exit({function}())",
                "--help",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, (name, run.stderr[-1000:])
        assert "Usage" in run.stdout, (name, run.stdout[:500])
