"""The layout's rules, read from the source: who may import whom, and one copy of each
protocol rule (docs/architecture.md)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.errors import BiobankError
from tests.support import REPO

PACKAGES = ("protocol", "service", "node", "catalogue", "audit", "federation", "bench")
# what each package may import of the project's other packages
ALLOWED: dict[str, set[str]] = {
    "protocol": set(),
    "service": {"protocol"},
    "node": {"protocol", "service"},
    "catalogue": {"protocol", "service"},
    "audit": {"protocol"},
    "federation": {"protocol", "node", "catalogue"},
    "bench": {"protocol", "node", "catalogue", "audit", "federation"},
}
# third-party frameworks the shared protocol package must never import
PROTOCOL_FORBIDDEN = {"fastapi", "starlette", "sqlmodel", "sqlalchemy", "httpx", "uvicorn"}


def _sources(package: str) -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted((REPO / package).rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imported_modules(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_what_its_layer_allows(package: str) -> None:
    wrong = []
    for path, tree in _sources(package):
        for module in _imported_modules(tree):
            top = module.split(".")[0]
            if top in PACKAGES and top != package and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(REPO)} imports {module}")
            if package == "protocol" and top in PROTOCOL_FORBIDDEN:
                wrong.append(f"{path.relative_to(REPO)} imports {module}")
    assert wrong == []


def test_no_test_imports_a_private_name_from_another_module() -> None:
    wrong = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                wrong += [
                    f"{path.relative_to(REPO)}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_")
                ]
    assert wrong == []


def _calls_outside(needle: str, allowed: set[str]) -> list[str]:
    found = []
    for package in PACKAGES:
        for path, _tree in _sources(package):
            rel = str(path.relative_to(REPO))
            if rel not in allowed and needle in path.read_text(encoding="utf-8"):
                found.append(rel)
    return found


def test_the_rfc6962_leaf_hash_is_computed_only_in_protocol_merkle() -> None:
    assert _calls_outside('sha256(b"\\x00"', {"protocol/merkle.py"}) == []


def test_the_content_digest_is_formed_only_in_protocol_canonical() -> None:
    assert _calls_outside('"sha256:" + ', {"protocol/canonical.py"}) == []


def _project_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in ("protocol", "service", "node", "catalogue", "audit"):
        root = importlib.import_module(package)
        names = [package] + [m.name for m in pkgutil.walk_packages(root.__path__, f"{package}.")]
        for name in names:
            module = importlib.import_module(name)
            for obj in vars(module).values():
                if (
                    inspect.isclass(obj)
                    and issubclass(obj, BaseException)
                    and obj.__module__ == name
                ):
                    found[f"{name}.{obj.__qualname__}"] = obj
    return list(found.values())


def test_every_error_class_is_in_the_one_tree_and_named_once() -> None:
    errors = _project_exceptions()
    outside = [
        e.__qualname__
        for e in errors
        if not issubclass(e, BiobankError) and not e.__name__.startswith("_")
    ]
    assert outside == []
    names = [e.__name__ for e in errors]
    assert sorted(n for n in names if names.count(n) > 1) == []
