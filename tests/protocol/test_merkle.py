"""Merkle tree: every transparency-dev/merkle vector, our own proofs, and CompactRange roots."""

from __future__ import annotations

import base64
import json
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest

from protocol.errors import ProofError
from protocol.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from tests.protocol.reference import root_from_leaf_hashes
from tests.support import EXTERNAL

VECTORS = EXTERNAL / "transparency-dev-merkle" / "testdata"


def _vector_files(kind: str) -> list[str]:
    # Collected at import time (parametrize needs names); the `external` fixture still
    # decides skip-or-fail when the data is absent.
    root = VECTORS / kind
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.json")) if root.is_dir() else []


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _load(external: Path, kind: str, name: str) -> dict[str, Any]:
    path = external / "transparency-dev-merkle" / "testdata" / kind / name
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_vector_files_are_present(external: Path) -> None:
    assert len(_vector_files("inclusion")) >= 80
    assert len(_vector_files("consistency")) >= 90


@pytest.mark.parametrize("name", _vector_files("inclusion"))
def test_inclusion_vector(external: Path, name: str) -> None:
    v = _load(external, "inclusion", name)
    args = (
        _b64(v["leafHash"]),
        v["leafIdx"],
        v["treeSize"],
        [_b64(p) for p in v["proof"] or []],
        _b64(v["root"]),
    )
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("name", _vector_files("consistency"))
def test_consistency_vector(external: Path, name: str) -> None:
    v = _load(external, "consistency", name)
    args = (
        v["size1"],
        v["size2"],
        [_b64(p) for p in v["proof"] or []],
        _b64(v["root1"]),
        _b64(v["root2"]),
    )
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(f"leaf {i}".encode()) for i in range(n)]


def _reference_root(hashes: list[bytes]) -> bytes:
    """RFC 9162 MTH, written recursively straight from the definition."""
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return node_hash(_reference_root(hashes[:k]), _reference_root(hashes[k:]))


def test_hash_definitions() -> None:
    assert sha256(b"").digest() == EMPTY_ROOT
    assert leaf_hash(b"") == sha256(b"\x00").digest()
    assert node_hash(b"a" * 32, b"b" * 32) == sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()


def test_compact_range_root_equals_recomputation_for_sizes_0_to_300() -> None:
    hashes = _leaves(301)
    cr = CompactRange()
    for n in range(301):
        assert cr.size == n
        assert cr.root() == _reference_root(hashes[:n]), n
        assert len(cr.hashes) == n.bit_count()
        assert CompactRange.from_json(json.loads(json.dumps(cr.to_json()))) == cr
        cr.append(hashes[n])
    assert root_from_leaf_hashes(hashes) == _reference_root(hashes)


def test_compact_range_from_json_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="needs 2 hashes"):
        CompactRange.from_json({"size": 3, "hashes": []})
    with pytest.raises(ValueError):
        CompactRange.from_json({"size": 1, "hashes": ["AAAA"]})


def test_own_inclusion_proofs_verify_and_fail_when_altered() -> None:
    hashes = _leaves(70)
    for size in range(1, 70):
        root = root_from_leaf_hashes(hashes[:size])
        for index in range(size):
            proof = inclusion_proof(hashes, index, size)
            verify_inclusion(hashes[index], index, size, proof, root)
            if index + 1 < size:
                with pytest.raises(ProofError):
                    verify_inclusion(hashes[index + 1], index, size, proof, root)
            if proof:
                bad = [*proof[:-1], bytes(32)]
                with pytest.raises(ProofError):
                    verify_inclusion(hashes[index], index, size, bad, root)


def test_own_consistency_proofs_verify_and_fail_when_altered() -> None:
    hashes = _leaves(60)
    roots = [root_from_leaf_hashes(hashes[:n]) for n in range(61)]
    for size2 in range(1, 61):
        for size1 in range(1, size2 + 1):
            proof = consistency_proof(hashes, size1, size2)
            verify_consistency(size1, size2, proof, roots[size1], roots[size2])
            if size1 < size2:
                with pytest.raises(ProofError):
                    verify_consistency(
                        size1,
                        size2,
                        proof,
                        roots[size1 - 1] if size1 > 1 else bytes(32),
                        roots[size2],
                    )
                with pytest.raises(ProofError):
                    verify_consistency(size1, size2, proof[:-1], roots[size1], roots[size2])


def test_proof_generation_rejects_impossible_ranges() -> None:
    hashes = _leaves(4)
    with pytest.raises(ValueError):
        inclusion_proof(hashes, 4, 4)
    with pytest.raises(ValueError):
        consistency_proof(hashes, 0, 4)
    with pytest.raises(ValueError):
        consistency_proof(hashes, 3, 5)
