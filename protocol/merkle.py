"""RFC 6962 / RFC 9162 Merkle tree: hashes, roots, inclusion and consistency proofs, CompactRange.

Proofs are built from perfect subtrees (``perfect(level, index)``): over a list of leaf
hashes (tests, small logs) or over stored subtree hashes kept every :data:`STRIDE` levels
(``stored_perfect``, ``subtree_updates``), so that a server answers a proof in O(log n)
reads. Proof verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 and agrees with every vector of
transparency-dev/merkle. Consistency from size 0 is refused (every tree extends the empty
tree, so such a "proof" proves nothing); callers treat a trusted size of 0 as trivially
consistent.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator, Sequence
from hashlib import sha256
from typing import Any

from protocol.errors import ProofError

HASH_SIZE = 32
EMPTY_ROOT = sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    """SHA-256(0x00 || leaf)."""
    return sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """The frontier of perfect subtrees of a tree of `size` leaves: O(log n) state.

    `hashes` holds the roots of the perfect subtrees, left to right, one per set bit of
    `size` from the highest. Appending is amortised O(1) hashing; `root()` is O(log n).
    """

    __slots__ = ("size", "hashes")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError(
                f"a compact range of size {size} needs {max(size, 0).bit_count()} "
                f"hashes, got {len(hashes)}"
            )
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError("compact range hashes must be 32 bytes each")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf_hash: bytes) -> None:
        """Add one leaf (by its leaf hash) to the right edge."""
        hashes = self.hashes
        h = leaf_hash
        n = self.size
        while n & 1:
            h = sha256(b"\x01" + hashes.pop() + h).digest()
            n >>= 1
        hashes.append(h)
        self.size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        """The Merkle tree hash of the leaves appended so far."""
        hashes = self.hashes
        if not hashes:
            return EMPTY_ROOT
        r = hashes[-1]
        for h in reversed(hashes[:-1]):
            r = node_hash(h, r)
        return r

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.hashes)

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "hashes": [base64.b64encode(h).decode("ascii") for h in self.hashes],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CompactRange:
        try:
            hashes = [base64.b64decode(h, validate=True) for h in d["hashes"]]
            return cls(int(d["size"]), hashes)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a compact range: {exc}") from exc

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self.size == other.size and self.hashes == other.hashes

    def __repr__(self) -> str:
        return f"CompactRange(size={self.size}, root={self.root().hex()[:16]}...)"


#: Stored subtree hashes are kept at every STRIDE-th level (16, 256, 4096... leaves): about
#: n/15 rows for n leaves, and any perfect subtree is then at most 2**STRIDE stored hashes
#: (or leaf hashes) away, so a proof costs O(log n) small reads.
STRIDE = 4

#: ``perfect(level, index)``: the hash of the perfect subtree over leaves
#: ``[index << level, (index + 1) << level)``
Perfect = Callable[[int, int], bytes]
#: ``read(level, first, count)``: the stored hashes of subtrees ``first .. first+count-1`` of
#: a stored level (0: the leaf hashes), in order; fewer when some are not stored
Read = Callable[[int, int, int], Sequence[bytes]]


def _fold(hashes: Sequence[bytes], levels: int) -> list[bytes]:
    """Combine adjacent pairs ``levels`` times (2**levels hashes become one per group)."""
    out = list(hashes)
    for _ in range(levels):
        out = [sha256(b"\x01" + out[i] + out[i + 1]).digest() for i in range(0, len(out), 2)]
    return out


def stored_perfect(read: Read) -> Perfect:
    """``perfect`` over stored subtree hashes (:data:`STRIDE` levels); a subtree not stored
    (a log stored before these hashes were kept) is computed from the level below it."""

    def stored(base: int, first: int, count: int) -> list[bytes]:
        got = list(read(base, first, count))
        if len(got) == count:
            return got
        if base == 0:
            raise ValueError(f"leaf hashes {first}..{first + count - 1} are not stored")
        return _fold(stored(base - STRIDE, first << STRIDE, count << STRIDE), STRIDE)

    def perfect(level: int, index: int) -> bytes:
        base = level - level % STRIDE
        return _fold(stored(base, index << (level - base), 1 << (level - base)), level - base)[0]

    return perfect


def list_perfect(hashes: Sequence[bytes]) -> Perfect:
    """``perfect`` over a list of every leaf hash (O(size of the subtree) a call)."""

    def perfect(level: int, index: int) -> bytes:
        lo = index << level
        if lo + (1 << level) > len(hashes):
            raise ValueError(f"leaf hashes up to {lo + (1 << level)} are needed")
        return _fold(hashes[lo : lo + (1 << level)], level)[0]

    return perfect


def range_root(perfect: Perfect, lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) for a range as RFC 9162 proofs use them (``lo`` a multiple of the
    power of two at or above ``hi - lo``): its perfect subtrees, folded from the right."""
    n = hi - lo
    if n <= 0 or lo % (1 << (n - 1).bit_length()):
        raise ValueError(f"[{lo}, {hi}) is not a subtree of an RFC 9162 tree")
    parts: list[bytes] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        parts.append(perfect(level, lo >> level))
        lo += 1 << level
    r = parts[-1]
    for h in reversed(parts[:-1]):
        r = node_hash(h, r)
    return r


def subtree_updates(
    read: Read, done: int, size: int, batch: int = 1 << 12
) -> Iterator[list[tuple[int, int, bytes]]]:
    """The stored subtree hashes a log grown from ``done`` to ``size`` leaves gains, as
    batches of ``(level, index, hash)``, lowest level first; the caller stores each batch
    before asking for the next (a higher level reads the one below it through ``read``)."""
    level = STRIDE
    while size >> level:
        first, stop = done >> level, size >> level
        for lo in range(first, stop, batch):
            hi = min(stop, lo + batch)
            below = list(read(level - STRIDE, lo << STRIDE, (hi - lo) << STRIDE))
            if len(below) != (hi - lo) << STRIDE:
                raise ValueError(f"level {level - STRIDE} is not stored up to {hi << level}")
            yield [(level, lo + i, h) for i, h in enumerate(_fold(below, STRIDE))]
        level += STRIDE


def inclusion_proof_from(perfect: Perfect, index: int, size: int) -> list[bytes]:
    """RFC 9162 PATH(index, D[0:size]), reading O(log n) perfect subtrees."""
    if not 0 <= index < size:
        raise ValueError(f"no inclusion proof for index {index} in a tree of size {size}")
    proof: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:
            proof.append(range_root(perfect, lo + k, hi))
            hi = lo + k
        else:
            proof.append(perfect(k.bit_length() - 1, lo // k))
            lo += k
    proof.reverse()
    return proof


def consistency_proof_from(perfect: Perfect, size1: int, size2: int) -> list[bytes]:
    """RFC 9162 PROOF(size1, D[0:size2]), reading O(log n) perfect subtrees."""
    if not 0 < size1 <= size2:
        raise ValueError(f"no consistency proof from size {size1} to {size2}")
    proof: list[bytes] = []
    lo, hi, m, complete = 0, size2, size1, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                proof.append(range_root(perfect, lo, hi))
            break
        k = _split(n)
        if m <= k:
            proof.append(range_root(perfect, lo + k, hi))
            hi = lo + k
        else:
            proof.append(perfect(k.bit_length() - 1, lo // k))
            lo += k
            m -= k
            complete = False
    proof.reverse()
    return proof


def inclusion_proof(hashes: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """RFC 9162 PATH(index, D[0:size]) over the leaf hashes `hashes` (all in memory)."""
    if not 0 <= index < size <= len(hashes):
        raise ValueError(
            f"no inclusion proof for index {index} in a tree of size {size} "
            f"({len(hashes)} leaves known)"
        )
    return inclusion_proof_from(list_perfect(hashes), index, size)


def consistency_proof(hashes: Sequence[bytes], size1: int, size2: int) -> list[bytes]:
    """RFC 9162 PROOF(size1, D[0:size2]) over the leaf hashes `hashes` (all in memory)."""
    if not 0 < size1 <= size2 <= len(hashes):
        raise ValueError(
            f"no consistency proof from size {size1} to {size2} ({len(hashes)} leaves known)"
        )
    return consistency_proof_from(list_perfect(hashes), size1, size2)


def _check_hashes(proof: Sequence[bytes]) -> None:
    for i, p in enumerate(proof):
        if len(p) != HASH_SIZE:
            raise ProofError(f"proof element {i} is {len(p)} bytes, not {HASH_SIZE}")


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `leaf_hash` is leaf `index` of the tree (`size`, `root`); raise ProofError."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    if len(leaf_hash) != HASH_SIZE:
        raise ProofError(f"leaf hash is {len(leaf_hash)} bytes, not {HASH_SIZE}")
    _check_hashes(proof)
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError(f"inclusion proof for index {index} in size {size} is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof for index {index} in size {size} is too short")
    if r != root:
        raise ProofError(
            f"inclusion proof for index {index} in size {size} does not lead "
            f"to the root (got {r.hex()[:16]}..., want {root.hex()[:16]}...)"
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree (size2, root2) extends (size1, root1); raise ProofError."""
    if size1 < 0 or size2 < size1:
        raise ProofError(f"size2 {size2} is smaller than size1 {size1}")
    if size1 == size2:
        if proof:
            raise ProofError(f"sizes are equal ({size1}) but the proof is not empty")
        if root1 != root2:
            raise ProofError(f"sizes are equal ({size1}) but the roots differ")
        if size1 == 0 and root1 != EMPTY_ROOT:
            raise ProofError("a tree of size 0 must have the empty root")
        return
    if size1 == 0:
        raise ProofError("consistency from size 0 proves nothing; every tree extends it")
    if not proof:
        raise ProofError(f"empty consistency proof from size {size1} to {size2}")
    _check_hashes(proof)
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root is the first node
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof from {size1} to {size2} is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof from {size1} to {size2} is too short")
    if fr != root1:
        raise ProofError(f"consistency proof from {size1} to {size2} does not match root1")
    if sr != root2:
        raise ProofError(f"consistency proof from {size1} to {size2} does not match root2")


def range_subtrees(start: int, hashes: bytes) -> tuple[tuple[int, bytes], ...]:
    """The tree of the leaves at indexes start, start+1, ... (`hashes`: their leaf hashes,
    32 bytes each, joined) as the maximal perfect subtrees aligned in the whole log, left to
    right: (height, RFC 6962 subtree hash). Appended in order to a compact range of size
    `start` (`append_subtree`), they give the same tree as appending each leaf; an audit
    worker computes them so that the process applying chunks in order need not."""
    out = []
    pos, end = start, start + len(hashes) // 32
    while pos < end:
        height = (pos & -pos).bit_length() - 1 if pos else (end - pos).bit_length() - 1
        while pos + (1 << height) > end:
            height -= 1
        level = hashes[32 * (pos - start) : 32 * (pos - start + (1 << height))]
        for _ in range(height):
            level = b"".join(
                [sha256(b"\x01" + level[i : i + 64]).digest() for i in range(0, len(level), 64)]
            )
        out.append((height, level))
        pos += 1 << height
    return tuple(out)


def append_subtree(compact: CompactRange, height: int, root: bytes) -> None:
    """Append a perfect subtree of 2**height leaves (its hash `root`) to `compact`, whose size
    must be a multiple of 2**height: the same range as appending its leaves one by one."""
    if compact.size & ((1 << height) - 1):
        raise ValueError(f"a subtree of height {height} cannot follow {compact.size} leaves")
    hashes, h, n = compact.hashes, root, compact.size >> height
    while n & 1:
        h = sha256(b"\x01" + hashes.pop() + h).digest()
        n >>= 1
    hashes.append(h)
    compact.size += 1 << height
