"""Keyed pseudonyms: published sample ids and locally kept donor hashes (HMAC-SHA-256)."""

from __future__ import annotations

import base64
import hashlib
import hmac


class Pseudonymiser:
    """HMAC under the node-local secret; the keyed state is built once and copied per id."""

    def __init__(self, secret: bytes) -> None:
        self._base = hmac.new(secret, digestmod=hashlib.sha256)

    def _mac(self, text: str) -> bytes:
        mac = self._base.copy()
        mac.update(text.encode("utf-8"))
        return mac.digest()

    def sample_id(self, local_id: str) -> str:
        """``smp_`` + the first 26 base32 characters (lowercase) of HMAC("sample:" + id)."""
        # base32 works in 5-byte groups: the first 20 bytes give the same first 32 characters
        return "smp_" + base64.b32encode(self._mac("sample:" + local_id)[:20])[:26].decode().lower()

    def donor_hash(self, donor_id: str | None) -> str | None:
        """A local-only handle for erasure by donor; the donor id itself is never stored."""
        if donor_id is None:
            return None
        return self._mac("donor:" + donor_id).hex()
