"""Harvest worker processes log as the catalogue does: a JSON log stays JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _worker_log(log_format: str) -> str:
    """stderr of a fresh interpreter that runs the worker initializer, then logs a failure."""
    code = (
        "import logging, os\n"
        "from catalogue.harvest.harvester import init_worker\n"
        f"init_worker(os.getppid(), {log_format!r})\n"
        "try:\n"
        "    raise RuntimeError('boom in a worker')\n"
        "except RuntimeError:\n"
        "    logging.getLogger('catalogue.harvest').exception('node x failed')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    return done.stderr


def test_a_json_worker_logs_one_json_object_a_line_with_its_traceback() -> None:
    lines = _worker_log("json").splitlines()
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert record["level"] == "ERROR" and record["message"] == "node x failed"
    assert "boom in a worker" in json.dumps(record)


def test_a_text_worker_keeps_the_default_text_output() -> None:
    text = _worker_log("text")
    assert "node x failed" in text and "Traceback" in text
    assert not text.lstrip().startswith("{")
