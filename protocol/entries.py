"""Log entries (leaves): building them, and parsing leaf bytes with every shape check.

One envelope for node and catalogue logs: `log`, `index`, `op`, `time`, plus per-op fields.
Node ops: `publish` (kind, id, schema, digest), `withdraw` (kind, id), `rotate-key` (key).
Catalogue ops: `enrol` (node, url, key, country, from_size), `retire` (node),
`revoke` (node, key, revoked_key, from_size), `checkpoint` (node, checkpoint).
No other fields are allowed.
"""

from __future__ import annotations

import re
import time as _time
from collections.abc import Collection
from typing import Any

import orjson

from protocol.canonical import CANONICAL_OPTIONS, canonical, parse_canonical
from protocol.errors import ConfigError, IndexOrderError, MalformedEntry, OriginMismatch
from protocol.note import Verifier

OPS = ("publish", "withdraw", "rotate-key")
CATALOGUE_OPS = ("enrol", "retire", "revoke", "checkpoint")
KINDS = ("biobank", "collection", "sample-group")

ENVELOPE = frozenset({"log", "index", "op", "time"})
FIELDS: dict[str, frozenset[str]] = {
    "publish": frozenset({"kind", "id", "schema", "digest"}),
    "withdraw": frozenset({"kind", "id"}),
    "rotate-key": frozenset({"key"}),
    "enrol": frozenset({"node", "url", "key", "country", "from_size"}),
    "retire": frozenset({"node"}),
    "revoke": frozenset({"node", "key", "revoked_key", "from_size"}),
    "checkpoint": frozenset({"node", "checkpoint"}),
}
_ALLOWED = {op: ENVELOPE | fields for op, fields in FIELDS.items()}

# ASCII digits only (RFC 3339): re.ASCII, or \d would match any Unicode digit
_TIME = re.compile(
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\dZ", re.ASCII
)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_time_match = _TIME.fullmatch
_HEX_DIGITS = b"0123456789abcdef"
_PUBLISH_KEYS = _ALLOWED["publish"]
# `time` values already matched by _TIME (a log's entries share few): a set lookup instead of
# the regular expression; cleared when it grows past _TIMES_MAX
_TIMES_SEEN: set[str] = set()
_TIMES_MAX = 4096


def utc_now() -> str:
    """The current time as RFC 3339 UTC with whole seconds, e.g. "2026-11-22T23:07:36Z"."""
    return _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime())


def _bad(where: str, field: str, value: object, reason: str) -> MalformedEntry:
    return MalformedEntry(f"{where}: field {field!r}={value!r:.80}: {reason}")


def _nonempty_str(entry: dict[str, Any], field: str, where: str) -> None:
    value = entry[field]
    if type(value) is not str or not value:
        raise _bad(where, field, value, "must be a non-empty string")


def _count(entry: dict[str, Any], field: str, where: str) -> None:
    value = entry[field]
    if type(value) is not int or value < 0:
        raise _bad(where, field, value, "must be an integer >= 0")


def _key(entry: dict[str, Any], field: str, where: str) -> None:
    _nonempty_str(entry, field, where)
    try:
        Verifier.from_key(entry[field])
    except ConfigError as exc:
        raise _bad(where, field, entry[field], f"not a verifier key ({exc.message})") from exc


def check_entry(entry: dict[str, Any], where: str, allowed_ops: Collection[str] = OPS) -> None:
    """Check an entry's fields and values; MalformedEntry names `where` and the field."""
    op = entry.get("op")
    if op not in allowed_ops or not isinstance(op, str):
        raise _bad(where, "op", op, f"must be one of {', '.join(allowed_ops)}")
    keys = entry.keys()
    allowed = _ALLOWED[op]
    if keys != allowed:
        missing = sorted(allowed - keys)
        extra = sorted(keys - allowed)
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(extra)}"] if extra else []
        )
        raise MalformedEntry(f"{where}: {op} entry has wrong fields: {'; '.join(parts)}")
    _nonempty_str(entry, "log", where)
    _count(entry, "index", where)
    t = entry["time"]
    if type(t) is not str or not _TIME.fullmatch(t):
        raise _bad(where, "time", t, "must be RFC 3339 UTC with seconds, like 2026-11-22T23:07:36Z")
    if op in ("publish", "withdraw"):
        if entry["kind"] not in KINDS:
            raise _bad(where, "kind", entry["kind"], f"must be one of {', '.join(KINDS)}")
        _nonempty_str(entry, "id", where)
        if op == "publish":
            _nonempty_str(entry, "schema", where)
            d = entry["digest"]
            if type(d) is not str or not _DIGEST.fullmatch(d):
                raise _bad(where, "digest", d, "must be sha256: and 64 lower-case hex digits")
    elif op == "rotate-key":
        _key(entry, "key", where)
    else:
        _nonempty_str(entry, "node", where)
        if op in ("enrol", "revoke"):
            _key(entry, "key", where)
            _count(entry, "from_size", where)
        if op == "enrol":
            _nonempty_str(entry, "url", where)
            if type(entry["country"]) is not str or not _COUNTRY.fullmatch(entry["country"]):
                raise _bad(where, "country", entry["country"], "must be ISO 3166-1 alpha-2")
        elif op == "revoke":
            _key(entry, "revoked_key", where)
        elif op == "checkpoint":
            _nonempty_str(entry, "checkpoint", where)


def make_entry(
    *,
    log: str,
    index: int,
    op: str,
    time: str,
    kind: str | None = None,
    id: str | None = None,
    schema: str | None = None,  # noqa: A002 - protocol name
    digest: str | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """A checked node-log entry; ValueError (a MalformedEntry) when a field is wrong."""
    entry: dict[str, Any] = {"log": log, "index": index, "op": op, "time": time}
    for name, value in (
        ("kind", kind),
        ("id", id),
        ("schema", schema),
        ("digest", digest),
        ("key", key),
    ):
        if value is not None:
            entry[name] = value
    _check_made(entry, OPS)
    return entry


def make_catalogue_entry(
    *, log: str, index: int, op: str, time: str, **fields: Any
) -> dict[str, Any]:
    """A checked catalogue-log entry (enrol, retire, revoke, checkpoint)."""
    entry: dict[str, Any] = {"log": log, "index": index, "op": op, "time": time, **fields}
    _check_made(entry, CATALOGUE_OPS)
    return entry


def _check_made(entry: dict[str, Any], ops: Collection[str]) -> None:
    try:
        check_entry(entry, f"new entry {entry.get('index')!r}", ops)
        canonical(entry)
    except MalformedEntry as exc:
        raise ValueError(exc.message) from exc


def parse_leaf(
    leaf: bytes, *, expected_log: str, expected_index: int, allowed_ops: Collection[str] = OPS
) -> dict[str, Any]:
    """Parse and check leaf bytes at position `expected_index` of log `expected_log`.

    Raises NonCanonicalError (not RFC 8785 bytes), MalformedEntry (wrong shape or values),
    OriginMismatch (another log) or IndexOrderError (another index); each names the index.

    The common leaf, a well-formed `publish` entry at the expected place, is accepted by
    `_valid_publish` (every check of `parse_leaf_reference`, inlined); anything else, and
    every refusal, goes through `parse_leaf_reference`, so errors are the reference's.
    """
    if "publish" in allowed_ops and leaf.isascii():
        try:
            entry = _loads(leaf)
        except orjson.JSONDecodeError:
            entry = None
        if type(entry) is dict and _valid_publish(leaf, entry, expected_log, expected_index):
            return entry
    return parse_leaf_reference(
        leaf, expected_log=expected_log, expected_index=expected_index, allowed_ops=allowed_ops
    )


_loads = orjson.loads
_dumps = orjson.dumps


def _valid_publish(leaf: bytes, entry: dict[str, Any], log: str, index: int) -> bool:
    """True when ASCII `leaf`, parsed to `entry`, is a canonical, well-formed publish entry at
    `index` of `log`: exactly what `parse_leaf_reference` accepts among publish entries.

    Each value is checked for its exact type, so the entry holds only strings and integers; the
    leaf is ASCII, so every string is NFC and keys sort the same by UTF-16 code units: orjson's
    sorted-key strict-integer encoding is then the canonical form, and comparing it with the
    leaf refuses whitespace, other key orders, escapes and duplicate keys. False (never an
    error) sends the caller down the reference path, which says what is wrong.
    """
    if entry.keys() != _PUBLISH_KEYS or entry["op"] != "publish":
        return False
    value = entry["log"]
    if type(value) is not str or not value or value != log:
        return False
    value = entry["index"]
    if type(value) is not int or value != index or value < 0:
        return False
    value = entry["time"]
    if type(value) is not str:
        return False
    if value not in _TIMES_SEEN:
        if not _time_match(value):
            return False
        if len(_TIMES_SEEN) >= _TIMES_MAX:
            _TIMES_SEEN.clear()
        _TIMES_SEEN.add(value)
    if entry["kind"] not in KINDS:
        return False
    value = entry["id"]
    if type(value) is not str or not value:
        return False
    value = entry["schema"]
    if type(value) is not str or not value:
        return False
    value = entry["digest"]
    if (  # _DIGEST.fullmatch, cheaper: 71 ASCII characters, "sh:" left when hex digits go
        type(value) is not str
        or len(value) != 71
        or not value.isascii()
        or value.encode().translate(None, _HEX_DIGITS) != b"sh:"
        or not value.startswith("sha256:")
    ):
        return False
    try:
        return _dumps(entry, option=CANONICAL_OPTIONS) == leaf
    except orjson.JSONEncodeError:  # an index beyond ±(2^53−1): the reference path says so
        return False


def parse_leaf_reference(
    leaf: bytes, *, expected_log: str, expected_index: int, allowed_ops: Collection[str] = OPS
) -> dict[str, Any]:
    """`parse_leaf` step by step (`parse_canonical`, `check_entry`, index, log): the reference
    for its fast path, and the path of every leaf that path does not accept."""
    where = f"leaf {expected_index}"
    entry = parse_canonical(leaf, what=where)
    if type(entry) is not dict:
        raise MalformedEntry(f"{where}: not a JSON object")
    check_entry(entry, where, allowed_ops)
    if entry["index"] != expected_index:
        raise IndexOrderError(f"{where}: carries index {entry['index']}, expected {expected_index}")
    if entry["log"] != expected_log:
        raise OriginMismatch(f"{where}: belongs to log {entry['log']!r}, expected {expected_log!r}")
    return entry


# A publish leaf's canonical bytes: DIGEST_MARK, 64 hex digits, ID_MARK, the id, INDEX_MARK,
# the index's digits, then the rest (kind, log, op, schema, time), its "tail"
DIGEST_MARK = b'{"digest":"sha256:'
ID_MARK = b'","id":"'
INDEX_MARK = b'","index":'
MAX_INDEX = 2**53 - 1  # larger: parse_leaf refuses it (orjson's strict integers)
# the bytes an id may hold to be read off a leaf: printable ASCII that JSON writes as itself
# (no quote, no backslash, no control character, no DEL)
ID_BYTES = bytes(b for b in range(0x20, 0x7F) if b not in b'"\\')
TAILS = 1_024  # tails remembered per log (under 1 KB each; a log's leaves share a few: one
# per second of its imports, in order, so a full memo starts over and relearns)
_TAIL_FIELDS = ("kind", "log", "op", "schema", "time")


class LeafShapes:
    """The publish leaves of ONE log read off their bytes, in the shape of its earlier leaves.

    `learn(leaf, index, entry)` remembers the tail of a leaf `parse_leaf` accepted at `index`
    of the log. A later leaf made of DIGEST_MARK, the digest, ID_MARK, an id of ID_BYTES,
    INDEX_MARK, exactly its index's digits and a remembered tail is that entry but for its
    digest, id and index: ASCII and canonical (sorted members, strings without escapes, the
    integer's digits), every member of the tail checked for the first leaf, the id a non-empty
    string, the index the expected one. `read(leaf, index, digest)` gives that entry when the
    leaf's digest is `digest` (the caller's, computed from the content: well-formed by
    construction), else None, and the caller parses the leaf (`parse_leaf`), which says what
    is wrong if anything is. The same reading as the auditor's (`audit.examine`);
    tests/protocol/test_verify_fast.py compares it with `parse_leaf` on edited leaves."""

    __slots__ = ("tails",)

    def __init__(self) -> None:
        self.tails: dict[bytes, dict[str, Any]] = {}

    def learn(self, leaf: bytes, index: int, entry: dict[str, Any]) -> None:
        """Remember the tail of a publish leaf `parse_leaf` accepted at `index` of the log."""
        if entry.get("op") != "publish" or not (
            leaf.startswith(DIGEST_MARK) and leaf[82:90] == ID_MARK and leaf.isascii()
        ):
            return
        id_end = leaf.find(INDEX_MARK, 90)
        digits = b"%d" % index
        after = id_end + 10 + len(digits)
        if id_end > 90 and leaf[id_end + 10 : after] == digits and leaf[after : after + 1] == b",":
            tails = self.tails
            if len(tails) >= TAILS:
                tails.clear()
            tails[leaf[after:]] = {name: entry[name] for name in _TAIL_FIELDS}

    def read(self, leaf: bytes, index: int, digest: str) -> dict[str, Any] | None:
        """The entry `parse_leaf` returns for `leaf` at `index`, when the leaf is in a learnt
        shape and carries `digest` (a well-formed one); None: parse the leaf instead."""
        if (
            index > MAX_INDEX
            or leaf[11:82] != digest.encode()
            or not leaf.startswith(DIGEST_MARK)
            or leaf[82:90] != ID_MARK
        ):
            return None
        id_end = leaf.find(INDEX_MARK, 90)
        if id_end <= 90:
            return None
        digits = b"%d" % index
        after = id_end + 10 + len(digits)
        if leaf[id_end + 10 : after] != digits:
            return None
        tail = self.tails.get(leaf[after:])
        rid = leaf[90:id_end]
        if tail is None or rid.translate(None, ID_BYTES):
            return None
        return {"digest": digest, "id": rid.decode(), "index": index, **tail}
