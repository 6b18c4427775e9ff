"""Test support shared by every test package: where the repository and the external data are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXTERNAL = REPO.parent / "shared" / "data" / "external"


def external_data() -> Path:
    """The shared external test data; skip outside CI when absent, fail inside CI."""
    if EXTERNAL.is_dir():
        return EXTERNAL
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the shared external test data is missing at {EXTERNAL}")
    pytest.skip(
        f"shared external test data not found at {EXTERNAL} (only CI and developers have it)"
    )


# Helpers that the standard library starts once per interpreter and ends at its exit.
KNOWN_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (command name) "
    return int(fields[1]), fields[0]


def running_descendants(root: int) -> dict[int, str]:
    """Every running (not zombie) descendant of process ``root`` -> its command line, known
    standard-library helpers left out; empty where there is no /proc (not Linux)."""
    if not Path("/proc/self/stat").exists():
        return {}
    parents: dict[int, list[int]] = {}
    states: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents.setdefault(stat[0], []).append(int(entry.name))
            states[int(entry.name)] = stat[1]
    found: dict[int, str] = {}
    todo = list(parents.get(root, []))
    while todo:
        pid = todo.pop()
        todo.extend(parents.get(pid, []))
        if states.get(pid) in ("Z", "X"):
            continue
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # exited meanwhile
        cmd = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
        if not any(helper in cmd for helper in KNOWN_HELPERS):
            found[pid] = cmd[:300]
    return found
