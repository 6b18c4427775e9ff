"""verify.py across key rotations and revocations (KeyHistory in the trusted state)."""

from __future__ import annotations

import pytest

from protocol.entries import make_entry
from protocol.errors import MalformedEntry, MissingSignatureError, RevokedKeyError, SignatureError
from protocol.keys import KeyHistory, rotation_hint
from protocol.note import Checkpoint, Signer, Verifier, generate_key, sign_checkpoint
from protocol.verify import StepVerifier, TrustedState
from tests.protocol.reference import verify_step
from tests.protocol.test_verify import ORIGIN, SCHEMAS, TIME, LogSim, filled_log


def _note(sim: LogSim, *skeys: str, size: int | None = None) -> str:
    size = len(sim.leaves) if size is None else size
    return sign_checkpoint(
        Checkpoint(ORIGIN, size, sim.root(size)), [Signer.from_key(k) for k in skeys]
    )


def _log(n: int) -> tuple[LogSim, str]:
    """A log of n samples signed by a key whose signer string we keep: (sim, signer key)."""
    skey, vkey = generate_key(ORIGIN)
    sim = LogSim()
    sim.signer, sim.verifier = Signer.from_key(skey), Verifier.from_key(vkey)
    for i in range(n):
        sim.publish({"id": f"s{i}", "sex": "female"})
    return sim, skey


def _rotated(n: int = 3) -> tuple[LogSim, TrustedState, str, str, str]:
    """A log trusted at size n, then a rotate-key entry at index n and two more samples.

    Returns (sim, state at n, old signer key, new signer key, new verifier key).
    """
    sim, old_skey = _log(n)
    state = verify_step(None, sim.checkpoint(), [sim.verifier], sim.pairs(), SCHEMAS).state
    new_skey, new_vkey = generate_key(ORIGIN)
    sim.append(make_entry(log=ORIGIN, index=n, op="rotate-key", key=new_vkey, time=TIME), None)
    for i in range(2):
        sim.publish({"id": f"t{i}", "sex": "male"})
    return sim, state, old_skey, new_skey, new_vkey


def test_rotation_with_both_signatures_is_accepted_and_the_new_key_is_in_force() -> None:
    sim, state, old, new, new_vkey = _rotated()
    result = verify_step(state, _note(sim, old, new), [], sim.pairs(3), SCHEMAS)
    assert result.state.size == 6 and result.state.keys is not None
    assert result.state.keys.key_at(7) == new_vkey
    assert [e.entry["op"] for e in result.entries] == ["rotate-key", "publish", "publish"]
    assert state.keys is not None and state.keys.events == []  # the old state is unchanged
    sim.publish({"id": "u0", "sex": "female"})
    step = StepVerifier(result.state, _note(sim, new), [], SCHEMAS)  # the new key alone
    step.feed(*sim.pairs(6)[0])
    assert step.finish().size == 7


def test_rotation_checkpoint_without_the_new_keys_signature_is_refused() -> None:
    sim, state, old, _new, _ = _rotated()
    step = StepVerifier(state, _note(sim, old), [], SCHEMAS)  # the old key alone passes here
    with pytest.raises(MissingSignatureError, match="missing signature by the new key"):
        step.feed(*sim.pairs(3)[0])  # ... and fails at the rotate-key entry


def test_rotation_checkpoint_without_the_old_keys_signature_is_refused_before_entries() -> None:
    sim, state, _old, new, new_vkey = _rotated()
    note = _note(sim, new)
    with pytest.raises(SignatureError, match="not signed by any trusted key"):
        StepVerifier(state, note, [], SCHEMAS)
    assert state.size == 3 and state.keys is not None and state.keys.events == []
    # the node's descriptor announces the new key: the refusal is explained precisely
    hint = rotation_hint(state.keys, note, previous_size=3, announced_key=new_vkey)
    assert isinstance(hint, MissingSignatureError)
    assert "missing the signature by the key in force" in str(hint)
    assert rotation_hint(state.keys, note, previous_size=3, announced_key=None) is None


def test_later_checkpoint_signed_by_the_old_key_only_is_refused() -> None:
    sim, state, old, new, _ = _rotated()
    rotated = verify_step(state, _note(sim, old, new), [], sim.pairs(3), SCHEMAS).state
    sim.publish({"id": "u0", "sex": "female"})
    with pytest.raises(SignatureError, match="not signed by any trusted key .*key in force"):
        StepVerifier(rotated, _note(sim, old), [], SCHEMAS)


def test_rotate_key_to_a_key_of_another_name_is_malformed() -> None:
    sim = filled_log(1)
    sim.append(
        make_entry(
            log=ORIGIN,
            index=1,
            op="rotate-key",
            key=generate_key("evil.example/node")[1],
            time=TIME,
        ),
        None,
    )
    step = StepVerifier(None, sim.checkpoint(), [sim.verifier], SCHEMAS)
    step.feed(*sim.pairs(0, 1)[0])
    with pytest.raises(MalformedEntry, match="leaf 1: rotate-key names key 'evil.example/node'"):
        step.feed(*sim.pairs(1)[0])


def test_revoked_key_is_refused_beyond_its_size_and_the_new_key_accepted() -> None:
    sim = filled_log(3)
    state = verify_step(None, sim.checkpoint(), [sim.verifier], sim.pairs(), SCHEMAS).state
    assert state.keys is not None
    new_skey, new_vkey = generate_key(ORIGIN)
    state.keys.revoke(from_size=3, key=new_vkey, revoked_key=sim.verifier.vkey)
    sim.publish({"id": "x", "sex": "male"})
    with pytest.raises(RevokedKeyError, match="revoked for sizes after 3"):
        StepVerifier(state, sim.checkpoint(), [], SCHEMAS)
    assert state.size == 3
    result = verify_step(state, _note(sim, new_skey), [], sim.pairs(3), SCHEMAS)
    assert result.state.size == 4 and result.state.keys is not None
    assert result.state.keys.key_at(5) == new_vkey


def test_state_json_round_trips_the_key_history_and_old_states_load() -> None:
    sim, state, old, new, new_vkey = _rotated()
    rotated = verify_step(state, _note(sim, old, new), [], sim.pairs(3), SCHEMAS).state
    data = rotated.to_json()
    assert data["keys"]["events"] == [{"at": 3, "key": new_vkey, "kind": "rotate"}]
    again = TrustedState.from_json(data)
    assert again.keys is not None and again.keys.key_at(7) == new_vkey
    legacy = {k: v for k, v in state.to_json().items() if k != "keys"}
    enrolled = state.keys.enrolled_key if state.keys else ""
    loaded = TrustedState.from_json(legacy, enrolled_key=enrolled)
    assert loaded.keys == KeyHistory(ORIGIN, enrolled)
    assert TrustedState.from_json(legacy).keys is None
    bad = dict(data, keys={"enrolled_key": enrolled, "events": [{"at": -1, "key": "k"}]})
    with pytest.raises(ValueError, match="event 0"):
        TrustedState.from_json(bad)


def test_two_verifiers_without_a_history_are_refused() -> None:
    sim = filled_log(1)
    with pytest.raises(ValueError, match="exactly one verifier"):
        StepVerifier(None, sim.checkpoint(), [sim.verifier, sim.verifier], SCHEMAS)
