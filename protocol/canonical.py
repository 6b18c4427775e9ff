"""RFC 8785 (JCS) canonical bytes for log entries and records, with a strict parser.

`canonical()` is the fast path: a type walk (no floats, integers within ±(2^53−1), string
keys, NFC strings) then orjson with sorted keys. orjson escapes strings exactly as
ECMAScript JSON.stringify does and sorts keys by code point, which equals JCS's UTF-16
order unless a key holds an astral character; such dicts are re-ordered by UTF-16 code
units first. `canonical_reference()` is the `rfc8785` package, used by tests to prove the
two byte-identical.

Decision on Unicode normalisation: strings MUST be NFC (federation.md). Producers
normalise (see `nfc()`); `canonical()` refuses non-NFC strings with ValueError, and
`parse_canonical()` therefore refuses leaf bytes holding them with NonCanonicalError.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any

import orjson
import rfc8785

from protocol.errors import NonCanonicalError, short_repr

MAX_SAFE_INTEGER = 2**53 - 1
_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
# orjson's options for canonical bytes of values that need no UTF-16 key sort (see canonical())
CANONICAL_OPTIONS = _OPTS


class _NeedsUtf16Sort(Exception):
    """Internal signal: some dict key holds an astral character."""


def _is_nfc(s: str) -> bool:
    return s.isascii() or unicodedata.is_normalized("NFC", s)


def _has_astral(s: str) -> bool:
    return not s.isascii() and any(ord(c) > 0xFFFF for c in s)


def _check(obj: Any) -> bool:
    """True when `obj` is canonicalisable; False when some dict key needs UTF-16 sorting.

    Raises ValueError (with the JSON pointer of the first bad value) otherwise.
    """
    plain = True
    stack = [obj]
    pop, push = stack.pop, stack.append
    while stack:
        x = pop()
        t = type(x)
        if t is str:
            if not (x.isascii() or unicodedata.is_normalized("NFC", x)):
                raise ValueError(_explain(obj))
        elif t is dict:
            for k, v in x.items():
                if type(k) is not str:
                    raise ValueError(_explain(obj))
                if not k.isascii():
                    if not unicodedata.is_normalized("NFC", k):
                        raise ValueError(_explain(obj))
                    if plain and _has_astral(k):
                        plain = False
                push(v)
        elif t is list or t is tuple:
            stack.extend(x)
        elif t is int:
            if not -MAX_SAFE_INTEGER <= x <= MAX_SAFE_INTEGER:
                raise ValueError(_explain(obj))
        elif not (x is None or t is bool):
            raise ValueError(_explain(obj))
    return plain


def _explain(obj: Any) -> str:
    """The message for the first value that cannot be canonicalised (slow path, errors only)."""
    found = _find_bad(obj, "")
    if found is None:  # pragma: no cover - only reached if _check and _find_bad disagree
        return "value cannot be canonicalised"
    pointer, value, reason = found
    return f"cannot canonicalise {pointer or '/'}={short_repr(value)}: {reason}"


def _find_bad(x: Any, pointer: str) -> tuple[str, object, str] | None:
    t = type(x)
    if t is str:
        return None if _is_nfc(x) else (pointer, x, "string is not NFC-normalised")
    if t is int:
        if -MAX_SAFE_INTEGER <= x <= MAX_SAFE_INTEGER:
            return None
        return (pointer, x, "integer outside ±(2^53−1)")
    if x is None or t is bool:
        return None
    if t is float:
        return (pointer, x, "floats are not allowed in records")
    if t is dict:
        for k, v in x.items():
            if type(k) is not str:
                return (pointer, k, "object keys must be strings")
            child = pointer + "/" + k.replace("~", "~0").replace("/", "~1")
            if not _is_nfc(k):
                return (child, k, "object key is not NFC-normalised")
            found = _find_bad(v, child)
            if found:
                return found
        return None
    if t is list or t is tuple:
        for i, v in enumerate(x):
            found = _find_bad(v, f"{pointer}/{i}")
            if found:
                return found
        return None
    return (pointer, x, f"type {t.__name__} is not a JSON value")


def _utf16_key(k: str) -> bytes:
    return k.encode("utf-16-be")


def _utf16_sorted(x: Any) -> Any:
    """A copy with every dict's items inserted in JCS (UTF-16 code unit) key order."""
    t = type(x)
    if t is dict:
        return {k: _utf16_sorted(x[k]) for k in sorted(x, key=_utf16_key)}
    if t is list or t is tuple:
        return [_utf16_sorted(v) for v in x]
    return x


def canonical(obj: Any) -> bytes:
    """RFC 8785 canonical bytes of `obj` (dict/list/str/int/bool/None only).

    Raises ValueError naming the JSON pointer of a float, an out-of-range integer, a
    non-string key, a non-NFC string or an unsupported type.
    """
    if _check(obj):
        return orjson.dumps(obj, option=_OPTS)
    return orjson.dumps(_utf16_sorted(obj), option=orjson.OPT_STRICT_INTEGER)


def _has_float(value: Any) -> bool:
    """True when a float is anywhere in `value` (dicts, lists and tuples walked; the first three
    levels unrolled, strings and integers passed over first: records are shallow, and a
    group's fields are mostly strings, small objects of integers and lists of strings or of
    small objects)."""
    t = type(value)
    if t is dict:
        items: Any = value.values()
    elif t is list or t is tuple:
        items = value
    else:
        return t is float
    for v in items:
        t = type(v)
        if t is str or t is int:
            continue
        if t is dict:
            for w in v.values():
                tw = type(w)
                if tw is not str and tw is not int and (tw is float or _has_float(w)):
                    return True
        elif t is list or t is tuple:
            for w in v:
                tw = type(w)
                if tw is str or tw is int:
                    continue
                if tw is dict:
                    for x in w.values():
                        tx = type(x)
                        if tx is not str and tx is not int and (tx is float or _has_float(x)):
                            return True
                elif tw is float or _has_float(w):
                    return True
        elif t is float:
            return True
    return False


def has_float(value: Any) -> bool:
    """True when a float is anywhere in `value` (dicts, lists and tuples walked)."""
    return _has_float(value)


def no_float_in(content: dict[str, Any], fields: tuple[str, ...]) -> bool:
    """No float in `fields` of `content` (the field itself, or the values of its object).

    For a record valid against a schema that admits numbers only there
    (`protocol.schema.NUMBER_FIELDS`): such a record with no float in them has none at all,
    so orjson's ASCII bytes of it are `canonical_parsed`'s without its walk of every value."""
    for name in fields:
        value: Any = content.get(name)
        kind = type(value)
        if kind is float:
            return False
        if kind is dict:
            for item in value.values():
                if type(item) is float:
                    return False
    return True


def canonical_parsed(value: Any) -> bytes:
    """RFC 8785 bytes of a value PARSED FROM JSON (dict, list, str, int, float, bool, None):
    `canonical(value)`, faster for the common case.

    orjson's sorted-key strict-integer bytes are the canonical ones when they are ASCII (every
    string and key then is NFC, and keys sort the same in UTF-16) and the value holds no float
    (a walk over dicts and lists only, half the cost of `canonical()`'s); anything else takes
    `canonical()` (same bytes or the same ValueError). Not for arbitrary Python
    objects: orjson also encodes UUIDs, enums and dataclasses, which `canonical()` refuses,
    and writes NaN as null (orjson.loads never returns NaN).
    tests/protocol/test_canonical_parsed.py proves it equal to `canonical_reference`.
    """
    try:
        data = orjson.dumps(value, option=_OPTS)
    except TypeError:  # orjson.JSONEncodeError: an integer beyond ±(2^53−1), a bad key...
        return canonical(value)  # raises the ValueError naming it
    if data.isascii() and not _has_float(value):
        return data
    return canonical(value)


def parsed_digest(value: Any) -> str:
    """`digest(value)` for a value parsed from JSON (see `canonical_parsed`)."""
    return bytes_digest(canonical_parsed(value))


def canonical_reference(obj: Any) -> bytes:
    """RFC 8785 bytes from the `rfc8785` reference package (slow; for tests and audits)."""
    return rfc8785.dumps(obj)


def parse_canonical(data: bytes, *, what: str = "data") -> Any:
    """Parse JSON `data`, raising NonCanonicalError unless it is exactly `canonical(parsed)`.

    This rejects whitespace, other key orders, other escapes, duplicate keys, floats,
    out-of-range integers and non-NFC strings. `what` names the data in messages
    ("leaf 17").
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise NonCanonicalError(f"{what} is not valid JSON: {exc}") from exc
    if type(value) is dict and _flat_ascii_canonical(data, value):
        return value
    try:
        again = canonical(value)
    except ValueError as exc:
        raise NonCanonicalError(f"{what} has no canonical form: {exc}") from exc
    if again != data:
        raise NonCanonicalError(
            f"{what} is not in RFC 8785 canonical form (first difference at byte "
            f"{_first_difference(data, again)})"
        )
    return value


def _flat_ascii_canonical(data: bytes, value: dict[str, Any]) -> bool:
    """The fast accept for log entries: ASCII `data` parsed to a dict of strings and integers.

    Such a value passes `_check` whenever orjson's strict-integer encoding succeeds (ASCII
    strings are NFC, ASCII keys sort the same in UTF-16), so `canonical(value)` is exactly
    that encoding; False (never a rejection) sends the caller down the full path.
    """
    if not data.isascii():
        return False
    for v in value.values():
        t = type(v)
        if t is not str and t is not int:
            return False
    try:
        return orjson.dumps(value, option=_OPTS) == data
    except orjson.JSONEncodeError:  # an integer beyond ±(2^53−1): the full path says so
        return False


def _first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def bytes_digest(data: bytes) -> str:
    """The content digest of bytes that are already canonical: `sha256:` + hex SHA-256."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest(obj: Any) -> str:
    """`sha256:` + hex SHA-256 of the canonical bytes of `obj`."""
    return bytes_digest(canonical(obj))


def nfc(obj: Any) -> Any:
    """A copy of `obj` with every string (keys included) NFC-normalised, for producers."""
    t = type(obj)
    if t is str:
        return obj if obj.isascii() else unicodedata.normalize("NFC", obj)
    if t is dict:
        return {nfc(k): nfc(v) for k, v in obj.items()}
    if t is list or t is tuple:
        return [nfc(v) for v in obj]
    return obj
