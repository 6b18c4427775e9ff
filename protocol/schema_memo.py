"""Remembering field values already found valid, so most records skip the full validator.

For a schema whose top level is only `type: object`, `properties`, `required`,
`additionalProperties: false` and annotations, a record is valid exactly when it is an object
holding every required field, no field outside `properties`, and each field's value is valid
against that field's own subschema. `FieldMemo` checks the first two on every call and
remembers, per field, the values its own subschema (compiled by the same library, with the
schema's `$defs`) found valid. Records of one log repeat the same few values field by field
(sample types, age bands, diagnoses...), so nearly every record is checked from the memo.

Fields whose subschema is only `type: string` and a `pattern` ("free" fields: `id` and
`nonce`, unique per record) are not remembered: their pattern is checked on every call.

The memo also requires every value to be *clean*: its RFC 8785 canonical bytes are exactly
orjson's sorted-key bytes (no float, no integer beyond ±(2^53−1), no non-NFC string, no key
needing UTF-16 ordering; see protocol.canonical). A record the memo accepts is therefore
valid *and* has canonical bytes `orjson.dumps(record, option=OPT_SORT_KEYS |
OPT_STRICT_INTEGER)`, which lets an auditor check a content digest without the canonical
walk. Anything the memo does not accept goes to the full validator, so the memo never changes
a verdict (tests/protocol/test_fast_paths.py proves it on awkward and generated records).

"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

import fastjsonschema
import orjson

from protocol.canonical import canonical

_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "examples"})
_TOP = _ANNOTATIONS | {"type", "properties", "required", "additionalProperties", "$defs"}
_FREE = _ANNOTATIONS | {"type", "pattern"}
_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER

__all__ = ["LIMIT", "FieldMemo", "Validator", "free_fields", "is_clean"]
LIMIT = 65_536  # values remembered per field; when full, that field's memo starts over

Validator = Callable[[Any], Any]  # raises fastjsonschema.JsonSchemaValueException when invalid


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
        if (
            isinstance(sub, dict)
            and set(sub) == {"$ref"}
            and isinstance(sub["$ref"], str)
            and sub["$ref"].startswith("#/$defs/")
            and isinstance(defs, dict)
        ):
            sub = defs.get(sub["$ref"][len("#/$defs/") :])
        if (
            isinstance(sub, dict)
            and set(sub) <= _FREE
            and sub.get("type") == "string"
            and isinstance(sub.get("pattern"), str)
        ):
            out[name] = {"type": "string", "pattern": sub["pattern"]}
    return out


def _eligible(schema: Mapping[str, Any]) -> bool:
    props = schema.get("properties")
    return (
        set(schema) <= _TOP
        and schema.get("type") == "object"
        and schema.get("additionalProperties") is False
        and isinstance(props, dict)
        and all(type(k) is str and k.isascii() for k in props)
        and isinstance(schema.get("required", []), list)
    )


def is_clean(value: Any) -> bool:
    """True when `value` has canonical bytes and they are orjson's sorted-key bytes."""
    try:
        return canonical(value) == orjson.dumps(value, option=_OPTS)
    except (ValueError, TypeError):  # orjson.JSONEncodeError is a TypeError
        return False


def _free_value_ok(check: Validator, value: Any) -> bool:
    """A free field's value: a string matching its pattern, and NFC (so it is clean)."""
    if type(value) is not str:
        return False
    try:
        check(value)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return value.isascii() or unicodedata.is_normalized("NFC", value)


class FieldMemo:
    """The valid, clean field values of one schema; `accepts(record)` is True only for a
    valid record whose canonical bytes are orjson's sorted-key bytes."""

    def __init__(
        self, schema: Mapping[str, Any], compile_field: Callable[[dict[str, Any]], Validator]
    ) -> None:
        self.active = _eligible(schema)
        self.schema = schema
        self.required: frozenset[str] = frozenset()
        self.fields: dict[str, Validator] = {}  # free fields: their pattern, checked each time
        self._subschemas: dict[str, dict[str, Any]] = {}
        self._checks: dict[str, Validator] = {}
        self._seen: dict[str, set[Any]] = {}
        self._compile = compile_field
        if not self.active:
            return
        self.required = frozenset(schema.get("required", ()))
        self.fields = {
            name: fastjsonschema.compile(sub) for name, sub in free_fields(schema).items()
        }
        root = {k: schema[k] for k in ("$schema", "$id", "$defs") if k in schema}
        for name, sub in schema["properties"].items():
            if name not in self.fields:
                self._subschemas[name] = {**root, **sub} if isinstance(sub, dict) else sub
                self._seen[name] = set()

    def accepts(self, record: Any) -> bool:
        """True: `record` is valid and clean. False: not known so; ask the full validator."""
        if not self.active or type(record) is not dict or not self.required.issubset(record):
            return False
        seen_by_field = self._seen
        for name, value in record.items():
            seen = seen_by_field.get(name)
            if seen is None:
                check = self.fields.get(name)
                if check is None or not _free_value_ok(check, value):
                    return False  # a field outside `properties`, or a bad free field
                continue
            if type(value) is str:
                key: Any = value
            else:
                try:
                    key = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
                except TypeError:
                    return False
            if key not in seen and not self._learn(name, value, key, seen):
                return False
        return True

    def canonical_bytes(self, record: Any) -> bytes | None:
        """The canonical bytes of a record :meth:`accepts` (orjson's sorted-key bytes, which
        are then the canonical ones); None when not known valid and clean."""
        return orjson.dumps(record, option=_OPTS) if self.accepts(record) else None

    def _learn(self, name: str, value: Any, key: Any, seen: set[Any]) -> bool:
        check = self._checks.get(name)
        if check is None:
            check = self._checks[name] = self._compile(self._subschemas[name])
        try:
            check(value)
        except fastjsonschema.JsonSchemaValueException:
            return False
        if not is_clean(value):
            return False
        if len(seen) >= LIMIT:
            seen.clear()
        seen.add(key)
        return True
