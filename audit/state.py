"""The auditor's state file: the catalogue key and the last fully verified catalogue checkpoint."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import ConfigError


@dataclass(frozen=True)
class AuditState:
    """What a previous successful audit vouched for; later catalogue logs must extend it."""

    origin: str
    verifier_key: str
    size: int
    root: bytes
    checkpoint: str

    @classmethod
    def load(cls, path: Path) -> AuditState | None:
        """Read the state file; None when it does not exist yet (first audit)."""
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                origin=str(raw["origin"]),
                verifier_key=str(raw["verifier_key"]),
                size=int(raw["size"]),
                root=base64.b64decode(raw["root"], validate=True),
                checkpoint=str(raw["checkpoint"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"--state {path}: unreadable or malformed ({exc}); restore it, or give a new "
                "file name (the next audit then trusts the catalogue's key anew)"
            ) from exc

    def save(self, path: Path) -> None:
        """Write atomically, so an interrupted run never leaves a half-written state."""
        data = {
            "origin": self.origin,
            "verifier_key": self.verifier_key,
            "size": self.size,
            "root": base64.b64encode(self.root).decode(),
            "checkpoint": self.checkpoint,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
