"""Which keys may sign a node checkpoint of a given tree size.

Given the enrolled key, `rotate-key` entries and catalogue revocations.

Pure functions shared by the catalogue's harvest and the auditor, so both accept exactly the
same checkpoints.

Rules:
- A `rotate-key` entry at index i (field `key` = the new verifier key) takes effect for
  checkpoints of size > i. The FIRST accepted checkpoint covering it (previous accepted size
  <= i) must carry signatures by the old AND the new key; later ones need the new key only.
- A catalogue `revoke` (new key K, revoked key R, from size f) re-enrols the node: for
  checkpoints of size > f the key in force is K, and a signature by R is refused even when it
  verifies. Checkpoints of size <= f keep the keys they had. No old-key signature is asked for
  across a revocation (the old key is compromised).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from protocol.errors import BiobankError, MissingSignatureError, RevokedKeyError, SignatureError
from protocol.note import Checkpoint, Verifier, open_note


@dataclass(frozen=True)
class KeyEvent:
    """A change of the key in force, applying to checkpoints of tree size > `at`."""

    at: int
    key: str
    kind: Literal["rotate", "revoke"]
    revoked: str | None = None


@dataclass
class KeyHistory:
    """The keys of one node log over its tree sizes."""

    origin: str
    enrolled_key: str
    events: list[KeyEvent] = field(default_factory=list)

    def copy(self) -> KeyHistory:
        """An independent copy (events are immutable, the list is not shared)."""
        return KeyHistory(self.origin, self.enrolled_key, list(self.events))

    def to_json(self) -> dict[str, Any]:
        events: list[dict[str, Any]] = []
        for e in self.events:
            item: dict[str, Any] = {"at": e.at, "key": e.key, "kind": e.kind}
            if e.revoked is not None:
                item["revoked"] = e.revoked
            events.append(item)
        return {"enrolled_key": self.enrolled_key, "events": events}

    @classmethod
    def from_json(cls, origin: str, d: dict[str, Any]) -> KeyHistory:
        """Inverse of `to_json`; ValueError naming the event when one is malformed."""
        history = cls(origin=origin, enrolled_key=str(d["enrolled_key"]))
        for n, e in enumerate(d.get("events") or []):
            kind, at, key = e.get("kind"), e.get("at"), e.get("key")
            if not isinstance(at, int) or at < 0 or not isinstance(key, str):
                raise ValueError(
                    f"key history of {origin!r}: event {n}: needs a size 'at' >= 0 "
                    "and a verifier 'key'"
                )
            if kind == "rotate":
                history.rotate(index=at, key=key)
            elif kind == "revoke" and isinstance(e.get("revoked"), str):
                history.revoke(from_size=at, key=key, revoked_key=e["revoked"])
            else:
                raise ValueError(
                    f"key history of {origin!r}: event {n}: kind must be 'rotate' "
                    "or 'revoke' (with 'revoked')"
                )
        return history

    def all_keys(self) -> list[str]:
        """Every key the history names (enrolled, rotated to, revoked), without repeats."""
        keys = [self.enrolled_key]
        for e in self.events:
            keys.extend(k for k in (e.key, e.revoked) if k and k not in keys)
        return keys

    def current_key(self) -> str:
        """The key in force for the next checkpoint (after every known event)."""
        return self.events[-1].key if self.events else self.enrolled_key

    def rotate(self, *, index: int, key: str) -> None:
        """Record a `rotate-key` entry found at log index `index`."""
        self._add(KeyEvent(at=index, key=key, kind="rotate"))

    def revoke(self, *, from_size: int, key: str, revoked_key: str) -> None:
        """Record a catalogue `revoke`: `key` replaces `revoked_key` for sizes > `from_size`."""
        self._add(KeyEvent(at=from_size, key=key, kind="revoke", revoked=revoked_key))

    def _add(self, event: KeyEvent) -> None:
        if event in self.events:
            return
        self.events.append(event)
        # at ties a revocation applies before a rotation recorded at that index
        self.events.sort(key=lambda e: (e.at, 0 if e.kind == "revoke" else 1))

    def revoked_keys(self, size: int) -> set[str]:
        """Keys refused for a checkpoint of tree size `size`."""
        return {e.revoked for e in self.events if e.kind == "revoke" and e.revoked and e.at < size}

    def key_at(self, size: int) -> str:
        """The key in force for a checkpoint of tree size `size`."""
        key = self.enrolled_key
        for event in self.events:
            if event.at < size:
                key = event.key
        return key

    def required_keys(self, size: int, *, previous_size: int) -> list[str]:
        """Keys that must ALL sign a checkpoint of `size` after one accepted at `previous_size`."""
        required = [self.key_at(size)]
        revoked = self.revoked_keys(size)
        for event in self.events:
            if event.kind == "rotate" and previous_size <= event.at < size:
                old = self.key_at(event.at)
                if old not in required and old not in revoked:
                    required.append(old)
        return required

    def verify(self, note: str, *, previous_size: int) -> Checkpoint:
        """Verify a node checkpoint note; raise a SignatureError subclass naming the key."""
        body, sep, _ = note.partition("\n\n")
        if not sep:
            raise SignatureError(f"{self.origin}: checkpoint note has no signature block")
        checkpoint = Checkpoint.from_text(body + "\n")
        if checkpoint.origin != self.origin:
            raise SignatureError(
                f"checkpoint origin {checkpoint.origin!r} is not the node's {self.origin!r}"
            )
        required = self.required_keys(checkpoint.size, previous_size=previous_size)
        revoked = self.revoked_keys(checkpoint.size)
        candidates = {k: Verifier.from_key(k) for k in [*required, *sorted(revoked)]}
        try:
            _, good = open_note(note, list(candidates.values()))
        except SignatureError as exc:
            raise SignatureError(
                f"{self.origin} checkpoint size {checkpoint.size}: {exc} "
                f"(key in force: {_short(required[0])})"
            ) from exc
        signed = {v.vkey for v in good}
        missing = [k for k in required if k not in signed]
        if missing and signed & revoked:
            raise RevokedKeyError(
                f"{self.origin} checkpoint size {checkpoint.size}: signed by revoked key "
                f"{_short(next(iter(signed & revoked)))} (revoked for sizes after "
                f"{self._revoked_from(next(iter(signed & revoked)))})"
            )
        if missing:
            raise MissingSignatureError(
                f"{self.origin} checkpoint size {checkpoint.size}: "
                + _missing_text(required, missing, bool(signed))
            )
        return checkpoint

    def _revoked_from(self, key: str) -> int:
        return min(e.at for e in self.events if e.kind == "revoke" and e.revoked == key)


def rotation_hint(
    history: KeyHistory, note: str, *, previous_size: int, announced_key: str | None
) -> MissingSignatureError | None:
    """Explain a checkpoint the key history refuses when the node now announces another key.

    A node that rotated its key but whose first checkpoint over the `rotate-key` entry lacks
    the old key's signature (or that the verifier first sees after later imports) signs with
    a key the verifier does not trust yet. When `announced_key` (e.g. the node descriptor's
    `verifier_key`, NOT trusted) signs `note` and the key in force does not, return the
    MissingSignatureError to raise instead of a bare SignatureError; otherwise None.
    """
    if not announced_key or announced_key == history.current_key():
        return None
    try:
        announced = Verifier.from_key(announced_key)
        body, _ = open_note(note, [announced])
        size = Checkpoint.from_text(body).size
    except (SignatureError, ValueError, BiobankError):
        return None
    required = history.required_keys(size, previous_size=previous_size)
    return MissingSignatureError(
        f"{history.origin} checkpoint size {size}: signed by the node's newly announced key "
        f"{_short(announced_key)} but missing the signature by the key in force "
        f"{_short(required[0])}: after a key rotation the first checkpoint covering the "
        "rotate-key entry must carry the old key's signature too (the node can add it with "
        "'biobank-node rotate-key --cosign-latest')"
    )


def _missing_text(required: list[str], missing: list[str], signed: bool) -> str:
    """Which required signatures are absent, old keys of a rotation named as such."""
    if not signed:
        return "missing signature by " + ", ".join(_short(k) for k in missing)
    parts = []
    old = [k for k in missing if k != required[0]]
    if old:
        parts.append(
            "missing old-key signature at a key rotation by " + ", ".join(_short(k) for k in old)
        )
    if required[0] in missing:
        what = "the new key of a rotation" if len(required) > 1 else "the key in force"
        parts.append(f"missing signature by {what} {_short(required[0])}")
    return "; ".join(parts)


def _short(vkey: str) -> str:
    """Key name and id, without the long public key."""
    return "+".join(vkey.split("+")[:2])
