"""Keyed pseudonyms: published group ids and locally kept donor hashes (HMAC-SHA-256)."""

from __future__ import annotations

import hashlib

_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_PAIRS = [a + b for a in _B32 for b in _B32]  # 10 bits -> two base32 characters (lowercase)
_DONOR_MEMO = 100_000
_BLOCK = 64  # SHA-256's block size in bytes


class Pseudonymiser:
    """HMAC-SHA-256 (RFC 2104) under the node-local secret.

    The inner and outer hashes are keyed once and copied per message, which is what
    ``hmac.digest`` computes from scratch on every call (at about three times the cost);
    ``tests/node/test_pseudonym.py`` holds ids and hashes to ``hmac.digest``.
    """

    def __init__(self, secret: bytes) -> None:
        key = hashlib.sha256(secret).digest() if len(secret) > _BLOCK else secret
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        self._donors: dict[str, str] = {}

    def _mac(self, text: str) -> bytes:
        inner = self._inner.copy()
        inner.update(text.encode("utf-8"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def group_id(self, canonical_key: bytes) -> str:
        """``grp_`` + the first 26 base32 characters (lowercase) of HMAC("group:" + key).

        ``canonical_key``: the RFC 8785 bytes of the group's attributes (see node/groups.py).
        """
        inner = self._inner.copy()
        inner.update(b"group:" + canonical_key)
        outer = self._outer.copy()
        outer.update(inner.digest())
        # the first 26 base32 characters are the first 130 bits of the MAC, 13 x 10 bits
        n = int.from_bytes(outer.digest()[:17], "big") >> 6
        return "grp_" + "".join(_PAIRS[(n >> shift) & 1023] for shift in range(120, -1, -10))

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
