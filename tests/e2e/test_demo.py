"""The demo command end to end: five real nodes and a catalogue on loopback, then Ctrl-C."""

from __future__ import annotations

import base64
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
import pytest

from federation import COUNTRIES

pytestmark = pytest.mark.slow
LINE = re.compile(r"^(node (?P<cc>[A-Z]{2})|catalogue): (?P<url>http://127\.0\.0\.1:\d+)$")


def _demo_command(workdir: Path) -> list[str]:
    # the console script `make demo` runs, installed beside this interpreter
    return [
        str(Path(sys.executable).parent / "biobank-demo"),
        "--samples",
        "300",
        "--seed",
        "7",
        "--workdir",
        str(workdir),
    ]


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    try:
        for line in stream:
            lines.put(line)
    except (ValueError, OSError):  # closed by the test after the demo stopped
        return


def _read_urls(proc: subprocess.Popen[str], timeout: float) -> dict[str, str]:
    """Read stdout until the catalogue line; return {"DE": url, ..., "catalogue": url}."""
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout
    threading.Thread(target=_pump, args=(stdout, lines), daemon=True).start()
    urls: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while "catalogue" not in urls:
        if time.monotonic() > deadline or (proc.poll() is not None and lines.empty()):
            proc.kill()
            proc.wait(timeout=10)
            pytest.fail(f"demo did not print its URLs (exit {proc.returncode})")
        try:
            line = lines.get(timeout=0.5).strip()
        except queue.Empty:
            continue
        m = LINE.match(line)
        if m:
            urls[m.group("cc") or "catalogue"] = m.group("url")
    return urls


def _published_samples(node_url: str) -> dict[str, int]:
    """The interval sum of the live sample groups in a node's own log (newest entry wins)."""
    live: dict[str, Any] = {}
    start = 0
    with httpx.Client(timeout=30) as client:
        while True:
            page = client.get(f"{node_url}/v1/log/entries", params={"start": start}).json()
            for item in page["entries"]:
                entry = orjson.loads(base64.b64decode(item["leaf"]))
                if entry["kind"] == "sample-group" and entry["op"] == "publish":
                    live[entry["id"]] = item["content"]["samples"]
                elif entry["kind"] == "sample-group":
                    live.pop(entry["id"], None)
                start += 1
            if page.get("next") is None:
                lows = [1 if isinstance(n, dict) else n for n in live.values()]
                highs = [n["lt"] - 1 if isinstance(n, dict) else n for n in live.values()]
                return {"min": sum(lows), "max": sum(highs)}
            start = page["next"]


def _verified_size(cat: str, origin: str) -> int:
    node = httpx.get(f"{cat}/v1/nodes/{origin}", timeout=30).json()
    return int(node["tree_size"])


def _port_closed(url: str) -> bool:
    port = int(url.rsplit(":", 1)[1])
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        pytest.fail("demo did not stop within 60 s of SIGINT")


def test_demo_runs_five_harvested_nodes_and_stops_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
    err_path = tmp_path / "demo.stderr"
    with err_path.open("w") as err_file:
        proc = subprocess.Popen(
            _demo_command(tmp_path / "demo"),
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
            env=env,
        )
    try:
        urls = _read_urls(proc, timeout=240)
        assert set(urls) == {*COUNTRIES, "catalogue"}
        cat = urls["catalogue"]
        listed = httpx.get(f"{cat}/v1/nodes", timeout=30).json()
        items = listed["nodes"] if isinstance(listed, dict) else listed
        assert sorted(n["country"] for n in items) == sorted(COUNTRIES)
        result = httpx.get(f"{cat}/v1/search", timeout=30).json()
        by_country = {c["code"]: c["count"] for c in result["counts"]["country"]}
        for cc in COUNTRIES:
            published = _published_samples(urls[cc])
            assert published["min"] > 0, f"node {cc} published no samples"
            assert by_country.get(cc) == published, f"catalogue count for {cc}"
        assert result["total"] == {
            "min": sum(c["min"] for c in by_country.values()),
            "max": sum(c["max"] for c in by_country.values()),
        }
        filtered = httpx.get(f"{cat}/v1/search", params={"country": "DE"}, timeout=30).json()
        assert [c["code"] for c in filtered["counts"]["country"]] == ["DE"]
        # push: a new checkpoint at a node reaches the catalogue in seconds, long before the
        # scheduled harvest (every 300 s): each node notifies the demo catalogue
        home = tmp_path / "demo" / "nodes" / "DE"
        origin = httpx.get(f"{urls['DE']}/.well-known/biobank-node", timeout=30).json()["origin"]
        before = _verified_size(cat, origin)
        rotated = subprocess.run(
            [str(Path(sys.executable).parent / "biobank-node"), "rotate-key", "--home", str(home)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert rotated.returncode == 0, rotated.stderr
        deadline = time.monotonic() + 20
        while _verified_size(cat, origin) <= before:
            assert time.monotonic() < deadline, "the demo catalogue did not take the push"
            time.sleep(0.2)
    finally:
        code = _stop(proc) if proc.poll() is None else proc.returncode
        if proc.stdout is not None:
            proc.stdout.close()
        err = err_path.read_text()
    assert code == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "failed" not in err, err[-3000:]  # no harvest (first or pushed) refused
    assert all(_port_closed(u) for u in urls.values())
