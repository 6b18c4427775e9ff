"""The session-end check: a process the tests started and did not stop fails the run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.support import REPO, running_descendants


def test_running_descendants_sees_a_child_until_it_is_stopped() -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        # Between fork and exec the child's command line reads empty (CI saw it once): the
        # check sees the child at once, and its command line by the time exec is done.
        assert child.pid in running_descendants(os.getpid())
        deadline = time.monotonic() + 10
        while (seen := running_descendants(os.getpid()).get(child.pid)) != "sleep 60":
            assert time.monotonic() < deadline, seen
            time.sleep(0.01)
    finally:
        child.kill()
        child.wait()
    assert child.pid not in running_descendants(os.getpid())


def test_a_process_left_running_fails_the_run(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        "import tests.conftest as shared\n"
        "from tests.conftest import no_process_left_behind  # noqa: F401\n"
        "shared.LEFT_BEHIND_GRACE = 0.5\n"
    )
    (tmp_path / "test_leaky.py").write_text(
        "import subprocess\n\n\n"
        "def test_starts_and_forgets() -> None:\n"
        "    subprocess.Popen(['sleep', '120'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore",
         str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout
    assert "1 passed, 1 error" in done.stdout
    assert "1 process(es) started by the tests are still running" in done.stdout
    assert "sleep 120" in done.stdout
    pid = int(re.search(r"pid (\d+): sleep 120", done.stdout).group(1))  # type: ignore[union-attr]
    assert not _sleeping(pid)  # killed, not left running


def _sleeping(pid: int) -> bool:
    """Whether ``pid`` is still our `sleep 120` (a killed one may be a zombie for a moment)."""
    for _ in range(100):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        if "(sleep)" not in stat or stat.split(") ")[1][0] in "ZX":
            return False
        time.sleep(0.1)
    return True
