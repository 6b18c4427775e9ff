"""Keyed pseudonyms: published sample ids and locally kept donor hashes (HMAC-SHA-256)."""

from __future__ import annotations

import hashlib
import hmac

# 10 bits -> two base32 characters (lowercase), so 130 bits take 13 lookups
_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_PAIRS = [a + b for a in _B32 for b in _B32]
_DONOR_MEMO = 100_000


class Pseudonymiser:
    """HMAC-SHA-256 under the node-local secret (one-shot C HMAC per id)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._donors: dict[str, str] = {}

    def _mac(self, text: str) -> bytes:
        return hmac.digest(self._secret, text.encode("utf-8"), hashlib.sha256)

    def sample_id(self, local_id: str) -> str:
        """``smp_`` + the first 26 base32 characters (lowercase) of HMAC("sample:" + id)."""
        # the first 26 base32 characters are the first 130 bits of the MAC
        n = int.from_bytes(self._mac("sample:" + local_id)[:17], "big") >> 6
        return "smp_" + "".join([_PAIRS[(n >> s) & 1023] for s in range(120, -1, -10)])

    def donor_hash(self, donor_id: str | None) -> str | None:
        """A local-only handle for erasure by donor; the donor id itself is never stored."""
        if donor_id is None:
            return None
        found = self._donors.get(donor_id)
        if found is None:  # donors give several samples each
            if len(self._donors) >= _DONOR_MEMO:
                self._donors.clear()
            found = self._donors[donor_id] = self._mac("donor:" + donor_id).hex()
        return found
