"""Pure verification of one harvest step of a node log: no I/O, streaming-friendly.

`StepVerifier(state, note, verifiers, schemas)` checks the signed checkpoint at once
(signature, origin, rollback, same-size equivocation); `feed(leaf, content)` then checks
each new leaf in order (canonical bytes, shape, index, origin, content digest, schema) and
`finish()` compares the rebuilt root with the signed one and returns the new TrustedState.
Callers fetch pages and feed them as they come, so no log is ever held in memory whole;
nothing is trusted until `finish()` returns.

Schema failures inside a validly signed log do not raise: they are returned as rejections
so one bad record never stalls a harvest. Every other failure raises a VerificationError.

Keys follow `protocol.keys.KeyHistory` (the trusted state carries it): the checkpoint is
verified against the key(s) in force before any entry is read; a `rotate-key` entry inside
the step then requires that this checkpoint (the first covering it) is signed by the old AND
the new key (MissingSignatureError otherwise), and the new key is in force afterwards.
Catalogue revocations in the history refuse signatures by a revoked key (RevokedKeyError).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from protocol.canonical import (
    CANONICAL_OPTIONS,
    bytes_digest,
    canonical_parsed,
    has_float,
    no_float_in,
)
from protocol.entries import LeafShapes, parse_leaf
from protocol.errors import (
    ConfigError,
    DigestMismatch,
    EquivocationError,
    IndexOrderError,
    MalformedEntry,
    Problem,
    RollbackError,
    RootMismatch,
)
from protocol.keys import KeyHistory
from protocol.merkle import CompactRange, leaf_hash
from protocol.note import Checkpoint, Verifier, verify_checkpoint
from protocol.schema import SchemaSet

# The one rule for a `publish` entry served without content (`content: null`) although no
# later `withdraw` entry erased it: the record is live, so its content must be served. The
# catalogue keeps such a record out of its index and lists it in the node's rejection report
# with this reason; the auditor recomputes the same live state and treats a missing content
# that the rejection report lists as the node's fault (a finding, not a failure), and one it
# does not list as the catalogue hiding a live record (a failure).
MISSING_CONTENT = (
    "a live record served without content: its publish entry was never withdrawn, so its "
    "content must be served (kept out of the index until the node publishes or withdraws "
    "the record again)"
)


@dataclass
class TrustedState:
    """What a verifier trusts about one log: the last accepted checkpoint and its tree."""

    origin: str
    size: int
    root: bytes
    compact: CompactRange
    checkpoint: str  # the signed note, verbatim
    keys: KeyHistory | None = None  # None: only the enrolled key (given to the verifier)

    def to_json(self) -> dict[str, Any]:
        d = {
            "origin": self.origin,
            "size": self.size,
            "root": base64.b64encode(self.root).decode("ascii"),
            "compact": self.compact.to_json(),
            "checkpoint": self.checkpoint,
        }
        if self.keys is not None:
            d["keys"] = self.keys.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], *, enrolled_key: str | None = None) -> TrustedState:
        """Load a state; one saved without a key history gets `enrolled_key` (if given)."""
        origin = d["origin"]
        if d.get("keys") is not None:
            keys: KeyHistory | None = KeyHistory.from_json(origin, d["keys"])
        else:
            keys = KeyHistory(origin, enrolled_key) if enrolled_key else None
        state = cls(
            origin,
            int(d["size"]),
            base64.b64decode(d["root"]),
            CompactRange.from_json(d["compact"]),
            d["checkpoint"],
            keys,
        )
        if state.compact.size != state.size or state.compact.root() != state.root:
            raise ValueError(
                f"trusted state for {state.origin!r} is inconsistent: its compact "
                "range does not rebuild its root"
            )
        return state


@dataclass(frozen=True)
class Rejection:
    """A record kept out of the index because it fails its schema."""

    index: int
    id: str
    problems: tuple[Problem, ...]


@dataclass(slots=True)
class VerifiedEntry:
    """One verified leaf: its parsed entry, bytes, content (None if erased) and problems.

    Read-only by convention, not frozen: one is made per leaf, and a frozen dataclass's
    `__init__` (an `object.__setattr__` per field) cost 0.8 µs a leaf, a slotted one 0.17."""

    index: int
    entry: dict[str, Any]
    leaf: bytes
    content: Any
    problems: tuple[Problem, ...] = ()
    leaf_hash: bytes = b""  # RFC 6962 leaf hash, already computed for the tree
    # the content's RFC 8785 bytes, already computed for its digest (None: no content), so
    # that a caller storing the content as JSON need not encode it again
    body: bytes | None = None

    @property
    def accepted(self) -> bool:
        """False when the content fails its schema (the entry itself still verified)."""
        return not self.problems


class StepVerifier:
    """Verify one checkpoint and the leaves it adds over a trusted state, leaf by leaf.

    The keys come from `keys`, else from the state's history, else `verifiers` (exactly one:
    the enrolled key); `verifiers` is ignored when a history is known.
    """

    def __init__(
        self,
        state: TrustedState | None,
        checkpoint_note: str,
        verifiers: Sequence[Verifier],
        schemas: SchemaSet,
        *,
        origin: str | None = None,
        keys: KeyHistory | None = None,
    ) -> None:
        if state is not None:
            origin = state.origin
        if origin is None:  # first contact: the enrolled key is what authenticates the log
            origin = checkpoint_note.split("\n", 1)[0]
        self.origin = origin
        self.schemas = schemas
        self.note = checkpoint_note
        self.keys = _history(origin, keys or (state.keys if state else None), verifiers)
        self.old_size = state.size if state else 0
        # origin, body shape and one valid signature by a key of the history first (so those
        # errors keep their own types), then the history's rules for this size
        self.checkpoint: Checkpoint = verify_checkpoint(
            checkpoint_note, [Verifier.from_key(k) for k in self.keys.all_keys()], origin
        )
        self.keys.verify(checkpoint_note, previous_size=self.old_size)
        self._state = state
        size = self.checkpoint.size
        if state is not None:
            if size < state.size:
                raise RollbackError(
                    f"{origin}: checkpoint size {size} is smaller than the trusted size "
                    f"{state.size}",
                    trusted=state.checkpoint,
                    new=checkpoint_note,
                )
            if size == state.size and self.checkpoint.root != state.root:
                raise EquivocationError(
                    f"{origin}: two signed checkpoints of size {size} with different roots",
                    trusted=state.checkpoint,
                    new=checkpoint_note,
                )
        self.compact = state.compact.copy() if state else CompactRange()
        self.next_index = self.old_size
        self.rejections: list[Rejection] = []
        # schema `$id` -> (its compiled verdict, the kind it describes): the common record's
        # schema check without the problem list (asked only when the verdict is False)
        self._verdicts: dict[str, tuple[Any, str]] = {}
        # the same, with where a valid record can hold numbers (`SchemaSet.number_fields`)
        self._numbers: dict[str, tuple[Any, str, tuple[str, ...] | None]] = {}
        self._shapes = LeafShapes()  # this log's publish leaves, read off their bytes
        self.fast = True  # False: every leaf by the reference path (tests compare the two)

    @property
    def remaining(self) -> int:
        """How many leaves are still to be fed."""
        return self.checkpoint.size - self.next_index

    def feed(self, leaf: bytes, content: Any) -> VerifiedEntry:
        """Verify the next leaf and its content (None when erased); return it parsed.

        The common leaf, a valid record's publish in the shape of the log's earlier leaves,
        is accepted by `_feed_fast` (the same checks, each made once); any other leaf, and
        every refusal or rejection, takes the reference path below, so what is refused or
        rejected, and why, is the reference's (tests/protocol/test_verify_fast.py)."""
        if self.fast and content is not None:
            verified = self._feed_fast(leaf, content)
            if verified is not None:
                return verified
        index = self.next_index
        if index >= self.checkpoint.size:
            raise IndexOrderError(
                f"{self.origin}: leaf {index} is beyond the checkpoint size {self.checkpoint.size}"
            )
        entry = parse_leaf(leaf, expected_log=self.origin, expected_index=index)
        if content is not None:
            self._shapes.learn(leaf, index, entry)
        hashed = leaf_hash(leaf)
        self.compact.append(hashed)
        self.next_index = index + 1
        op = entry["op"]
        if op == "rotate-key":
            self._rotate_key(index, entry)
        if content is None:
            return VerifiedEntry(index, entry, leaf, None, (), hashed)
        if op != "publish":
            raise MalformedEntry(f"{self.origin}: leaf {index}: a {op} entry carries content")
        try:  # content arrives parsed from JSON: canonical_parsed's fast path applies
            body = canonical_parsed(content)
        except ValueError as exc:
            raise DigestMismatch(
                f"{self.origin}: leaf {index} ({entry['id']}): content has no canonical form: {exc}"
            ) from exc
        actual = bytes_digest(body)
        if actual != entry["digest"]:
            raise DigestMismatch(
                f"{self.origin}: leaf {index} ({entry['id']}): content digest "
                f"{actual} does not match the entry's {entry['digest']}"
            )
        problems = () if self._valid(entry, content) else self._check_content(index, entry, content)
        return VerifiedEntry(index, entry, leaf, content, problems, hashed, body)

    def _feed_fast(self, leaf: bytes, content: Any) -> VerifiedEntry | None:
        """`feed` for a leaf in a learnt shape whose content is valid: the same verdict, or
        None (nothing changed) to take the reference path.

        The content's canonical bytes are orjson's sorted-key bytes when ASCII and float-free
        (`canonical_parsed`); their digest must be the leaf's, which `LeafShapes.read` takes
        only when equal (so it is well-formed) and which gives the entry `parse_leaf` would.
        The record must be valid against its schema (for the kind and id of the entry); for a
        schema that admits numbers only in known fields (`NUMBER_FIELDS`), a valid record with
        no float there has none at all, so the walk of every value is left out."""
        index = self.next_index
        if index >= self.checkpoint.size or type(content) is not dict:
            return None
        try:
            data = _dumps(content, option=CANONICAL_OPTIONS)
        except orjson.JSONEncodeError:  # an integer beyond ±(2^53−1), a bad key...
            return None
        if not data.isascii():
            return None
        digest = bytes_digest(data)
        entry = self._shapes.read(leaf, index, digest)
        if entry is None:
            return None
        sid = entry["schema"]
        known = self._numbers.get(sid)
        if known is None:
            if not self.schemas.knows(sid):
                return None
            known = self._numbers[sid] = (
                self.schemas.verdict(sid),
                self.schemas.kind_of(sid),
                self.schemas.number_fields(sid),
            )
        if known[1] != entry["kind"] or content.get("id") != entry["id"]:
            return None
        numbers = known[2]
        if numbers is None and has_float(content):
            return None
        try:
            if not known[0](content):
                return None
        except ValueError:
            return None
        if numbers is not None and not no_float_in(content, numbers):
            return None
        hashed = leaf_hash(leaf)
        self.compact.append(hashed)
        self.next_index = index + 1
        return VerifiedEntry(index, entry, leaf, content, (), hashed, data)

    def _valid(self, entry: dict[str, Any], content: Any) -> bool:
        """True when the content is valid against the entry's schema, the schema is for the
        entry's kind and the record's id is the entry's: the common case, answered by the
        schema's compiled verdict alone. False sends the leaf to `_check_content`, which
        asks the same questions and says what is wrong (or finds nothing: then valid)."""
        sid = entry["schema"]
        known = self._verdicts.get(sid)
        if known is None:
            if not self.schemas.knows(sid):
                return False
            known = self._verdicts[sid] = (self.schemas.verdict(sid), self.schemas.kind_of(sid))
        if known[1] != entry["kind"] or type(content) is not dict:
            return False
        if content.get("id") != entry["id"]:
            return False
        try:
            return bool(known[0](content))
        except ValueError:  # not a JSON value: the full path names it
            return False

    def _check_content(
        self, index: int, entry: dict[str, Any], content: Any
    ) -> tuple[Problem, ...]:
        """The schema's problems with the content (its digest already matched)."""
        location = f"{self.origin} leaf {index}"
        found = self.schemas.problems(entry["schema"], content, location)
        if not found and self.schemas.kind_of(entry["schema"]) != entry["kind"]:
            found = [
                Problem(
                    location,
                    "/",
                    entry["schema"],
                    f"schema is for {self.schemas.kind_of(entry['schema'])} records, "
                    f"entry kind is {entry['kind']}",
                )
            ]
        if not found and isinstance(content, dict) and content.get("id") != entry["id"]:
            found = [
                Problem(
                    location,
                    "/id",
                    content.get("id"),
                    f"record id differs from the entry id {entry['id']!r}",
                )
            ]
        if found:
            self.rejections.append(Rejection(index, entry["id"], tuple(found)))
        return tuple(found)

    def _rotate_key(self, index: int, entry: dict[str, Any]) -> None:
        """The new key is in force for sizes > index; this step's checkpoint, the first
        covering the entry, must be signed by the old AND the new key."""
        key = entry["key"]
        try:
            name = Verifier.from_key(key).name
        except ConfigError as exc:
            raise MalformedEntry(
                f"{self.origin}: leaf {index}: rotate-key carries a malformed "
                f"verifier key: {exc.message}"
            ) from exc
        if name != self.origin:
            raise MalformedEntry(
                f"{self.origin}: leaf {index}: rotate-key names key {name!r}, not the log origin"
            )
        self.keys.rotate(index=index, key=key)
        # MissingSignatureError (old or new key) / RevokedKeyError, naming the keys
        self.keys.verify(self.note, previous_size=self.old_size)

    def finish(self) -> TrustedState:
        """Check every leaf was fed and the rebuilt root is the signed one; the new state."""
        if self.remaining:
            raise IndexOrderError(
                f"{self.origin}: got leaves up to {self.next_index - 1}, "
                f"the checkpoint covers up to {self.checkpoint.size - 1}"
            )
        root = self.compact.root()
        if root != self.checkpoint.root:
            message = (
                f"{self.origin}: leaves {self.old_size}..{self.checkpoint.size - 1} "
                f"on top of the trusted tree rebuild root {root.hex()[:16]}..., the "
                f"checkpoint of size {self.checkpoint.size} signs "
                f"{self.checkpoint.root.hex()[:16]}..."
            )
            if self._state is not None and self._state.size > 0:
                raise EquivocationError(
                    message + " (not an extension of the trusted tree, "
                    "or the leaves served are not the logged ones)",
                    trusted=self._state.checkpoint,
                    new=self.note,
                )
            raise RootMismatch(message)
        return TrustedState(
            self.origin,
            self.checkpoint.size,
            root,
            self.compact.copy(),
            self.note,
            self.keys.copy(),
        )


_dumps = orjson.dumps


def _history(origin: str, keys: KeyHistory | None, verifiers: Sequence[Verifier]) -> KeyHistory:
    """A private copy of the key history to extend with this step's rotations."""
    if keys is not None:
        if keys.origin != origin:
            raise ValueError(f"key history is for {keys.origin!r}, the log is {origin!r}")
        return keys.copy()
    if len(verifiers) != 1:
        raise ValueError(
            f"{origin}: give exactly one verifier (the enrolled key) or a key "
            f"history, not {len(verifiers)} verifiers"
        )
    return KeyHistory(origin, verifiers[0].vkey)
