"""Catalogue errors, all inside the protocol's one error tree (drawn in protocol/errors.py).

BiobankError (protocol.errors)
├── VerificationError (protocol.errors) ... raised by protocol.verify, recorded per node
├── FetchError (protocol.errors)   a node is down, slow, oversized or serves garbage
│   └── WithholdingError  a node signs a larger checkpoint but does not serve its leaves
├── NodeHalted            harvest refused: node halted after rollback/equivocation
└── InputError (protocol.errors)
    ├── EnrolmentError    key mismatch, unreachable descriptor, already enrolled
    │   └── RevocationError   a key revocation was refused (a revocation re-enrols)
    ├── UnknownNode       no enrolled node with this origin
    ├── NotificationRefused  a node notification is not signed by the node's key (403)
    ├── Throttled         a node notified again too soon (429, .retry_after seconds)
    └── FilterError       malformed or unknown search filter (carries invalid_params)
"""

from __future__ import annotations

from protocol.errors import BiobankError, FetchError, InputError


class NodeHalted(BiobankError):
    """The node's harvest is stopped until an operator clears it."""


class WithholdingError(FetchError):
    """A node signs a larger checkpoint than the verified one but does not serve the leaves
    it adds; its consistency proof from the verified checkpoint holds (or cannot be had).
    Carries both signed checkpoints: they are the evidence of a withholding alert."""

    def __init__(
        self, message: str, *, trusted: str | None, new: str, recorded: str | None = None
    ) -> None:
        super().__init__(message)
        self.trusted_checkpoint = trusted
        self.new_checkpoint = new
        # the error to record instead of this one's text (a page that could not be read
        # stays that FetchError, while the time the node withholds its leaves still counts)
        self.recorded = recorded


class EnrolmentError(InputError):
    """Enrolment was refused; nothing was recorded."""


class RevocationError(EnrolmentError):
    """A key revocation was refused; nothing was recorded."""

    title = "Revocation refused"


class UnknownNode(InputError):
    """No node with this origin is enrolled."""


class NotificationRefused(InputError):
    """A checkpoint notification was refused: not a note, or not signed by the node's key."""


class Throttled(InputError):
    """A node notified again sooner than CATALOGUE_NOTIFY_MIN_INTERVAL allows."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FilterError(InputError):
    """One or more search parameters are malformed or name unknown codes."""

    def __init__(self, invalid_params: list[dict[str, str]]) -> None:
        self.invalid_params = invalid_params
        text = "; ".join(f"{p['name']}: {p['reason']}" for p in invalid_params)
        super().__init__(f"invalid search parameters: {text}")


class WriteLockBusy(BiobankError):
    """Another connection holds SQLite's write lock, and the write was not to wait for it
    (`catalogue.db.write_tx(wait=False)`: a lane's chunk store, which spills instead)."""


__all__ = [
    "EnrolmentError",
    "FetchError",
    "FilterError",
    "NodeHalted",
    "NotificationRefused",
    "Throttled",
    "RevocationError",
    "UnknownNode",
    "WithholdingError",
    "WriteLockBusy",
]
