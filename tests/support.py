"""Test support shared by every test package: where the repository and the external data are."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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


def number_paths(
    node: Any, defs: dict[str, Any], path: tuple[str, ...], closed: bool = False
) -> set[tuple[str, ...]]:
    """Where a record valid against `node` can hold a JSON number ("*": any array item);
    refuses a keyword it does not know, a value of any type and an object open to other
    members (`closed`: `node` applies to the same value as a closed object schema around
    it, an `allOf` or `then` branch)."""
    known = {"type", "properties", "required", "additionalProperties", "items", "enum"}
    known |= {"const", "pattern", "maxLength", "minimum", "maximum", "uniqueItems", "maxItems"}
    known |= {"$ref", "oneOf", "anyOf", "allOf", "if", "then", "else", "title", "description"}
    known |= {"$schema", "$id", "$defs"}
    assert set(node) <= known, set(node) - known
    out: set[tuple[str, ...]] = set()
    closed = closed or (node.get("type") == "object" and node.get("additionalProperties") is False)
    if "$ref" in node:
        out |= number_paths(defs[node["$ref"].removeprefix("#/$defs/")], defs, path, closed)
    for word in ("oneOf", "anyOf", "allOf"):
        for sub in node.get(word, ()):
            out |= number_paths(sub, defs, path, closed)
    for word in ("then", "else"):  # `if` only selects; its branches constrain
        if word in node:
            out |= number_paths(node[word], defs, path, closed)
    types = node.get("type")
    if types is not None:
        types = {types} if isinstance(types, str) else set(types)
        if types & {"integer", "number"}:
            out.add(path)
    elif "enum" in node or "const" in node:
        values = node.get("enum", [node.get("const")])
        if any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out.add(path)
    elif not closed and not {"$ref", "oneOf", "anyOf", "allOf"} & set(node):
        raise AssertionError(f"{path}: a value of any type")
    if "properties" in node:
        assert closed, path
        for name, sub in node["properties"].items():
            out |= number_paths(sub, defs, (*path, name))
    if "items" in node:
        out |= number_paths(node["items"], defs, (*path, "*"))
    return out
