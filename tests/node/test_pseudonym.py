"""Group ids and donor hashes equal the one-line RFC 2104 reference, for any key and input.

The published id of a group must never change between versions: a re-import would
otherwise publish every group again under a new id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from hypothesis import given, settings
from hypothesis import strategies as st

from node.pseudonym import Pseudonymiser


def _reference_id(secret: bytes, key: bytes) -> str:
    mac = hmac.digest(secret, b"group:" + key, hashlib.sha256)
    return "grp_" + base64.b32encode(mac[:17]).decode("ascii")[:26].lower()


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=200), st.binary(max_size=80), st.text(max_size=40))
def test_group_ids_and_donor_hashes_equal_the_reference(
    secret: bytes, key: bytes, donor: str
) -> None:
    pseudonyms = Pseudonymiser(secret)
    assert pseudonyms.group_id(key) == _reference_id(secret, key)
    assert (
        pseudonyms.donor_hash(donor)
        == hmac.digest(secret, ("donor:" + donor).encode("utf-8"), hashlib.sha256).hex()
    )
    assert pseudonyms.donor_hash(None) is None


def test_a_known_id_stays_the_same() -> None:
    """Pinned: what this version publishes for this key and group key."""
    pseudonyms = Pseudonymiser(b"k" * 32)
    key = b'{"biobank":"bb-1","collection":"c-1","sample_type":"Serum"}'
    assert pseudonyms.group_id(key) == _reference_id(b"k" * 32, key)
    assert len(pseudonyms.group_id(key)) == 4 + 26
