"""Remembering record shapes already found valid, so records differing only in ids skip validation.

Samples of one log differ mostly in `id` and `nonce`, two fields whose schema is a plain string
pattern. For a schema whose top level is only `type: object`, `properties`, `required` and a
boolean `additionalProperties`, a record is valid exactly when (a) each such "free" field
satisfies its own pattern and (b) the rest of the record (every other field, and which fields
are present) is valid. `ShapeMemo` checks (a) on every call with a validator compiled from the
field's own subschema by the same library, and remembers (b) by the record's bytes with the
free values blanked, learnt only from records the full validator found valid. A record whose
shape is unknown, which holds anything but exact JSON types (floats included), or whose free
fields fail is validated in full, so the memo never changes a verdict (tests/protocol prove it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import fastjsonschema
import orjson

_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "examples"})
_TOP = _ANNOTATIONS | {"type", "properties", "required", "additionalProperties", "$defs"}
_FREE = _ANNOTATIONS | {"type", "pattern"}
LIMIT = 65_536  # shapes remembered per schema; beyond it records are simply validated in full


def _exact_json(record: dict[str, Any]) -> bool:
    """True when `record` holds only exact dict (str keys), list, str, int, bool and None."""
    stack: list[Any] = [record]
    push = stack.append
    while stack:
        x = stack.pop()
        if type(x) is dict:
            for k in x:
                if type(k) is not str:
                    return False
            values: Any = x.values()
        else:
            values = x
        for v in values:
            t = type(v)
            if t is str or t is int:
                continue
            if t is dict or t is list:
                push(v)
            elif t is not bool and v is not None:
                return False
    return True


def free_fields(schema: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The top-level fields of `schema` constrained by nothing but `type: string` and a pattern.

    Empty when the schema's top level uses any keyword that could relate fields to each other.
    """
    if not set(schema) <= _TOP or schema.get("type") != "object":
        return {}
    if type(schema.get("additionalProperties", True)) is not bool:
        return {}
    props = schema.get("properties")
    defs = schema.get("$defs")
    if not isinstance(props, dict):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, sub in props.items():
        if isinstance(sub, dict) and set(sub) == {"$ref"} and isinstance(sub["$ref"], str) \
                and sub["$ref"].startswith("#/$defs/") and isinstance(defs, dict):
            sub = defs.get(sub["$ref"][len("#/$defs/"):])
        if (isinstance(sub, dict) and set(sub) <= _FREE and sub.get("type") == "string"
                and isinstance(sub.get("pattern"), str)):
            out[name] = {"type": "string", "pattern": sub["pattern"]}
    return out


class ShapeMemo:
    """The valid shapes of one schema; `known_valid(record)` is True only for a valid record."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.fields = free_fields(schema)
        self._checks: dict[str, Callable[[Any], Any]] = {
            name: fastjsonschema.compile(sub) for name, sub in self.fields.items()}
        self._valid: set[bytes] = set()

    @property
    def active(self) -> bool:
        return bool(self._checks)

    def _key(self, record: Any, parsed: bool = False) -> bytes | None:
        """The record's bytes with its free values blanked; None when the memo cannot apply.

        `parsed`: the record comes straight from orjson.loads, so it holds only JSON types
        (no NaN, no tuple, no subclass) and the type walk can be skipped.
        """
        if type(record) is not dict:
            return None
        blanked = dict(record)
        for name, check in self._checks.items():
            if name not in record:
                return None
            try:
                check(record[name])
            except fastjsonschema.JsonSchemaValueException:
                return None
            blanked[name] = None
        if not parsed and not _exact_json(blanked):
            return None
        try:
            return orjson.dumps(blanked, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # integers beyond 64 bits
            return None

    def known_valid(self, record: Any, *, parsed: bool = False) -> tuple[bool, bytes | None]:
        """(True, _) when `record` is valid by the memo; else (False, key to `learn` if valid).

        `parsed=True` only for a record straight from orjson.loads (see `_key`).
        """
        key = self._key(record, parsed)
        return (key is not None and key in self._valid), key

    def learn(self, key: bytes | None) -> None:
        """Remember a shape whose record the full validator found valid."""
        if key is not None and len(self._valid) < LIMIT:
            self._valid.add(key)
