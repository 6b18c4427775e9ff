"""Fixtures shared by all test packages."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import external_data, running_descendants

# a process the tests started that has not exited this long after the last test is left behind
LEFT_BEHIND_GRACE = 20.0


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Fail the run if a process the tests started outlives them (checked after every other
    fixture is torn down; processes still exiting get LEFT_BEHIND_GRACE seconds). Those found
    are listed, then killed so that they do not outlive the run either."""
    yield
    deadline = time.monotonic() + LEFT_BEHIND_GRACE
    left = running_descendants(os.getpid())
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = running_descendants(os.getpid())
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if left:
        listed = "; ".join(f"pid {pid}: {cmd}" for pid, cmd in sorted(left.items()))
        pytest.fail(f"{len(left)} process(es) started by the tests are still running: {listed}")


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
