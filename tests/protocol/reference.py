"""Test-only forms of protocol operations: the Merkle tree hash of a whole list of leaves,
and a whole harvest step verified in one call (production code streams, leaf by leaf)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol.keys import KeyHistory
from protocol.merkle import CompactRange
from protocol.note import Verifier
from protocol.schema import SchemaSet
from protocol.verify import Rejection, StepVerifier, TrustedState, VerifiedEntry


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of a whole list of leaf hashes."""
    cr = CompactRange()
    cr.extend(hashes)
    return cr.root()


@dataclass
class StepResult:
    state: TrustedState
    entries: list[VerifiedEntry] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def verify_step(
    state: TrustedState | None,
    checkpoint_note: str,
    verifiers: Sequence[Verifier],
    leaves_with_content: Iterable[tuple[bytes, Any]],
    schemas: SchemaSet,
    *,
    origin: str | None = None,
    keys: KeyHistory | None = None,
) -> StepResult:
    """Verify a whole step at once (see StepVerifier); entries are kept in the result."""
    step = StepVerifier(state, checkpoint_note, verifiers, schemas, origin=origin, keys=keys)
    entries = [step.feed(leaf, content) for leaf, content in leaves_with_content]
    return StepResult(step.finish(), entries, list(step.rejections))
