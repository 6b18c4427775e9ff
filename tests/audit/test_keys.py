"""protocol.keys.KeyHistory: which keys must sign a node checkpoint across rotations/revocations."""

from __future__ import annotations

import pytest

from protocol.errors import MissingSignatureError, RevokedKeyError
from protocol.keys import KeyHistory
from protocol.note import Checkpoint, Signer, generate_key, sign_checkpoint

ORIGIN = "n.example/node"
ROOT = bytes(32)


def _keys() -> tuple[tuple[str, str], tuple[str, str], tuple[str, str]]:
    return generate_key(ORIGIN), generate_key(ORIGIN), generate_key(ORIGIN)


def _note(size: int, *skeys: str) -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, size, ROOT), [Signer.from_key(k) for k in skeys])


def test_rotation_requires_both_keys_once_then_the_new_key() -> None:
    (s1, v1), (s2, v2), _ = _keys()
    h = KeyHistory(origin=ORIGIN, enrolled_key=v1)
    h.rotate(index=9, key=v2)
    assert h.key_at(9) == v1 and h.key_at(10) == v2
    assert h.required_keys(12, previous_size=5) == [v2, v1]
    assert h.required_keys(15, previous_size=12) == [v2]
    assert h.verify(_note(12, s1, s2), previous_size=5).size == 12
    assert h.verify(_note(15, s2), previous_size=12).size == 15
    with pytest.raises(MissingSignatureError, match="missing old-key signature"):
        h.verify(_note(12, s2), previous_size=5)
    assert h.verify(_note(9, s1), previous_size=0).size == 9  # before the rotation


def test_revocation_refuses_the_old_key_after_its_size_and_asks_no_old_signature() -> None:
    (s1, v1), (s2, v2), _ = _keys()
    h = KeyHistory(origin=ORIGIN, enrolled_key=v1)
    h.revoke(from_size=20, key=v2, revoked_key=v1)
    assert h.verify(_note(20, s1), previous_size=10).size == 20  # history stays valid
    assert h.verify(_note(25, s2), previous_size=20).size == 25
    with pytest.raises(RevokedKeyError, match="revoked for sizes after 20"):
        h.verify(_note(21, s1), previous_size=20)
    # an extra signature by the revoked key does not spoil one by the key in force
    assert h.verify(_note(22, s1, s2), previous_size=20).size == 22


def test_unknown_key_is_a_signature_error_naming_the_key_in_force() -> None:
    (_s1, v1), _, (s3, _v3) = _keys()
    h = KeyHistory(origin=ORIGIN, enrolled_key=v1)
    with pytest.raises(Exception, match="key in force") as info:
        h.verify(_note(3, s3), previous_size=0)
    assert type(info.value).__name__ == "SignatureError"


def test_checkpoint_of_another_origin_is_refused() -> None:
    (s1, v1), _, _ = _keys()
    other = sign_checkpoint(Checkpoint("other.example/node", 1, ROOT), [Signer.from_key(s1)])
    with pytest.raises(Exception, match="is not the node's"):
        KeyHistory(origin=ORIGIN, enrolled_key=v1).verify(other, previous_size=0)
