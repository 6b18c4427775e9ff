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


def _reference_range_root(hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    cr = CompactRange()
    cr.extend(hashes[lo:hi])
    return cr.root()


def reference_inclusion_proof(hashes: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """RFC 9162 PATH as the node served it before stored subtrees: O(n) over every leaf hash
    (the oracle the O(log n) proofs must equal)."""
    assert 0 <= index < size <= len(hashes)
    proof: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        if index - lo < k:
            proof.append(_reference_range_root(hashes, lo + k, hi))
            hi = lo + k
        else:
            proof.append(_reference_range_root(hashes, lo, lo + k))
            lo += k
    proof.reverse()
    return proof


def reference_consistency_proof(hashes: Sequence[bytes], size1: int, size2: int) -> list[bytes]:
    """RFC 9162 PROOF, O(n) over every leaf hash (the oracle, as for inclusion)."""
    assert 0 < size1 <= size2 <= len(hashes)
    proof: list[bytes] = []
    lo, hi, m, complete = 0, size2, size1, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                proof.append(_reference_range_root(hashes, lo, hi))
            break
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            proof.append(_reference_range_root(hashes, lo + k, hi))
            hi = lo + k
        else:
            proof.append(_reference_range_root(hashes, lo, lo + k))
            lo += k
            m -= k
            complete = False
    proof.reverse()
    return proof
