"""verify.py: one harvest step, each attack its own test asserting the error and the kept state."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.canonical import canonical, digest
from protocol.entries import make_entry
from protocol.errors import (
    DigestMismatch,
    EquivocationError,
    IndexOrderError,
    MalformedEntry,
    MissingSignatureError,
    NonCanonicalError,
    OriginMismatch,
    RollbackError,
    RootMismatch,
    SignatureError,
)
from protocol.merkle import CompactRange, leaf_hash
from protocol.note import Checkpoint, Signer, Verifier, generate_key, sign_checkpoint
from protocol.schema import SchemaSet
from protocol.verify import StepVerifier, TrustedState
from tests.protocol.reference import verify_step

ORIGIN = "node.example/biobank-node"
TIME = "2026-11-22T23:07:36Z"
SAMPLE_ID = "https://w3id.org/biobank-federation/schemas/v2/sample-group.schema.json"
SCHEMAS = SchemaSet(
    [
        {
            "$id": SAMPLE_ID,
            "type": "object",
            "additionalProperties": False,
            "required": ["id", "sex"],
            "properties": {"id": {"type": "string"}, "sex": {"enum": ["female", "male"]}},
        },
        {
            "$id": "https://w3id.org/biobank-federation/schemas/v1/biobank.schema.json",
            "type": "object",
        },
    ]
)


class LogSim:
    """An honest node log in memory, plus helpers for the attacks."""

    def __init__(self, origin: str = ORIGIN) -> None:
        self.origin = origin
        skey, vkey = generate_key(origin)
        self.signer = Signer.from_key(skey)
        self.verifier = Verifier.from_key(vkey)
        self.leaves: list[bytes] = []
        self.contents: list[Any] = []

    def append(self, entry: dict[str, Any], content: Any) -> None:
        self.leaves.append(canonical(entry))
        self.contents.append(content)

    def publish(self, record: dict[str, Any], schema: str = SAMPLE_ID) -> None:
        self.append(
            make_entry(
                log=self.origin,
                index=len(self.leaves),
                op="publish",
                kind="sample-group",
                id=record["id"],
                schema=schema,
                digest=digest(record),
                time=TIME,
            ),
            record,
        )

    def withdraw(self, record_id: str) -> None:
        self.append(
            make_entry(
                log=self.origin,
                index=len(self.leaves),
                op="withdraw",
                kind="sample-group",
                id=record_id,
                time=TIME,
            ),
            None,
        )

    def root(self, size: int | None = None) -> bytes:
        cr = CompactRange()
        cr.extend(leaf_hash(leaf) for leaf in self.leaves[:size])
        return cr.root()

    def checkpoint(self, size: int | None = None, root: bytes | None = None) -> str:
        size = len(self.leaves) if size is None else size
        cp = Checkpoint(self.origin, size, root if root is not None else self.root(size))
        return sign_checkpoint(cp, [self.signer])

    def pairs(self, start: int = 0, stop: int | None = None) -> list[tuple[bytes, Any]]:
        return list(zip(self.leaves[start:stop], self.contents[start:stop], strict=True))


def filled_log(n: int) -> LogSim:
    sim = LogSim()
    for i in range(n):
        sim.publish({"id": f"s{i}", "sex": "female"})
    return sim


def _trusted(sim: LogSim, size: int) -> TrustedState:
    return verify_step(
        None, sim.checkpoint(size), [sim.verifier], sim.pairs(0, size), SCHEMAS
    ).state


def test_first_step_from_nothing() -> None:
    sim = filled_log(5)
    result = verify_step(None, sim.checkpoint(), [sim.verifier], sim.pairs(), SCHEMAS)
    assert result.state.size == 5
    assert result.state.root == sim.root()
    assert result.state.origin == ORIGIN
    assert [e.entry["id"] for e in result.entries] == [f"s{i}" for i in range(5)]
    assert [e.leaf_hash for e in result.entries] == [leaf_hash(leaf) for leaf in sim.leaves]
    assert result.rejections == []


def test_incremental_steps_equal_one_step_and_state_round_trips() -> None:
    sim = filled_log(30)
    state = _trusted(sim, 7)
    state = TrustedState.from_json(state.to_json())
    for stop in (7, 20, 30):  # same size again is a no-op step
        step = StepVerifier(state, sim.checkpoint(stop), [sim.verifier], SCHEMAS)
        for leaf, content in sim.pairs(state.size, stop):
            step.feed(leaf, content)
        state = step.finish()
    assert state == _trusted(sim, 30)


def test_empty_log_verifies() -> None:
    sim = LogSim()
    state = verify_step(None, sim.checkpoint(), [sim.verifier], [], SCHEMAS).state
    assert state.size == 0
    assert verify_step(state, sim.checkpoint(), [sim.verifier], [], SCHEMAS).state.size == 0


def test_withdraw_and_erased_content() -> None:
    sim = filled_log(2)
    sim.withdraw("s0")
    pairs = sim.pairs()
    pairs[1] = (pairs[1][0], None)  # content of s1 erased: still verifies
    result = verify_step(None, sim.checkpoint(), [sim.verifier], pairs, SCHEMAS)
    assert [e.entry["op"] for e in result.entries] == ["publish", "publish", "withdraw"]
    assert result.entries[1].content is None


def test_schema_failure_is_a_rejection_not_an_error() -> None:
    sim = filled_log(1)
    sim.publish({"id": "bad", "sex": "Weiblich"})
    sim.publish(
        {"id": "b1"}, schema="https://w3id.org/biobank-federation/schemas/v1/biobank.schema.json"
    )
    sim.publish({"id": "s3", "sex": "male"}, schema="https://example.org/v7/x.schema.json")
    result = verify_step(None, sim.checkpoint(), [sim.verifier], sim.pairs(), SCHEMAS)
    assert result.state.size == 4
    assert [(r.index, r.id) for r in result.rejections] == [(1, "bad"), (2, "b1"), (3, "s3")]
    assert result.rejections[0].problems[0].field == "/sex"
    assert "schema is for biobank records" in result.rejections[1].problems[0].reason
    assert "unknown schema" in result.rejections[2].problems[0].reason
    assert [e.accepted for e in result.entries] == [True, False, False, False]


def test_content_id_must_match_entry_id() -> None:
    sim = filled_log(1)
    entry = make_entry(
        log=ORIGIN,
        index=1,
        op="publish",
        kind="sample-group",
        id="s1",
        schema=SAMPLE_ID,
        digest=digest({"id": "other", "sex": "male"}),
        time=TIME,
    )
    sim.append(entry, {"id": "other", "sex": "male"})
    result = verify_step(None, sim.checkpoint(), [sim.verifier], sim.pairs(), SCHEMAS)
    assert result.rejections[0].problems[0].field == "/id"


def test_rollback_keeps_evidence() -> None:
    sim = filled_log(10)
    state = _trusted(sim, 10)
    old = sim.checkpoint(4)
    with pytest.raises(RollbackError, match="size 4 is smaller than the trusted size 10") as info:
        StepVerifier(state, old, [sim.verifier], SCHEMAS)
    assert info.value.trusted_checkpoint == state.checkpoint
    assert info.value.new_checkpoint == old


def test_same_size_other_root_is_equivocation() -> None:
    sim = filled_log(6)
    state = _trusted(sim, 6)
    forged = sim.checkpoint(6, root=bytes(32))
    with pytest.raises(EquivocationError, match="two signed checkpoints of size 6") as info:
        StepVerifier(state, forged, [sim.verifier], SCHEMAS)
    assert info.value.new_checkpoint == forged
    assert "trusted checkpoint:" in info.value.diagnostics()


def test_fork_is_equivocation() -> None:
    sim = filled_log(8)
    state = _trusted(sim, 5)
    fork = filled_log(5)  # the same key signs another history
    fork.signer, fork.verifier = sim.signer, sim.verifier
    fork.leaves[2] = canonical(
        make_entry(log=ORIGIN, index=2, op="withdraw", kind="sample-group", id="s0", time=TIME)
    )
    fork.contents[2] = None
    fork.publish({"id": "x5", "sex": "male"})
    fork.publish({"id": "x6", "sex": "male"})
    step = StepVerifier(state, fork.checkpoint(), [sim.verifier], SCHEMAS)
    for leaf, content in fork.pairs(5):
        step.feed(leaf, content)
    with pytest.raises(EquivocationError, match="not an extension of the trusted tree"):
        step.finish()


def test_wrong_leaves_from_nothing_is_root_mismatch() -> None:
    sim = filled_log(3)
    other = filled_log(3)
    other.contents[1] = {"id": "s1", "sex": "male"}
    other.leaves[1] = canonical(
        make_entry(
            log=ORIGIN,
            index=1,
            op="publish",
            kind="sample-group",
            id="s1",
            schema=SAMPLE_ID,
            digest=digest(other.contents[1]),
            time=TIME,
        )
    )
    with pytest.raises(RootMismatch, match="leaves 0..2 on top of the trusted tree rebuild"):
        verify_step(None, sim.checkpoint(), [sim.verifier], other.pairs(), SCHEMAS)


def test_content_digest_mismatch() -> None:
    sim = filled_log(3)
    pairs = sim.pairs()
    pairs[2] = (pairs[2][0], {"id": "s2", "sex": "male"})
    with pytest.raises(DigestMismatch, match="leaf 2 \\(s2\\): content digest"):
        verify_step(None, sim.checkpoint(), [sim.verifier], pairs, SCHEMAS)


def test_content_with_float_is_digest_mismatch() -> None:
    sim = filled_log(1)
    with pytest.raises(DigestMismatch, match="no canonical form"):
        verify_step(
            None,
            sim.checkpoint(),
            [sim.verifier],
            [(sim.leaves[0], {"id": "s0", "sex": 1.5})],
            SCHEMAS,
        )


def test_content_on_withdraw_is_refused() -> None:
    sim = filled_log(1)
    sim.withdraw("s0")
    pairs = sim.pairs()
    pairs[1] = (pairs[1][0], {"id": "s0", "sex": "female"})
    with pytest.raises(MalformedEntry, match="leaf 1: a withdraw entry carries content"):
        verify_step(None, sim.checkpoint(), [sim.verifier], pairs, SCHEMAS)


def test_out_of_order_missing_and_extra_leaves() -> None:
    sim = filled_log(4)
    pairs = sim.pairs()
    with pytest.raises(IndexOrderError, match="leaf 1: carries index 2"):
        verify_step(None, sim.checkpoint(), [sim.verifier], [pairs[0], pairs[2]], SCHEMAS)
    with pytest.raises(IndexOrderError, match="got leaves up to 2, the checkpoint covers up to 3"):
        verify_step(None, sim.checkpoint(), [sim.verifier], pairs[:3], SCHEMAS)
    with pytest.raises(IndexOrderError, match="leaf 3 is beyond the checkpoint size 3"):
        verify_step(None, sim.checkpoint(3), [sim.verifier], pairs, SCHEMAS)


def test_non_canonical_leaf() -> None:
    sim = filled_log(2)
    pairs = sim.pairs()
    pairs[1] = (pairs[1][0].replace(b":", b": ", 1), pairs[1][1])
    with pytest.raises(NonCanonicalError, match="leaf 1"):
        verify_step(None, sim.checkpoint(), [sim.verifier], pairs, SCHEMAS)


def test_leaf_of_another_log() -> None:
    other = LogSim("other.example/node")
    other.publish({"id": "s0", "sex": "male"})
    sim = LogSim()
    with pytest.raises(OriginMismatch, match="leaf 0: belongs to log 'other.example/node'"):
        verify_step(
            None,
            sim.checkpoint(1, root=other.root()),
            [sim.verifier],
            other.pairs(),
            SCHEMAS,
            origin=ORIGIN,
        )


def test_checkpoint_signed_by_another_key() -> None:
    sim = filled_log(2)
    impostor = Signer.from_key(generate_key(ORIGIN)[0])
    note = sign_checkpoint(Checkpoint(ORIGIN, 2, sim.root()), [impostor])
    with pytest.raises(SignatureError, match="not signed by any trusted key"):
        StepVerifier(None, note, [sim.verifier], SCHEMAS)


def test_checkpoint_for_another_origin() -> None:
    sim = filled_log(1)
    state = _trusted(sim, 1)
    note = sign_checkpoint(Checkpoint("evil.example", 1, sim.root()), [sim.signer])
    with pytest.raises(OriginMismatch, match="expected 'node.example/biobank-node'"):
        StepVerifier(state, note, [sim.verifier], SCHEMAS)


def test_rotate_key_without_the_new_keys_signature_is_refused() -> None:
    # (rotation itself: tests/protocol/test_verify_rotation.py)
    sim = filled_log(1)
    sim.append(
        make_entry(log=ORIGIN, index=1, op="rotate-key", key=generate_key(ORIGIN)[1], time=TIME),
        None,
    )
    with pytest.raises(MissingSignatureError, match="missing signature by the new key"):
        verify_step(None, sim.checkpoint(), [sim.verifier], sim.pairs(), SCHEMAS)


def test_trusted_state_from_json_checks_consistency() -> None:
    sim = filled_log(3)
    data = _trusted(sim, 3).to_json()
    data["size"] = 2
    with pytest.raises(ValueError, match="inconsistent"):
        TrustedState.from_json(data)
