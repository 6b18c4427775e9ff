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
from typing import Literal

from protocol.errors import SignatureError
from protocol.note import Checkpoint, Verifier, open_note


class RevokedKeyError(SignatureError):
    """A checkpoint is signed by a key that the catalogue revoked for its tree size."""


class MissingSignatureError(SignatureError):
    """A checkpoint lacks a signature the key history requires (e.g. the old key at a rotation)."""


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
        return {e.revoked for e in self.events
                if e.kind == "revoke" and e.revoked and e.at < size}

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
                f"checkpoint origin {checkpoint.origin!r} is not the node's {self.origin!r}")
        required = self.required_keys(checkpoint.size, previous_size=previous_size)
        revoked = self.revoked_keys(checkpoint.size)
        candidates = {k: Verifier.from_key(k) for k in [*required, *sorted(revoked)]}
        try:
            _, good = open_note(note, list(candidates.values()))
        except SignatureError as exc:
            raise SignatureError(f"{self.origin} checkpoint size {checkpoint.size}: {exc} "
                                 f"(key in force: {_short(required[0])})") from exc
        signed = {v.vkey for v in good}
        missing = [k for k in required if k not in signed]
        if missing and signed & revoked:
            raise RevokedKeyError(
                f"{self.origin} checkpoint size {checkpoint.size}: signed by revoked key "
                f"{_short(next(iter(signed & revoked)))} (revoked for sizes after "
                f"{self._revoked_from(next(iter(signed & revoked)))})")
        if missing:
            what = "old-key signature at a key rotation" if signed else "signature"
            raise MissingSignatureError(
                f"{self.origin} checkpoint size {checkpoint.size}: missing {what} by "
                + ", ".join(_short(k) for k in missing))
        return checkpoint

    def _revoked_from(self, key: str) -> int:
        return min(e.at for e in self.events if e.kind == "revoke" and e.revoked == key)


def _short(vkey: str) -> str:
    """Key name and id, without the long public key."""
    return "+".join(vkey.split("+")[:2])
