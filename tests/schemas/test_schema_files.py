"""The JSON Schema files: valid 2020-12, versioned $id, closed objects, built from code lists."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.schemas.helpers import KINDS, SCHEMAS, codes_of, schema, schema_id

BUILD = SCHEMAS.parent / "scripts" / "build_schemas.py"


def objects(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every subschema that describes an object (type object or has properties)."""
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node and "type" in node:
            yield where or "/", node
        for key, value in node.items():
            yield from objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from objects(value, f"{where}/{i}")


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_valid_2020_12_with_versioned_id(kind: str) -> None:
    doc = schema(kind)
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"] == schema_id(kind)


@pytest.mark.parametrize("kind", KINDS)
def test_every_object_is_closed(kind: str) -> None:
    found = list(objects(schema(kind)))
    assert found, f"{kind}: no object found"
    for where, node in found:
        assert node.get("additionalProperties") is False, f"{kind}{where}: not closed"


@pytest.mark.parametrize("kind", KINDS)
def test_every_string_is_bounded(kind: str) -> None:
    """Each string has a maxLength, a pattern, an enum or a const (no unbounded text)."""

    def walk(node: Any, where: str) -> Iterator[str]:
        if isinstance(node, dict):
            if node.get("type") == "string" and not {"maxLength", "enum", "const"} & set(node):
                pattern = node.get("pattern", "")
                if not (
                    pattern.startswith("^")
                    and pattern.endswith("$")
                    and "*" not in pattern
                    and "+" not in pattern.replace("\\+", "")
                ):
                    yield where
            for key, value in node.items():
                yield from walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, f"{where}/{i}")

    assert list(walk(schema(kind), "")) == []


def test_enums_equal_the_code_lists() -> None:
    defs = schema("collection")["$defs"]
    assert defs["sample_type"]["enum"] == [c for c in _ordered("sample-type")]
    assert set(defs["duo"]["enum"]) == codes_of("duo")
    assert set(schema("sample-group")["$defs"]["storage_temperature"]["enum"]) == codes_of(
        "storage-temperature"
    )
    assert set(schema("biobank")["$defs"]["country"]["enum"]) == codes_of("country")


def _ordered(name: str) -> list[str]:
    from tests.schemas.helpers import codelist

    return [c["code"] for c in codelist(name)["codes"]]


def test_rerunning_the_generator_changes_nothing() -> None:
    done = subprocess.run(
        [sys.executable, str(BUILD), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_generator_check_detects_a_drifted_code_list(tmp_path: Path) -> None:
    copy = tmp_path / "schemas"
    (copy / "codelists").mkdir(parents=True)
    for path in SCHEMAS.glob("*.schema.json"):
        (copy / path.name).write_bytes(path.read_bytes())
    for path in (SCHEMAS / "codelists").glob("*.json"):
        text = path.read_text(encoding="utf-8")
        if path.stem == "sex":
            text = text.replace('"unknown"', '"not-known"')
        (copy / "codelists" / path.name).write_text(text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(BUILD), "--check", "--dir", str(copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "sample-group.schema.json: out of date" in done.stdout
    fixed = subprocess.run(
        [sys.executable, str(BUILD), "--dir", str(copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert fixed.returncode == 0
    assert "not-known" in (copy / "sample-group.schema.json").read_text(encoding="utf-8")
