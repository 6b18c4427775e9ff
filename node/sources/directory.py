"""BBMRI-ERIC Directory exports (placeholder until the Directory reader lands)."""

from __future__ import annotations

from pathlib import Path

from protocol.errors import ConfigError

from node.codes import Codes
from node.sources.base import Sink


def read(paths: list[Path], sink: Sink, codes: Codes) -> int:
    raise ConfigError("Directory import is not available yet")
