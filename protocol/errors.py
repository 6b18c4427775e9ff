"""The one error tree of the project, and the `Problem` record for per-record input problems.

Every error carries a specific message; `diagnostics()` gives a multi-line explanation for
people (CLI output, alert pages). Services raise these; only HTTP layers and CLIs turn them
into responses or exit codes.

    BiobankError                      base; .diagnostics() -> str
    ├── VerificationError             published material does not verify
    │   ├── SignatureError            no trusted signature, a bad signature, a malformed note
    │   │   ├── RevokedKeyError       signed by a key revoked for this tree size
    │   │   └── MissingSignatureError a signature the key history requires is missing
    │   ├── ProofError                an inclusion or consistency proof does not verify
    │   ├── DigestMismatch            record content does not hash to its entry's digest
    │   ├── NonCanonicalError         bytes are not the RFC 8785 encoding of what they parse to
    │   ├── RootMismatch              leaves served do not rebuild the signed root
    │   ├── RollbackError             a checkpoint is smaller than the trusted one
    │   ├── EquivocationError         two signed views of one log that cannot both be true
    │   ├── IndexOrderError           a leaf is missing, repeated, or out of order
    │   ├── MalformedEntry            a leaf or checkpoint body has the wrong shape or values
    │   └── OriginMismatch            material names another log origin than expected
    ├── FetchError                    published material could not be read (down, slow,
    │                                 oversized, not the documented shape)
    ├── NodeHalted (catalogue.errors) a node's harvest is stopped until an operator clears it
    └── InputError                    an operator's or user's input is wrong
        ├── ValidationFailed          records failed validation (.problems)
        ├── ConfigError               a setting, key file or key string is wrong
        ├── PolicyError               a publishing policy is wrong or forbids the operation
        └── (catalogue.errors)        EnrolmentError > RevocationError, UnknownNode, FilterError,
                                      NotificationRefused, Throttled

Errors that only one program raises live in its own ``errors`` module, subclassing these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

_MAX_VALUE_REPR = 80


def short_repr(value: object, limit: int = _MAX_VALUE_REPR) -> str:
    """`repr(value)` cut to `limit` characters, for messages about big values."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem with one record: where, which field, what value, and why."""

    location: str  # "exports/samples.csv row 12" | "leaf 17"
    field: str  # JSON pointer into the record ("/sample_type") or a source column name
    value: object  # the offending value
    reason: str  # "unknown code 'Blut' for sample_type"

    def __str__(self) -> str:
        return f"{self.location}: {self.field}={short_repr(self.value)}: {self.reason}"

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (the value as a truncated repr unless it is a JSON scalar)."""
        value = self.value
        if not (value is None or isinstance(value, str | int | bool)):
            value = short_repr(value)
        elif isinstance(value, str):
            value = value if len(value) <= _MAX_VALUE_REPR else value[:77] + "..."
        return {
            "location": self.location,
            "field": self.field,
            "value": value,
            "reason": self.reason,
        }


class BiobankError(Exception):
    """Base of every error the project raises on purpose."""

    def __init__(self, message: str, *, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details: tuple[str, ...] = tuple(details)

    def diagnostics(self) -> str:
        """A multi-line explanation: the message, then one indented line per detail."""
        lines = [f"{type(self).__name__}: {self.message}"]
        lines.extend(f"  {d}" for d in self.details)
        return "\n".join(lines)


class VerificationError(BiobankError):
    """Published material (a note, a proof, a leaf, a record) does not verify."""


class SignatureError(VerificationError):
    """A note has no signature by a trusted key, a bad signature, or is malformed."""


class RevokedKeyError(SignatureError):
    """A checkpoint is signed by a key that the catalogue revoked for its tree size."""


class MissingSignatureError(SignatureError):
    """A checkpoint lacks a signature the key history requires (e.g. the old key at a rotation)."""


class ProofError(VerificationError):
    """An inclusion or consistency proof does not verify."""


class DigestMismatch(VerificationError):
    """Record content does not hash to the digest its log entry commits to."""


class NonCanonicalError(VerificationError):
    """Bytes are not the RFC 8785 canonical encoding of the value they parse to."""


class RootMismatch(VerificationError):
    """The leaves served do not rebuild the root the checkpoint signs."""


class _TwoCheckpoints(VerificationError):
    """An error whose evidence is two signed checkpoints (kept verbatim)."""

    def __init__(
        self, message: str, *, trusted: str, new: str, details: Sequence[str] = ()
    ) -> None:
        super().__init__(message, details=details)
        self.trusted_checkpoint = trusted
        self.new_checkpoint = new

    def diagnostics(self) -> str:
        evidence = [
            "trusted checkpoint:",
            *self.trusted_checkpoint.splitlines(),
            "new checkpoint:",
            *self.new_checkpoint.splitlines(),
        ]
        return super().diagnostics() + "\n" + "\n".join(f"    {x}" for x in evidence)


class RollbackError(_TwoCheckpoints):
    """A signed checkpoint is smaller than the one already trusted."""


class EquivocationError(_TwoCheckpoints):
    """Two signed checkpoints of one log that cannot both be true (a split view)."""


class IndexOrderError(VerificationError):
    """A leaf is missing, repeated, or carries another index than its position."""


class MalformedEntry(VerificationError):
    """A leaf or checkpoint body parses but has the wrong fields or values."""


class OriginMismatch(VerificationError):
    """Material names another log origin than the one expected."""


class FetchError(BiobankError):
    """Published material could not be read: unreachable, timed out, too large, not found, or
    not the documented shape."""


class NotServed(FetchError):
    """The server says it does not serve what was asked for (HTTP 404, 405 or 501): for
    example a node without the proof endpoints."""


class InputError(BiobankError):
    """An operator's or user's input is wrong."""


class ValidationFailed(InputError):
    """Records failed validation; `.problems` lists each one."""

    def __init__(self, message: str, problems: Sequence[Problem]) -> None:
        super().__init__(message, details=[str(p) for p in problems])
        self.problems: list[Problem] = list(problems)


class ConfigError(InputError):
    """A setting, key file or key string is wrong."""


class PolicyError(InputError):
    """A publishing policy is wrong, or forbids the requested operation."""
