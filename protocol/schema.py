"""The shipped record schemas (package `schemas`), by `$id` and by kind, with fast validation.

The verdict comes from jsonschema-rs (compiled once per schema, about 1.4 µs a sample group);
only an invalid record is run through jsonschema's Draft 2020-12 validator to list every
problem with a JSON pointer. Patterns follow ECMA-262 (`$` does not match before a final
newline), as fastjsonschema, which the field memo (protocol.schema_memo) compiles with, does
too; tests/protocol/test_schema_rs.py proves the verdicts equal. References resolve only
among the loaded schemas: nothing is ever fetched.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

import fastjsonschema
import jsonschema_rs

from protocol.canonical import bytes_digest
from protocol.errors import ConfigError, Problem, ValidationFailed, short_repr
from protocol.schema_memo import FieldMemo

if TYPE_CHECKING:  # imported when a record is invalid (`SchemaSet._details`), not before:
    # a harvest worker that meets only valid records never loads them (about 3 MB a process)
    import jsonschema
    from jsonschema.exceptions import ValidationError

_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})  # values, not schemas
_ID = re.compile(r"/v(?P<version>\d+)/(?P<kind>[A-Za-z0-9_-]+)\.schema\.json$")


# The shipped schemas that admit numbers only in some top-level fields (the field itself or
# the values of its object), by `$id`: a record valid against one of them, with no float in
# those fields, holds no float at all (`protocol.canonical.no_float_in`; the verifier's fast
# path relies on it). tests/protocol/test_verify_fast.py derives the fields from the schema.
GROUP_SCHEMA = "https://w3id.org/biobank-federation/schemas/v2/sample-group.schema.json"
NUMBER_FIELDS: dict[str, tuple[str, ...]] = {GROUP_SCHEMA: ("age", "period", "samples", "donors")}


def _pointer(parts: Iterable[object]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class SchemaSet:
    """All record schemas of one release: look-up by `$id` or kind, validation, problems."""

    def __init__(self, schemas: Iterable[Mapping[str, Any]]) -> None:
        self._by_id: dict[str, dict[str, Any]] = {}
        self._kind_of: dict[str, str] = {}
        latest: dict[str, tuple[int, str]] = {}
        for schema in schemas:
            sid = schema.get("$id")
            match = _ID.search(sid) if isinstance(sid, str) else None
            if sid is None or match is None:
                raise ConfigError(
                    f"schema $id {sid!r} does not end in /v<version>/<kind>.schema.json"
                )
            if sid in self._by_id:
                raise ConfigError(f"schema $id {sid!r} is loaded twice")
            self._by_id[sid] = copy.deepcopy(dict(schema))
            kind, version = match["kind"], int(match["version"])
            self._kind_of[sid] = kind
            if kind not in latest or latest[kind][0] < version:
                latest[kind] = (version, sid)
        self._latest = {kind: sid for kind, (_, sid) in latest.items()}
        self._registry: Any = None  # the reference validator's (`_details`), made when needed
        self._fast: dict[str, Callable[[Any], Any]] = {}
        self._enum_formats: dict[str, Callable[[Any], bool]] = {}
        self._detailed: dict[str, jsonschema.Draft202012Validator] = {}
        self._rs: dict[str, Any] = {}  # $id -> jsonschema_rs validator
        self._rs_registry: Any = None
        self._memos: dict[str, FieldMemo] = {}

    @classmethod
    def default(cls) -> SchemaSet:
        """The schemas shipped in the `schemas` package (`*.schema.json`)."""
        root = resources.files("schemas")
        return cls(
            json.loads(p.read_text("utf-8"))
            for p in sorted(root.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".schema.json")
        )

    @property
    def ids(self) -> list[str]:
        return sorted(self._by_id)

    @property
    def kinds(self) -> list[str]:
        return sorted(self._latest)

    def schema_id(self, kind: str) -> str:
        """The `$id` of the newest schema for `kind`."""
        try:
            return self._latest[kind]
        except KeyError:
            raise ConfigError(
                f"no schema for kind {kind!r} (known: {', '.join(self.kinds)})"
            ) from None

    def kind_of(self, schema_id: str) -> str:
        """The record kind a schema `$id` describes."""
        return self._kind_of[self._resolve(schema_id)]

    def schema(self, kind_or_id: str) -> dict[str, Any]:
        return self._by_id[self._resolve(kind_or_id)]

    def knows(self, kind_or_id: str) -> bool:
        return kind_or_id in self._by_id or kind_or_id in self._latest

    def _resolve(self, kind_or_id: str) -> str:
        if kind_or_id in self._by_id:
            return kind_or_id
        if kind_or_id in self._latest:
            return self._latest[kind_or_id]
        raise ConfigError(f"unknown schema {kind_or_id!r}")

    def _fast_validator(self, sid: str) -> Callable[[Any], Any]:
        fast = self._fast.get(sid)
        if fast is None:
            fast = self._fast[sid] = self._compile_fragment(self._by_id[sid])
        return fast

    def _fast_form(self, schema: dict[str, Any]) -> dict[str, Any]:
        """A copy for fastjsonschema (which rewrites $refs in place) with string enums as sets.

        fastjsonschema tests an enum member by member (slow for long code lists); a string
        enum becomes `type: string` plus a custom format backed by a frozenset: same verdict.
        """
        copied: dict[str, Any] = copy.deepcopy(schema)
        stack: list[Any] = [copied]
        depth: dict[int, int] = {}
        while stack:
            node = stack.pop()
            if isinstance(node, list):
                stack.extend(node)
                continue
            if not isinstance(node, dict):
                continue
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/") and depth.get(id(node), 0) < 8:
                # inline local definitions: saves a call and a name string per value
                target = copied.get("$defs", {}).get(ref[len("#/$defs/") :])
                if isinstance(target, dict) and "$id" not in target:
                    del node["$ref"]
                    inlined = copy.deepcopy(target)
                    if node:
                        node.setdefault("allOf", []).append(inlined)
                        child: Any = inlined
                    else:
                        node.update(inlined)
                        child = node
                    depth[id(child)] = depth.get(id(node), 0) + 1
                    stack.append(child)
                    continue
            enum = node.get("enum")
            if (
                isinstance(enum, list)
                and enum
                and all(type(v) is str for v in enum)
                and "format" not in node
                and node.get("type", "string") == "string"
            ):
                name = f"enum-set-{len(self._enum_formats)}"
                self._enum_formats[name] = frozenset(enum).__contains__
                del node["enum"]
                node["type"] = "string"
                node["format"] = name
            stack.extend(v for k, v in node.items() if k not in _DATA_KEYWORDS)
        return copied

    def _handler(self, uri: str) -> dict[str, Any]:
        try:
            return self._fast_form(self._by_id[uri])
        except KeyError:
            raise ConfigError(f"schema reference {uri!r} is not among the loaded schemas") from None

    def field_memo(self, kind_or_id: str) -> FieldMemo:
        """The memo of valid, clean field values of a schema (protocol.schema_memo)."""
        sid = self._resolve(kind_or_id)
        memo = self._memos.get(sid)
        if memo is None:
            memo = self._memos[sid] = FieldMemo(self._by_id[sid], self._compile_fragment)
        return memo

    def known_digest(self, kind_or_id: str, record: Any) -> str | None:
        """`sha256:<hex>` of the canonical bytes of a record the field memo knows valid and
        clean (computed on orjson's bytes, which are then the canonical ones); None when the
        memo does not know it, and the caller takes the full path (`canonical.digest`, then
        `problems`). A record with a digest here has no schema problems."""
        data = (
            self.field_memo(kind_or_id).canonical_bytes(record) if self.knows(kind_or_id) else None
        )
        return None if data is None else bytes_digest(data)

    def _compile_fragment(self, schema: dict[str, Any]) -> Callable[[Any], Any]:
        handler = self._handler
        return fastjsonschema.compile(
            self._fast_form(schema),
            handlers={"https": handler, "http": handler},
            formats=self._enum_formats,
        )

    def _rs_validator(self, sid: str) -> Any:
        validator = self._rs.get(sid)
        if validator is None:
            try:
                if self._rs_registry is None:
                    self._rs_registry = jsonschema_rs.Registry(list(self._by_id.items()))
                validator = jsonschema_rs.Draft202012Validator(
                    self._by_id[sid], registry=self._rs_registry, offline=True
                )
            except ValueError as exc:  # a $ref outside the loaded schemas (never fetched)
                raise ConfigError(
                    f"schema {sid!r}: a reference is not among the loaded schemas ({exc})"
                ) from None
            self._rs[sid] = validator
        return validator

    def _fast_verdict(self, sid: str, record: Any) -> bool:
        """True when `record` is valid (jsonschema-rs); a value that is no JSON type (which
        jsonschema-rs refuses to convert) is not valid."""
        validator = self._rs_validator(sid)
        try:
            return bool(validator.is_valid(record))
        except ValueError:  # "Unsupported type": not a JSON value
            return False

    def verdict(self, kind_or_id: str) -> Callable[[Any], bool]:
        """The compiled jsonschema-rs verdict of one schema, for a tight loop over records
        parsed from JSON (it raises ValueError on a value of no JSON type)."""
        return self._rs_validator(self._resolve(kind_or_id)).is_valid  # type: ignore[no-any-return]

    def number_fields(self, kind_or_id: str) -> tuple[str, ...] | None:
        """The top-level fields where a record valid against this schema can hold a number
        (the field or the values of its object), when known: `NUMBER_FIELDS` of its `$id`,
        and only while the schema loaded under that `$id` is the shipped one. None: a number
        may be anywhere."""
        sid = self._resolve(kind_or_id)
        fields = NUMBER_FIELDS.get(sid)
        if fields is None or self._by_id[sid] != _shipped(sid):
            return None
        return fields

    def is_valid(self, kind_or_id: str, record: Any) -> bool:
        """The fast verdict alone."""
        return self._fast_verdict(self._resolve(kind_or_id), record)

    def problems(self, kind_or_id: str, record: Any, location: str) -> list[Problem]:
        """Every problem of `record` against the schema; [] when valid.

        An unknown kind or `$id` is reported as one problem, so a record in a signed log that
        names a schema this release does not know is rejected, never crashes a harvest.
        """
        if not self.knows(kind_or_id):
            return [Problem(location, "/", kind_or_id, f"unknown schema {kind_or_id!r}")]
        sid = self._resolve(kind_or_id)
        if self._fast_verdict(sid, record):
            return []
        found = self._details(sid, record, location)
        if found:
            return found
        # jsonschema differs from the ECMA-262 rule for `$` before a final newline; the fast
        # verdict's own first error then names the problem
        try:
            error = next(iter(self._rs_validator(sid).iter_errors(record)), None)
        except ValueError as exc:
            return [Problem(location, "/", short_repr(record), f"not a JSON value: {exc}")]
        if error is None:  # pragma: no cover - only if the verdict and its errors disagree
            return [Problem(location, "/", None, "record is not valid")]
        pointer = _pointer(error.instance_path)
        return [Problem(location, pointer or "/", error.instance, error.message)]

    def validate(self, kind_or_id: str, record: Any, location: str) -> None:
        """Raise ValidationFailed listing every problem unless `record` is valid."""
        found = self.problems(kind_or_id, record, location)
        if found:
            raise ValidationFailed(f"{location}: {len(found)} schema problem(s)", found)

    def _details(self, sid: str, record: Any, location: str) -> list[Problem]:
        import jsonschema  # (not at import: see above)
        import referencing
        from jsonschema.exceptions import best_match
        from referencing.jsonschema import DRAFT202012

        if self._registry is None:
            self._registry = referencing.Registry().with_resources(
                (sid, referencing.Resource.from_contents(s, default_specification=DRAFT202012))
                for sid, s in self._by_id.items()
            )
        validator = self._detailed.get(sid)
        if validator is None:
            validator = jsonschema.Draft202012Validator(
                self._by_id[sid],
                registry=self._registry,
                format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
            )
            self._detailed[sid] = validator
        out: dict[tuple[str, str], Problem] = {}
        for error in sorted(validator.iter_errors(record), key=lambda e: _pointer(e.absolute_path)):
            if error.context:
                error = best_match(error.context)
            for problem in _to_problems(error, location):
                out.setdefault((problem.field, problem.reason), problem)
        return list(out.values())


@functools.cache
def _shipped(sid: str) -> dict[str, Any] | None:
    """The shipped schema of `$id` `sid` (None: none is shipped)."""
    shipped = SchemaSet.default()
    return shipped.schema(sid) if sid in shipped.ids else None


def _to_problems(error: ValidationError, location: str) -> list[Problem]:
    path = list(error.absolute_path)
    pointer = _pointer(path)
    instance = error.instance
    name = str(path[-1]) if path and isinstance(path[-1], str) else (pointer or "record")
    kind = error.validator
    if kind == "required" and isinstance(instance, dict):
        required = error.validator_value if isinstance(error.validator_value, list) else []
        return [
            Problem(location, pointer + _pointer([r]), None, "required field is missing")
            for r in required
            if r not in instance
        ] or [Problem(location, pointer or "/", None, error.message)]
    if kind == "additionalProperties" and isinstance(instance, dict):
        props = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        pats = error.schema.get("patternProperties", {}) if isinstance(error.schema, dict) else {}
        extra = [k for k in instance if k not in props and not any(re.search(p, k) for p in pats)]
        return [
            Problem(
                location, pointer + _pointer([k]), instance[k], f"field {k!r} is not allowed here"
            )
            for k in extra
        ]
    if kind == "enum":
        return [
            Problem(location, pointer or "/", instance, f"unknown code {instance!r} for {name}")
        ]
    if kind == "const":
        return [Problem(location, pointer or "/", instance, f"must be {error.validator_value!r}")]
    return [Problem(location, pointer or "/", instance, error.message)]
