"""Sample ids and donor hashes equal the one-line RFC 2104 reference, for any key and id.

The published id of a sample must never change between versions: a re-import would
otherwise publish every sample again under a new id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from hypothesis import given, settings
from hypothesis import strategies as st

from node.pseudonym import Pseudonymiser


def _reference_id(secret: bytes, local_id: str) -> str:
    mac = hmac.digest(secret, ("sample:" + local_id).encode("utf-8"), hashlib.sha256)
    return "smp_" + base64.b32encode(mac[:17]).decode("ascii")[:26].lower()


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=200), st.text(max_size=40))
def test_sample_ids_and_donor_hashes_equal_the_reference(secret: bytes, local_id: str) -> None:
    pseudonyms = Pseudonymiser(secret)
    assert pseudonyms.sample_id(local_id) == _reference_id(secret, local_id)
    assert (
        pseudonyms.donor_hash(local_id)
        == hmac.digest(secret, ("donor:" + local_id).encode("utf-8"), hashlib.sha256).hex()
    )
    assert pseudonyms.donor_hash(None) is None


def test_a_known_id_stays_the_same() -> None:
    """Pinned: what every node released so far published for this key and id."""
    pseudonyms = Pseudonymiser(b"k" * 32)
    assert pseudonyms.sample_id("S000001") == _reference_id(b"k" * 32, "S000001")
    assert pseudonyms.sample_id("S000001") == PINNED


PINNED = "smp_h2377ib5vjaci6jw3bf4aq3na7"  # computed by the code before this change
