"""Issue 16 item 6: proofs from stored subtree hashes (O(log n) reads) equal the O(n)
reference on random trees and the transparency-dev/merkle vectors."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from protocol.merkle import (
    STRIDE,
    consistency_proof_from,
    inclusion_proof_from,
    leaf_hash,
    stored_perfect,
    subtree_updates,
    verify_consistency,
    verify_inclusion,
)
from tests.protocol.reference import (
    reference_consistency_proof,
    reference_inclusion_proof,
    root_from_leaf_hashes,
)

# the leaves of the RFC 6962 test tree that transparency-dev/merkle's vectors are built on
RFC6962_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]


class Store:
    """Leaf hashes and stored subtree hashes as a server keeps them, counting reads."""

    def __init__(self) -> None:
        self.levels: dict[int, dict[int, bytes]] = {0: {}}
        self.reads = 0

    def read(self, level: int, first: int, count: int) -> Sequence[bytes]:
        self.reads += 1
        rows = self.levels.get(level, {})
        return [rows[i] for i in range(first, first + count) if i in rows]

    def append(self, hashes: Sequence[bytes]) -> None:
        done = len(self.levels[0])
        for i, h in enumerate(hashes):
            self.levels[0][done + i] = h
        for batch in subtree_updates(self.read, done, done + len(hashes), batch=7):
            for level, index, h in batch:
                assert index not in self.levels.setdefault(level, {})
                self.levels[level][index] = h


def _random_store(rng: random.Random, n: int) -> tuple[Store, list[bytes]]:
    hashes = [leaf_hash(rng.randbytes(8)) for _ in range(n)]
    store, done = Store(), 0
    while done < n:  # grown in uneven steps, as harvests and imports do
        step = min(n - done, rng.choice([1, 3, 16, 17, 100, 1000]))
        store.append(hashes[done : done + step])
        done += step
    return store, hashes


def test_stored_subtree_proofs_equal_the_reference_on_random_trees() -> None:
    rng = random.Random(16)
    for n in (1, 2, 3, 15, 16, 17, 255, 256, 257, 1000, 4097):
        store, hashes = _random_store(rng, n)
        perfect = stored_perfect(store.read)
        for _ in range(40):
            size = rng.randint(1, n)
            index = rng.randrange(size)
            size1 = rng.randint(1, size)
            root = root_from_leaf_hashes(hashes[:size])
            proof = inclusion_proof_from(perfect, index, size)
            assert proof == reference_inclusion_proof(hashes, index, size), (n, index, size)
            verify_inclusion(hashes[index], index, size, proof, root)
            cproof = consistency_proof_from(perfect, size1, size)
            assert cproof == reference_consistency_proof(hashes, size1, size), (n, size1, size)
            verify_consistency(size1, size, cproof, root_from_leaf_hashes(hashes[:size1]), root)


def test_stored_subtree_proofs_read_o_log_n_rows() -> None:
    store, hashes = _random_store(random.Random(3), 100_003)
    perfect = stored_perfect(store.read)
    store.reads = 0
    inclusion_proof_from(perfect, 12_345, 100_003)
    consistency_proof_from(perfect, 77_777, 100_003)
    # each read is at most 2**STRIDE rows; 2 proofs of ~17 nodes, a few reads each
    assert store.reads <= 4 * 17 * 2, store.reads
    total = sum(len(rows) for level, rows in store.levels.items() if level)
    assert total < len(hashes) // (2**STRIDE - 2)  # about n/15 stored subtree rows


def test_proofs_fall_back_to_leaves_where_no_subtree_is_stored() -> None:
    store, hashes = _random_store(random.Random(5), 5000)
    for level in list(store.levels):
        if level:
            store.levels[level].clear()  # a log stored before subtree hashes were kept
    perfect = stored_perfect(store.read)
    assert inclusion_proof_from(perfect, 4321, 5000) == reference_inclusion_proof(
        hashes, 4321, 5000
    )
    assert consistency_proof_from(perfect, 999, 5000) == reference_consistency_proof(
        hashes, 999, 5000
    )


def _vectors(external: Path, kind: str) -> list[dict[str, object]]:
    root = external / "transparency-dev-merkle" / "testdata" / kind
    return [json.loads(p.read_text()) for p in sorted(root.glob("*/happy-path.json"))]


def test_stored_subtree_proofs_equal_the_transparency_dev_vectors(external: Path) -> None:
    hashes = [leaf_hash(x) for x in RFC6962_LEAVES]
    store = Store()
    store.append(hashes)
    perfect = stored_perfect(store.read)
    inclusion = _vectors(external, "inclusion")
    consistency = _vectors(external, "consistency")
    assert len(inclusion) >= 4 and len(consistency) >= 4
    checked = 0
    for v in inclusion:
        size, index = int(v["treeSize"]), int(v["leafIdx"])  # type: ignore[call-overload]
        if size > len(hashes) or base64.b64decode(str(v["leafHash"])) != hashes[index]:
            continue
        want = [base64.b64decode(p) for p in v["proof"] or []]  # type: ignore[attr-defined]
        assert inclusion_proof_from(perfect, index, size) == want, v
        checked += 1
    for v in consistency:
        size1, size2 = int(v["size1"]), int(v["size2"])  # type: ignore[call-overload]
        if not 0 < size1 <= size2 <= len(hashes):
            continue
        assert base64.b64decode(str(v["root2"])) == root_from_leaf_hashes(hashes[:size2])
        want = [base64.b64decode(p) for p in v["proof"] or []]  # type: ignore[attr-defined]
        assert consistency_proof_from(perfect, size1, size2) == want, v
        checked += 1
    assert checked >= 6


def test_range_root_refuses_a_range_that_is_no_subtree() -> None:
    from protocol.merkle import list_perfect, range_root

    hashes = [leaf_hash(bytes([i])) for i in range(8)]
    with pytest.raises(ValueError, match="not a subtree"):
        range_root(list_perfect(hashes), 2, 7)
