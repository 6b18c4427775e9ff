"""Test support shared by every test package: where the repository and the external data are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXTERNAL = REPO.parent / "shared" / "data" / "external"


def external_data() -> Path:
    """The shared external test data; skip outside CI when absent, fail inside CI."""
    if EXTERNAL.is_dir():
        return EXTERNAL
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the shared external test data is missing at {EXTERNAL}")
    pytest.skip(
        f"shared external test data not found at {EXTERNAL} (only CI and developers have it)"
    )
