"""Fixtures shared by all test packages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import external_data


@pytest.fixture(scope="session")
def external() -> Path:
    """Path to ../shared/data/external (skips outside CI when missing, fails in CI)."""
    return external_data()


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of a real PostgreSQL server for catalogue tests (set by .ci/run)."""
    url = os.environ.get("CATALOGUE_TEST_PG_URL")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "CI=true but CATALOGUE_TEST_PG_URL is not set: .ci/run must start PostgreSQL"
            )
        pytest.skip("CATALOGUE_TEST_PG_URL not set: no PostgreSQL server for this run")
    return url


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """Where tests save artefacts (screenshots, reports) for people to look at."""
    path = Path(__file__).resolve().parent.parent / "test-output"
    path.mkdir(exist_ok=True)
    return path
