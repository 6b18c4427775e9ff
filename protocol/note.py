"""C2SP signed notes with Ed25519 keys, and C2SP tlog-checkpoint bodies.

Key strings follow Go's golang.org/x/mod/sumdb/note: verifier `name+hexid+base64(0x01||pub)`,
signer `PRIVATE+KEY+name+hexid+base64(0x01||seed)`, key id = first 4 bytes of
SHA-256(name || 0x0A || 0x01 || pub). Opening a note follows note.Open: signatures by
unknown keys are ignored, a bad signature by a known key is an error, and at least one
known key must have signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from protocol.errors import ConfigError, MalformedEntry, OriginMismatch, SignatureError

ALG_ED25519 = 0x01
_SIG_PREFIX = "\u2014 "  # em dash, space
_MAX_SIGNATURES = 100


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def key_id(name: str, key: bytes) -> bytes:
    """4-byte id of a key: SHA-256(name || "\\n" || key)[:4], where key = alg byte || public key."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + key).digest()[:4]


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _decode_key(hexid: str, b64: str, what: str, want_key: str) -> tuple[bytes, bytes]:
    """The 32 key bytes and the claimed key id of a C2SP key string's last two fields."""
    try:
        raw = _b64decode(b64)
        key_id = bytes.fromhex(hexid)
    except (ValueError, binascii.Error, UnicodeEncodeError) as exc:
        raise ConfigError(f"{what}: {exc}") from exc
    if len(hexid) != 8 or len(raw) != 33 or raw[0] != ALG_ED25519:
        raise ConfigError(f"{what}: want an 8-hex-digit id and {want_key}")
    return raw[1:], key_id


class Verifier:
    """An Ed25519 note verifier, from a `name+hexid+base64` key string."""

    def __init__(self, name: str, public_key: bytes) -> None:
        if not _valid_name(name):
            raise ConfigError(
                f"invalid key name {name!r}: it must be non-empty, without spaces or '+'"
            )
        self.name = name
        self.public_key = public_key
        self.key_id = key_id(name, bytes([ALG_ED25519]) + public_key)
        self._key = Ed25519PublicKey.from_public_bytes(public_key)

    @classmethod
    def from_key(cls, vkey: str) -> Verifier:
        """Parse a verifier key string; ConfigError names what is wrong."""
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise ConfigError(f"malformed verifier key {vkey!r}: want name+hexid+base64key")
        name, hexid, b64 = parts
        key, want = _decode_key(
            hexid,
            b64,
            f"malformed verifier key {vkey!r}",
            "a 33-byte Ed25519 key (0x01 || public key)",
        )
        verifier = cls(name, key)
        if verifier.key_id != want:
            raise ConfigError(
                f"verifier key {vkey!r}: id {hexid} does not match the key "
                f"(computed {verifier.key_id.hex()})"
            )
        return verifier

    @property
    def vkey(self) -> str:
        """The key string `name+hexid+base64(0x01 || public key)`."""
        raw = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{raw}"

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """True when `sig` is this key's Ed25519 signature of `msg`."""
        try:
            self._key.verify(sig, msg)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Verifier) and other.vkey == self.vkey

    def __hash__(self) -> int:
        return hash(self.vkey)

    def __repr__(self) -> str:
        return f"Verifier({self.vkey!r})"


class Signer:
    """An Ed25519 note signer, from a `PRIVATE+KEY+name+hexid+base64` key string."""

    def __init__(self, name: str, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.verifier = Verifier(name, public)
        self.name = name
        self.key_id = self.verifier.key_id

    @classmethod
    def from_key(cls, skey: str) -> Signer:
        """Parse a signer key string; ConfigError says what is wrong (never echoes the key)."""
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise ConfigError("malformed signer key: want PRIVATE+KEY+name+hexid+base64key")
        _, _, name, hexid, b64 = parts
        seed, want = _decode_key(
            hexid,
            b64,
            f"malformed signer key for {name!r}",
            "a 33-byte Ed25519 seed (0x01 || seed)",
        )
        signer = cls(name, seed)
        if signer.key_id != want:
            raise ConfigError(f"signer key for {name!r}: id {hexid} does not match the key")
        return signer

    @property
    def vkey(self) -> str:
        return self.verifier.vkey

    def sign(self, msg: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `msg` (deterministic)."""
        return self._key.sign(msg)


def generate_key(name: str) -> tuple[str, str]:
    """A new key pair as strings: (signer key, verifier key)."""
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    signer = Signer(name, seed)
    b64 = base64.b64encode(bytes([ALG_ED25519]) + seed).decode("ascii")
    return f"PRIVATE+KEY+{name}+{signer.key_id.hex()}+{b64}", signer.vkey


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """The signed note: `text` (ending in a newline), a blank line, one line per signature."""
    if not text.endswith("\n") or "\n\n" in text:
        raise ValueError("note text must end with a newline and contain no blank line")
    if not signers:
        raise ValueError("a note needs at least one signer")
    msg = text.encode("utf-8")
    lines = []
    for s in signers:
        sig = base64.b64encode(s.key_id + s.sign(msg)).decode("ascii")
        lines.append(f"{_SIG_PREFIX}{s.name} {sig}\n")
    return text + "\n" + "".join(lines)


def open_note(note: str, verifiers: Sequence[Verifier]) -> tuple[str, list[Verifier]]:
    """Verify a signed note; return its text and the known verifiers whose signatures verify.

    Raises SignatureError when the note is malformed, when a known key's signature does not
    verify, or when no known key signed it.
    """
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise SignatureError(
            "malformed note: no blank line before the signatures, or no final newline"
        )
    text = note[: split + 1]
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise SignatureError("malformed note: it contains control characters")
    known = {(v.name, v.key_id): v for v in verifiers}
    msg = text.encode("utf-8")
    seen: set[tuple[str, bytes]] = set()
    good: list[Verifier] = []
    lines = note[split + 2 :].split("\n")[:-1]
    if not lines:
        raise SignatureError("malformed note: it has no signature lines")
    if len(lines) > _MAX_SIGNATURES:
        raise SignatureError(f"malformed note: more than {_MAX_SIGNATURES} signatures")
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise SignatureError(
                f"malformed note: signature line {line[:40]!r} does not start with an em dash"
            )
        name, _, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        try:
            raw = _b64decode(b64)
        except (ValueError, binascii.Error, UnicodeEncodeError) as exc:
            raise SignatureError(f"malformed note: signature by {name!r} is not base64") from exc
        if not _valid_name(name) or len(raw) < 5:
            raise SignatureError(f"malformed note: bad signature line for {name!r}")
        ident = (name, raw[:4])
        verifier = known.get(ident)
        if verifier is None:
            continue  # a key we do not know: ignored, as in note.Open
        if ident in seen:
            raise SignatureError(f"malformed note: key {name}+{raw[:4].hex()} signed twice")
        seen.add(ident)
        if not verifier.verify(msg, raw[4:]):
            raise SignatureError(f"invalid signature by known key {name}+{raw[:4].hex()}")
        good.append(verifier)
    if not good:
        names = ", ".join(f"{v.name}+{v.key_id.hex()}" for v in verifiers) or "none"
        raise SignatureError(f"note is not signed by any trusted key (trusted: {names})")
    return text, good


_SIZE = re.compile(r"(0|[1-9][0-9]{0,19})")


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint body: origin, tree size, root hash (and extension lines)."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def to_text(self) -> str:
        root = base64.b64encode(self.root).decode("ascii")
        return "".join(
            f"{line}\n" for line in (self.origin, str(self.size), root, *self.extensions)
        )

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a checkpoint body; MalformedEntry says which line is wrong."""
        if not text.endswith("\n"):
            raise MalformedEntry("checkpoint body does not end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedEntry(
                f"checkpoint body has {len(lines)} lines, needs at least 3 (origin, size, root)"
            )
        origin, size, root, *ext = lines
        if not origin:
            raise MalformedEntry("checkpoint origin line is empty")
        if not _SIZE.fullmatch(size) or int(size) >= 2**64:
            raise MalformedEntry(f"checkpoint size {size[:30]!r} is not a decimal tree size")
        try:
            raw = _b64decode(root)
        except (ValueError, binascii.Error, UnicodeEncodeError) as exc:
            raise MalformedEntry(f"checkpoint root {root[:60]!r} is not base64") from exc
        if len(raw) != 32:
            raise MalformedEntry(f"checkpoint root is {len(raw)} bytes, not 32")
        if any(not e for e in ext):
            raise MalformedEntry("checkpoint has an empty extension line")
        return cls(origin, int(size), raw, tuple(ext))


def sign_checkpoint(cp: Checkpoint, signers: Sequence[Signer]) -> str:
    """The signed note text of a checkpoint."""
    return sign_note(cp.to_text(), signers)


def verify_checkpoint(note: str, verifiers: Sequence[Verifier], origin: str) -> Checkpoint:
    """Verify a checkpoint note's signature, parse its body and check its origin."""
    text, _ = open_note(note, verifiers)
    cp = Checkpoint.from_text(text)
    if cp.origin != origin:
        raise OriginMismatch(f"checkpoint is for origin {cp.origin!r}, expected {origin!r}")
    return cp
